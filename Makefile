# Two commands on a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install clean

$(BIN)/feedbot: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "feedbot needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/feedbot

run: $(BIN)/feedbot
	$(BIN)/feedbot secret-key --ensure .env
	$(BIN)/feedbot db upgrade
	$(BIN)/feedbot run

test: $(BIN)/feedbot
	$(BIN)/python -m pytest

lint: $(BIN)/feedbot
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (minutes; not part of `make test`): one JSON line per measurement on stdout.
# PostgreSQL from FEEDBOT_BENCH_DATABASE_URL (default: the local server). See docs/performance.md.
.PHONY: bench
bench: $(BIN)/feedbot
	$(BIN)/python -m benchmarks.run_all
