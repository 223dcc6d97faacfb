# lnmkit: `make demo` runs the main job, `make test` runs the test suite.
# Both create .venv and install everything the project needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lnmkit-installed

.PHONY: install demo test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: dependants that ask for an unpinned torch then keep this CPU build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lnmkit demo --out lnmkit-demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tiles.py
	$(BIN)/python benchmarks/bench_mil.py
	$(BIN)/python benchmarks/bench_survival.py

clean:
	rm -rf $(VENV) lnmkit-demo
