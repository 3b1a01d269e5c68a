# cbi_pipeline: make demo (venv + install + whole cycle), make ui, make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_ROOT ?= $(or $(CBI_DATA_ROOT),data)
UI_PORT ?= 3000
STAMP := $(VENV)/.installed

.PHONY: install demo ui test lint typecheck pytest clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	CBI_DATA_ROOT=$(DATA_ROOT) $(BIN)/cbi cycle

ui: $(STAMP)
	$(BIN)/python -c "from cbi_pipeline.cli.runner import ensure_instance; ensure_instance('$(DATA_ROOT)/dagster_home')"
	DAGSTER_HOME=$(abspath $(DATA_ROOT))/dagster_home CBI_DATA_ROOT=$(DATA_ROOT) \
		$(BIN)/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

lint: $(STAMP)
	$(BIN)/ruff check cbi_pipeline cbi_pipeline_tests
	$(BIN)/ruff format --check cbi_pipeline cbi_pipeline_tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

clean-data:
	rm -rf $(DATA_ROOT)/raw $(DATA_ROOT)/exports
