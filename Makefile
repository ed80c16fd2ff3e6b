# Two commands do everything on a fresh machine with Python 3.11:
#   make quickstart   create .venv, install the package, train on the bundled digits
#   make test         create .venv, install the package with the test extra, lint + test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes (pytest-xdist; 0 runs in this process). Most tests are single-threaded Python
# (tracing, building models), so two workers halve the suite on 2 cores; whole files go to one
# worker, which keeps each module's fixtures built once.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile

.PHONY: quickstart test test-slow lint format venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.py pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python setup.py pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(BIN)/python -m official.train --flagfile=configs/quickstart.flags

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m slow $(XDIST) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs build *.egg-info
