# cluster.secrets: `make demo` shows it working, `make test` runs every test.
# Both create or reuse .venv and install what they need from PyPI (and Galaxy when it answers).
# PYTHON=python3.13 (any 3.11+) gives a venv on that Python: today's cluster-template plugin needs 3.12+.
# A name pyenv knows but has not activated (python3.13) is found through `pyenv whence`.
PYTHON ?= python3
PYTHON_BIN := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	(v=$$(pyenv whence $(PYTHON) 2>/dev/null | tail -n 1) && [ -n "$$v" ] && PYENV_VERSION=$$v pyenv which $(PYTHON)))
VENV ?= .venv
BIN := $(VENV)/bin
export VENV
export ANSIBLE_LOCALHOST_WARNING := false

.PHONY: all venv demo test lint unit integration sanity clean

all: test

venv:
	@test -n "$(PYTHON_BIN)" || { echo "$(PYTHON) not found: install it, or pass PYTHON=/path/to/python3.x"; exit 2; }
	@$(PYTHON_BIN) scripts/bootstrap_venv.py

demo: venv
	@$(BIN)/python scripts/demo.py

test: venv lint unit integration sanity

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ansible-lint --profile production --offline

unit: venv
	$(BIN)/python scripts/run_ansible_test.py units

integration: venv
	$(BIN)/pytest -q tests/integration

sanity: venv
	$(BIN)/python scripts/run_ansible_test.py sanity

clean:
	rm -rf $(VENV) .build .pytest_cache .ruff_cache demo
