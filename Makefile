# The two Quick start commands (README.md): `make repro` and `make test`.
# Each is self-sufficient on a fresh machine: it creates .venv and installs the project first.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(abspath $(VENV))/bin
PY    := $(BIN)/python
STAMP := $(VENV)/.installed
# Every package the install takes, at the versions CI tested (pip -c: pins, not installs). pyproject.toml
# names the dependencies; this file fixes the ~150 they pull in, which otherwise float to each day's
# newest (platformdirs moved within a week). `make lock` rewrites it.
LOCK  := constraints.txt

# DVC must never phone home; the stage commands (`python -m stages...`) must use the venv's python.
export DVC_NO_ANALYTICS := 1
export PATH := $(BIN):$(PATH)

.PHONY: repro test lint install lock clean-venv

install: $(STAMP)

# The interpreter that creates .venv (>= 3.11): `make PYTHON=python3.12 test` where `python3` is older.
PYTHON ?= python3
# Extra `pip install` arguments. pyproject.toml pins torch==2.13.0; this project's machines find its
# CPU build in their local wheel folder, but from plain PyPI on Linux that version is the multi-GB
# CUDA build. On a CPU-only machine elsewhere, take PyTorch's CPU wheels:
#   make PIP_ARGS='--extra-index-url https://download.pytorch.org/whl/cpu' test
PIP_ARGS ?=

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: '$(PYTHON)' is not Python >= 3.11; run make PYTHON=python3.11 (or newer)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q $(PIP_ARGS) -c $(LOCK) -e '.[test]'
	touch $(STAMP)

# After editing pyproject.toml's dependencies: resolve them afresh in a scratch venv (no old pins) and
# write what it installed to $(LOCK). A local version label (torch's +cpu) is dropped: `==2.13.0` also
# admits 2.13.0+cpu and the CUDA build. Then `make test`, and commit both files.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q $(PIP_ARGS) -e '.[test]'
	set -o pipefail; { echo "# What \`make install\` installs (pip -c: the versions, not the choice of packages), written by"; \
	  echo "# \`make lock\` from pyproject.toml's dependencies: edit those, then run it (Makefile)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable \
	    | grep -v -i -E '^(setuptools|wheel)==' | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

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
