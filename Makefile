# cluster.secrets: `make demo` shows it working, `make test` runs every test (and `make smoke`).
# Both create or reuse .venv and install what they need from PyPI (and Galaxy when it answers).
# PYTHON=python3.13 (any 3.11+) gives a venv on that Python: today's cluster-template plugin needs 3.12+.
# A name pyenv knows but has not activated (python3.13) is found through `pyenv whence`.
PYTHON ?= python3
# The interpreter a name stands for: itself when it runs, else the one pyenv has under that name.
python_bin = $(shell $(1) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	(v=$$(pyenv whence $(1) 2>/dev/null | tail -n 1) && [ -n "$$v" ] && PYENV_VERSION=$$v pyenv which $(1)))
PYTHON_BIN := $(call python_bin,$(PYTHON))
# `make smoke`: the oldest ansible-core meta/runtime.yml claims, on a Python it supports (2.16: 3.10-3.12), and the
# newest ansible-core on PyPI, on Python 3.13; each in its own venv under .build/.
SMOKE_OLDEST_PYTHON ?= python3.11
SMOKE_NEWEST_PYTHON ?= python3.13
VENV ?= .venv
BIN := $(VENV)/bin
export VENV
export ANSIBLE_LOCALHOST_WARNING := false
export ANSIBLE_INVENTORY_UNPARSED_WARNING := false

.PHONY: all venv demo test lint unit integration sanity smoke smoke-oldest smoke-newest clean

all: test

venv:
	@test -n "$(PYTHON_BIN)" || { echo "$(PYTHON) not found: install it, or pass PYTHON=/path/to/python3.x"; exit 2; }
	@$(PYTHON_BIN) scripts/bootstrap_venv.py

demo: venv
	@$(BIN)/python scripts/demo.py

test: venv lint unit integration sanity smoke

lint: venv
	$(BIN)/ruff check .
	$(BIN)/python scripts/run_mypy.py
	$(BIN)/ansible-lint --profile production --offline

unit: venv
	$(BIN)/python scripts/run_ansible_test.py units

integration: venv
	$(BIN)/pytest -q -n 2 --dist loadfile tests/integration

sanity: venv
	$(BIN)/python scripts/run_ansible_test.py sanity

smoke: smoke-oldest smoke-newest

smoke-oldest:
	@p="$(call python_bin,$(SMOKE_OLDEST_PYTHON))"; test -n "$$p" || { echo "$(SMOKE_OLDEST_PYTHON) not found: install it, or pass SMOKE_OLDEST_PYTHON=/path/to/python3.x"; exit 2; }; \
	$$p scripts/smoke.py oldest

smoke-newest:
	@p="$(call python_bin,$(SMOKE_NEWEST_PYTHON))"; test -n "$$p" || { echo "$(SMOKE_NEWEST_PYTHON) not found: install it, or pass SMOKE_NEWEST_PYTHON=/path/to/python3.x"; exit 2; }; \
	$$p scripts/smoke.py newest

clean:
	rm -rf $(VENV) .build .pytest_cache .ruff_cache demo
