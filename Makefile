# The two Quick start commands (README.md): `make repro` and `make test`.
# Each is self-sufficient on a fresh machine: it creates .venv and installs the project first.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(abspath $(VENV))/bin
PY    := $(BIN)/python
STAMP := $(VENV)/.installed

# DVC must never phone home; the stage commands (`python -m stages...`) must use the venv's python.
export DVC_NO_ANALYTICS := 1
export PATH := $(BIN):$(PATH)

.PHONY: repro test lint install clean-venv

install: $(STAMP)

# The interpreter that creates .venv (>= 3.11): `make PYTHON=python3.12 test` where `python3` is older.
PYTHON ?= python3
# Extra `pip install` arguments. pyproject.toml pins torch==2.13.0; this project's machines find its
# CPU build in their local wheel folder, but from plain PyPI on Linux that version is the multi-GB
# CUDA build. On a CPU-only machine elsewhere, take PyTorch's CPU wheels:
#   make PIP_ARGS='--extra-index-url https://download.pytorch.org/whl/cpu' test
PIP_ARGS ?=

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: '$(PYTHON)' is not Python >= 3.11; run make PYTHON=python3.11 (or newer)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_ARGS) -e '.[test]'
	touch $(STAMP)

repro: $(STAMP)
	dvc repro
	$(PY) -m pipeline.report

test: $(STAMP)
	ruff check .
	pytest

lint: $(STAMP)
	ruff check .
	ruff format --check .

clean-venv:
	rm -rf $(VENV)
