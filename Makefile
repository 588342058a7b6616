# fraudstream: `make run` runs the whole pipeline, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FRAUDSTREAM_HOME ?= $(CURDIR)/.fraudstream
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip

LOCK := requirements/dev.txt
# `make lock` writes these from pyproject.toml; the Dockerfile installs base.txt, setup dev.txt
# (base + the dev and notebook extras, same pins), both with hashes (pip --require-hashes)
UV_COMPILE := $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes -q
PIP_LOCKED := $(BIN)/pip install -q --disable-pip-version-check --require-hashes --no-deps

.PHONY: setup browser lock run summary notebook test test-fast bench up down lint format clean

$(STAMP): pyproject.toml $(LOCK) requirements/build.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) -r requirements/build.txt
	$(PIP_LOCKED) -r $(LOCK)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP) browser  ## .venv from the lock (requirements/dev.txt: runtime, dev, notebook), the project editable, the Kafka jars, headless Chromium
	$(BIN)/python -c "from services.broker.launcher import KafkaBroker; KafkaBroker.from_env().resolve_jars()"
	@echo "setup done: $(VENV)/ and Kafka jars in $(FRAUDSTREAM_HOME)/kafka/libs"

# the console's browser tests (tests/test_console_browser.py) drive Debian's headless Chromium
# with its chromedriver; installed with apt-get when missing, on Debian and as root only
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ -x /usr/bin/apt-get ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (the console's browser tests)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	else \
		echo "note: chromium + chromium-driver not installed (needs Debian's apt-get as root): the console's browser tests will be skipped"; \
	fi

lock: setup  ## re-resolve requirements/*.txt from pyproject.toml (keeps current pins where allowed)
	$(UV_COMPILE) requirements/build.in -o requirements/build.txt
	$(UV_COMPILE) pyproject.toml -o requirements/base.txt
	$(UV_COMPILE) pyproject.toml --extra dev --extra notebook -c requirements/base.txt -o $(LOCK)

run: setup  ## the whole pipeline end to end on the embedded stack
	$(BIN)/fraudstream run $(ARGS)

summary: setup  ## a fresh `run --exit`: docs/run-summary.json and the README's example output
	$(BIN)/fraudstream run --exit --summary-json docs/run-summary.json $(ARGS)
	$(BIN)/python -m services.pipeline.summary README.md docs/run-summary.json

notebook: setup  ## JupyterLab on the data scientist's notebook (start the stack first: make up)
	$(BIN)/jupyter lab notebooks/fraud_detection.ipynb

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
