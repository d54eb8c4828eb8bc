# Developer and newcomer commands. Everything runs in a virtual environment in .venv.
#
#   make demo    install, fetch Pride and Prejudice, train 2 minutes, generate
#   make test    install, lint (ruff), run every test
#   make test-fast  the same without the tests marked slow (training in fresh processes)
#   make bench   the Tiny Shakespeare benchmark (5 minutes)
#
# TORCH picks the PyTorch build. The pin is a version that exists as a CPU wheel on this
# project's build machines and on PyPI everywhere (CUDA-enabled on Linux x86_64, CPU on macOS);
# TORCH_INDEX can point pip at another index, e.g. the CPU-only or a CUDA-specific one.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
# pytest processes for make test; each test file runs whole on one of them
TEST_WORKERS ?= 2

.PHONY: install test test-fast lint format demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

PYTEST = $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test: lint
	$(PYTEST)

test-fast: lint
	$(PYTEST) -m "not slow"

demo: install
	$(BIN)/authorgen fetch --id 1342 --name jane-austen
	run=$$($(BIN)/authorgen train jane-austen --time 2m --force) && \
	$(BIN)/authorgen generate "$$run" --prompt "It is a truth universally" --length 600

bench: install
	$(BIN)/python benchmarks/shakespeare_char.py --time 300s

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
