"""The test suite; `tests.support` holds the tools the tests and some benchmarks share (never installed)."""
