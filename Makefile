# The two commands: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench venv pg clean

$(BIN)/.installed: pyproject.toml
	@bash scripts/ensure-python.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed

pg:
	@bash scripts/ensure-postgres.sh

demo: venv pg
	$(BIN)/dumpsafe demo

test: venv pg
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
