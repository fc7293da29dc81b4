# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install deps demo test test-unit test-integration bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

deps:
	bash infra/install-deps.sh

demo: install deps
	$(BIN)/shadowline demo

test: install deps
	$(BIN)/python -m pytest -q -ra

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

test-integration: install deps
	$(BIN)/python -m pytest -q tests/integration

clean:
	-$(BIN)/shadowline infra down
	rm -rf .shadowline
