# Two entry points for a fresh machine (see README Quick start):
#   make repro   set up .venv if missing, then `dvc repro` on data.root (the embedded sample by default)
#   make test    set up .venv if missing, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup repro test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" dvc repro
	PATH="$(abspath $(BIN)):$$PATH" dvc metrics show

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest -q

bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" python benchmarks/extract_bench.py
	PATH="$(abspath $(BIN)):$$PATH" python benchmarks/train_bench.py

clean-venv:
	rm -rf $(VENV)
