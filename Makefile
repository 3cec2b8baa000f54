# Two commands for a fresh machine: `make run` and `make test`. Both set up what they need once;
# the stamp files make the second run skip the install.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mnistlab-installed
DEV    := $(VENV)/.mnistlab-dev-installed

.PHONY: setup setup-dev run test lint bench speedrun clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

setup: $(STAMP)

setup-dev: $(DEV)

run: setup
	$(BIN)/mnistlab data fetch
	$(BIN)/mnistlab data info
	$(BIN)/mnistlab report

test: setup-dev
	$(BIN)/python -m pytest

lint: setup-dev
	$(BIN)/ruff check src tests

# The Keras/TensorFlow reference lives in its own venv, apart from mnistlab's dependencies.
BENCH_VENV := .bench-venv

BENCH_STAMP := $(BENCH_VENV)/.installed

# The stamp is touched only after the install succeeds, so an interrupted install is retried.
$(BENCH_STAMP):
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet tensorflow-cpu==2.21.0 keras
	touch $@

bench: setup $(BENCH_STAMP)
	$(BIN)/mnistlab bench

speedrun: setup
	$(BIN)/mnistlab speedrun --seeds 5

clean:
	rm -rf $(VENV) $(BENCH_VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
