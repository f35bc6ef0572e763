# `make test` and `make demo` create .venv if missing and install the project (with its extras) into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Two workers, a test file each at a time, the longest files first (tests/conftest.py): the suite is mostly
# subprocesses, ffmpeg and Java waiting, so two run in 12 minutes on a 2-core machine what one runs in 18.
# `pytest` alone still runs everything in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

demo: $(STAMP)
	$(BIN)/vidcap demo --config configs/demo.yaml

bench: $(STAMP)
	$(BIN)/python benchmarks/saliency_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
