# reportflow: `make up` runs the system on http://127.0.0.1:8080, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check -c requirements/constraints.txt
SOURCES := $(wildcard services/*/pyproject.toml) requirements/constraints.txt requirements/runtime.txt

.PHONY: up test unit integration e2e lint install install-dev constraints config-table clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.up: $(BIN)/python $(SOURCES) requirements/up.txt
	$(PIP) -r requirements/runtime.txt -r requirements/up.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.up requirements/dev.txt
	$(PIP) -r requirements/dev.txt
	@touch $@

install: $(VENV)/.up
install-dev: $(VENV)/.dev

up: install ## run the whole system in the foreground (Ctrl-C stops it)
	$(BIN)/reportflow-up

test: install-dev ## the whole suite against real PostgreSQL, Redis and an S3 server
	$(BIN)/python -m pytest

unit: install-dev
	$(BIN)/python -m pytest tests/unit

integration: install-dev
	$(BIN)/python -m pytest tests/integration

e2e: install-dev
	$(BIN)/python -m pytest tests/e2e

lint: install-dev
	$(BIN)/ruff check services tests bench

constraints: ## re-pin every dependency after changing one
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/runtime.txt -r requirements/dev.txt
	{ head -2 requirements/constraints.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^reportflow'; } > requirements/constraints.new
	mv requirements/constraints.new requirements/constraints.txt && rm -rf .venv-lock

config-table: install ## print the configuration table the README carries
	$(BIN)/python -c "from reportflow_common.settings import markdown_table; print(markdown_table())"

clean:
	rm -rf $(VENV) .run .data
