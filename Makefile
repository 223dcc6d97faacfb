# lnmkit: `make demo` runs the main job, `make test` runs the test suite.
# Both create .venv and install everything the project needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lnmkit-installed
# lnmkit with JupyterLab (jupyter), dask-jobqueue (hpc), MkDocs (docs) and the test tools
EXTRAS := test,jupyter,hpc,docs

.PHONY: install demo test test-slow docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: dependants that ask for an unpinned torch then keep this CPU build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	# compile the numba kernels into their disk cache now, not in the first run
	$(BIN)/python -m lnmkit._precompile
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lnmkit demo --out lnmkit-demo

# Test files run in parallel on up to 4 CPUs (pytest-xdist), each file's tests in one
# process so that its fixtures are built once.
PARALLEL := -n logical --maxprocesses 4 --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PARALLEL)

# notebooks, the documentation build, end-to-end thresholds
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PARALLEL)

docs: $(STAMP)
	$(BIN)/python -m lnmkit.cohort._docs --check
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tiles.py
	$(BIN)/python benchmarks/bench_gpu_encoders.py
	$(BIN)/python benchmarks/bench_mil.py
	$(BIN)/python benchmarks/bench_survival.py

clean:
	rm -rf $(VENV) lnmkit-demo site
