# cbi_pipeline: make demo (venv + install + whole cycle), make ui, make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_ROOT ?= $(or $(CBI_DATA_ROOT),data)
UI_PORT ?= 3000
STAMP := $(VENV)/.installed
# The data root single-quoted for the shell, so a path with spaces or quotes stays one word.
ROOT_Q := '$(subst ','\'',$(DATA_ROOT))'

.PHONY: install demo ui test lint typecheck pytest clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	CBI_DATA_ROOT=$(ROOT_Q) $(BIN)/cbi cycle

# The webservers bind to 127.0.0.1: the UI can launch runs and read every file under the data
# root, and it has no login of its own (see deploy/dagster.yaml before exposing it). MLflow's UI
# runs beside Dagster on the store the pipeline logs to, at store.tracking.DEFAULT_UI_URL (where
# the metadata links point; mlflow_ui_args), and a trap stops it when Dagster stops.
ui: $(STAMP)
	set -e; \
	CBI_DATA_ROOT=$(ROOT_Q); export CBI_DATA_ROOT; \
	DAGSTER_HOME="$$($(BIN)/python -c 'import os; from pathlib import Path; from cbi_pipeline.cli.runner import ensure_instance; print(ensure_instance(Path(os.environ["CBI_DATA_ROOT"]) / "dagster_home").root_directory)')"; \
	export DAGSTER_HOME; \
	MLFLOW_ARGS="$$($(BIN)/python -c 'import os, shlex; from cbi_pipeline.store.tracking import mlflow_ui_args; print(shlex.join(mlflow_ui_args(os.environ["CBI_DATA_ROOT"], prepare=True)))')"; \
	eval "exec $(BIN)/mlflow ui $$MLFLOW_ARGS" & MLFLOW_PID=$$!; \
	trap 'kill -TERM "$$MLFLOW_PID" 2>/dev/null || true; wait "$$MLFLOW_PID" 2>/dev/null || true' EXIT; \
	trap 'exit 130' INT TERM; \
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
	rm -rf -- $(ROOT_Q)/raw $(ROOT_Q)/exports
