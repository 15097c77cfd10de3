# Set-up is part of every target: `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench
setup: $(VENV)/.setup-stamp

$(VENV)/.setup-stamp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the local CPU wheel here (elsewhere add --index-url https://download.pytorch.org/whl/cpu)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $@

demo: setup
	$(BIN)/edgepose convert --target tflite

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check edgepose converters tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py
