# The two commands of the README: `make run` and `make test`. Everything they need is
# installed here, into .venv and infra/.stack, so a fresh clone works.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint bench bench-sdk bench-stack stack-up stack-down stack-status clean chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## run: install, start the local stack, run the main job (the stack keeps running; infra/down stops it)
run: $(VENV)/.installed
	infra/up
	$(BIN)/tracestream run

## test: install, lint (ruff, the layer contracts), start the stack, run the whole suite, stop the stack (also when tests fail)
test: $(VENV)/.installed .venv-mlflow/.installed chromium
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	infra/with-stack bash -c '$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi; exit $$rc'

# The browser tests (tests/ui) drive Debian's Chromium: Playwright cannot download its own here.
chromium:
	@command -v chromium >/dev/null || { sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# MLflow, the SDK benchmark's baseline, lives in its own environment: it is not a dependency.
# The drop-in tests also run an OpenTelemetry SDK exporting OTLP/HTTP there.
# The stamp depends on this Makefile, so an environment made before a package was added gets it.
MLFLOW_ENV_PACKAGES := mlflow==3.17.2 opentelemetry-exporter-otlp-proto-http
.venv-mlflow/.installed: Makefile
	test -x .venv-mlflow/bin/python || $(PYTHON) -m venv .venv-mlflow
	.venv-mlflow/bin/pip install -q $(MLFLOW_ENV_PACKAGES)
	touch $@

## bench: every benchmark, then one table of all figures (SEARCH_SIZES=100000,1000000 for the 1M index)
SEARCH_SIZES ?= 100000
bench: $(VENV)/.installed .venv-mlflow/.installed
	infra/with-stack $(BIN)/python bench/run_all.py --search-sizes $(SEARCH_SIZES)

## bench-sdk: application-thread cost per span against MLflow's @mlflow.trace, and produce throughput
bench-sdk: $(VENV)/.installed .venv-mlflow/.installed
	infra/with-stack $(BIN)/python bench/sdk.py

## bench-stack: start times of the local stack
bench-stack: $(VENV)/.installed
	$(BIN)/python bench/stack_start.py

stack-up:
	infra/up
stack-down:
	infra/down
stack-status:
	infra/status

clean:
	infra/down --purge || true
	rm -rf $(VENV) .venv-mlflow *.egg-info .pytest_cache .ruff_cache
