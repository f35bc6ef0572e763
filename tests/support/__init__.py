"""Test support shared by the tests and the fault benchmarks: the kill-anywhere harness (`faults`), the corruption
battery (`corruption`) and the tiny captioner runs both use (`captioner_runs`). Not part of the installed packages."""
