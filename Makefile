# The two commands: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench venv pg chromium tools clean

$(BIN)/.installed: pyproject.toml
	@bash scripts/ensure-python.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed

pg:
	@bash scripts/ensure-postgres.sh

chromium:  # the dashboard's browser tests drive Debian's headless chromium (no download from elsewhere)
	@bash scripts/ensure-chromium.sh

tools:  # the "without dumpsafe" test restores with Debian's stock zstd and age (tests/test_without_dumpsafe.py)
	@bash scripts/ensure-stock-tools.sh

demo: venv pg
	$(BIN)/dumpsafe demo

test: venv pg chromium tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# `make bench [BENCH_SIZE=100MB|1GB|10GB] [BENCH_REPS=3]`: side-by-side with pg_dump -Fc, writes bench/RESULTS.md
BENCH_SIZE ?= 1GB
BENCH_REPS ?= 3
bench: venv pg
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py --size $(BENCH_SIZE) --reps $(BENCH_REPS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
