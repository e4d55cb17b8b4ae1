# Run `make help` for the list of targets.
VENV ?= .venv
PY := $(VENV)/bin/python
# The tests run against a real PostgreSQL and Redis: these when they answer, else ones that `make test` brings up
# itself (tests/services.py: an embedded PostgreSQL from the requirements, Debian's redis-server on a free port).
# TEST_SERVICES=embedded always brings up its own; PYTEST_ARGS narrows the run (e.g. PYTEST_ARGS=tests/billing).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/billing
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
TEST_SERVICES ?=
PYTEST_ARGS ?=

.PHONY: help install run test lint typecheck bench

help:  ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	@# -qq: errors only, so a pip configuration's warnings (e.g. about missing local indexes) do not drown the log.
	$(PY) -m pip install -qq --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed  ## Create the virtualenv and install pinned requirements

run: install  ## Start the whole product with demo data (embedded PostgreSQL, localstripe, demo model)
	@# exec: the quickstart is make's own child, so it hears of make's death (and stops everything) however make ends.
	DEBUG=$${DEBUG:-true} exec $(PY) manage.py quickstart

lint: install  ## ruff (lint + format check), and the layers contract (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install  ## mypy with django-stubs
	DEBUG=true $(VENV)/bin/mypy .

test: install  ## Lint, type-check, check migrations, run the whole test suite against PostgreSQL and Redis
	$(MAKE) --no-print-directory lint typecheck
	@# The migrations check compares models with migrations; it asks the server's maintenance database only.
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) DEBUG=true \
	  $(PY) -m tests.services $(if $(filter embedded,$(TEST_SERVICES)),--embedded) -- sh -c \
	  'DATABASE_URL=$$MAINTENANCE_DATABASE_URL $(PY) manage.py makemigrations --check --dry-run && exec $(PY) -m pytest $(PYTEST_ARGS)'

bench: install  ## Print the benchmark tables (ledger, rating, gateway, invoicing)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DEBUG=true $(PY) -m tests.load
