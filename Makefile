# cluster.secrets: `make demo` shows it working, `make test` runs every test.
# Both create or reuse .venv and install what they need from PyPI (and Galaxy when it answers).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ANSIBLE_LOCALHOST_WARNING := false

.PHONY: all venv demo test lint unit integration sanity clean

all: test

venv:
	@$(PYTHON) scripts/bootstrap_venv.py

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
