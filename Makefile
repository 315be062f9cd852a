# gpu-worker: `make demo` renders the example reel, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test soak lint install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/python examples/make_media.py
	$(BIN)/gpu-worker render examples/hotel-reel.json

# Three workers on two cores: many tests wait on local servers and subprocesses.
test: install-test
	$(BIN)/python -m pytest -n 3

soak: install-test
	$(BIN)/python -m pytest -m soak

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile.cpu Dockerfile.cuda
	$(BIN)/cfn-lint infra/template.yaml

clean:
	rm -rf out examples/media .pytest_cache .mypy_cache .ruff_cache
