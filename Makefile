# fraudstream: `make run` runs the whole pipeline, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FRAUDSTREAM_HOME ?= $(CURDIR)/.fraudstream
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip

.PHONY: setup run test test-fast bench up down lint format clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## virtualenv with the project (editable, dev extras) + the Kafka jars
	$(BIN)/python -c "from services.broker.launcher import KafkaBroker; KafkaBroker.from_env().resolve_jars()"
	@echo "setup done: $(VENV)/ and Kafka jars in $(FRAUDSTREAM_HOME)/kafka/libs"

run: setup  ## the whole pipeline end to end on the embedded stack
	$(BIN)/fraudstream run $(ARGS)

test: setup  ## unit + integration + end-to-end tests (starts the embedded stack)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup  ## unit tests only
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup  ## benchmarks, each printing a ratio against a baseline of the same run
	$(BIN)/fraudstream bench $(ARGS)

up: setup  ## start the embedded stack (Kafka, Schema Registry, KSQL server)
	$(BIN)/fraudstream stack up

down:  ## stop the embedded stack
	@if [ -x $(BIN)/fraudstream ]; then $(BIN)/fraudstream stack down; fi

lint: setup  ## ruff + mypy
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix services tests bench
	$(BIN)/ruff format services tests bench

clean: down
	rm -rf $(VENV) $(FRAUDSTREAM_HOME)
