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

# torch is pinned (pyproject.toml) to the CPU build that lies on this kind of machine's disk,
# so pip never pulls a multi-GB CUDA wheel here. On a GPU box, pip takes the CUDA build of that version.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
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
