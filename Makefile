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

.PHONY: setup browser lock run summary notebook test test-fast test-slow bench up down lint format clean

$(STAMP): pyproject.toml setup.py services/producer/_kaggle_records.c $(LOCK) requirements/build.txt
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

# `make test` runs every test in two phases: the unit tests (`-m "not slow"`: CPU-bound, no
# broker, no fixed port, no shared file) spread over TEST_WORKERS pytest-xdist processes, then the
# integration tests (`-m slow`): those sharing the session's stack one after another in one
# process (several kill or restart parts of their own), beside them in a second process those
# that start a stack of their own (`own_stack`). TEST_WORKERS=0 runs the unit tests in one
# process (so does a venv without pytest-xdist, with a note). Exit code 5 (nothing selected, e.g.
# PYTEST_ARGS naming a file of one kind) is no failure.
TEST_WORKERS ?= 2
XDIST := $$($(BIN)/python -c 'import xdist' 2>/dev/null && echo "-n $(TEST_WORKERS)" \
	|| echo "note: pytest-xdist is not installed: the unit tests run in one process" >&2)
PYTEST_OK_IF_EMPTY := rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test: setup  ## unit + integration + end-to-end tests (starts the embedded stack)
	@rc=0; $(MAKE) --no-print-directory test-fast || rc=1; \
	$(MAKE) --no-print-directory test-slow || rc=1; exit $$rc

test-fast: setup  ## unit tests only, on TEST_WORKERS processes
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS); $(PYTEST_OK_IF_EMPTY)

# The integration tests in two processes side by side: those that start their own broker or
# stack (`own_stack`: chaos, compose rehearsal, SASL) never touch the session's stack, so they
# run beside the ones that share it (serially among themselves); their log follows at the end.
OWN_STACK_LOG := $(FRAUDSTREAM_HOME)/test-own-stack.log
test-slow: setup  ## integration + end-to-end tests only (starts the embedded stack)
	@mkdir -p $(FRAUDSTREAM_HOME); \
	$(BIN)/python -m pytest -m "slow and own_stack" $(PYTEST_ARGS) > $(OWN_STACK_LOG) 2>&1 & \
	own=$$!; \
	$(BIN)/python -m pytest -m "slow and not own_stack" $(PYTEST_ARGS); shared_rc=$$?; \
	wait $$own; own_rc=$$?; \
	echo "== the own-stack integration tests (ran beside the above) =="; cat $(OWN_STACK_LOG); \
	ok() { [ $$1 -eq 0 ] || [ $$1 -eq 5 ]; }; ok $$shared_rc && ok $$own_rc

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
	rm -f services/producer/_kaggle_records.*.so
