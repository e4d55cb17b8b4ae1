# Run `make help` for the list of targets.
VENV ?= .venv
PY := $(VENV)/bin/python
# The tests run against the real PostgreSQL and Redis; override these to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/billing
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1

.PHONY: help install run test lint typecheck bench

help:  ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	@# -qq: errors only, so a pip configuration's warnings (e.g. about missing local indexes) do not drown the log.
	$(PY) -m pip install -qq --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed  ## Create the virtualenv and install pinned requirements

run: install  ## Start the whole product with demo data (SQLite, no broker server, localstripe, demo model)
	DEBUG=$${DEBUG:-true} $(PY) manage.py quickstart

lint: install  ## ruff (lint + format check), and the layers contract (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install  ## mypy with django-stubs
	DEBUG=true $(VENV)/bin/mypy .

test: install  ## Lint, type-check, check migrations, run the whole test suite against PostgreSQL and Redis
	$(MAKE) --no-print-directory lint typecheck
	@# Models against migrations only: an in-memory database, so no server database has to exist for the check.
	DATABASE_URL=sqlite://:memory: DEBUG=true $(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DEBUG=true $(PY) -m pytest

bench: install  ## Print the benchmark tables (ledger, rating, gateway, invoicing)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DEBUG=true $(PY) -m tests.load
