# The two commands the README opens with: `make demo` and `make test`.
# Each does its own set-up: a venv, the project with its dev extra, and the local Kafka broker.
VENV ?= .venv
PYTHON ?= python3
SJ := $(VENV)/bin/streamjobs
PORT ?= 9092
export STREAMJOBS_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(PORT)
PYTEST_ARGS ?=

FLOOR_VENV ?= .venv-floor
# The broker smoke test of `make floor`: emit, worker, retries/DLQ, reprocess, replay (~1 min).
FLOOR_SMOKE ?= tests/kafka/test_emit_cli.py tests/kafka/test_worker_basic.py \
	tests/kafka/test_worker_failures.py tests/kafka/test_reprocess_fencing.py \
	tests/kafka/test_replay.py

.PHONY: install tools up down demo test floor lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Lowest-direct resolution: every runtime dependency at its declared floor (.ci/floors writes
# the constraints from pyproject.toml), the rest resolved as usual.
$(FLOOR_VENV)/.installed: pyproject.toml .ci/floors
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install -q --upgrade pip
	$(PYTHON) .ci/floors > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/pip install -q -c $(FLOOR_VENV)/constraints.txt -e '.[dev]'
	touch $@

up: install
	$(SJ) dev up --port $(PORT)

down:
	$(SJ) dev down --port $(PORT)

demo: up
	$(VENV)/bin/python -m examples.demo

# Names every missing program (java, mvn, kcat, chromium, chromium-driver) and its package.
tools:
	@.ci/tools

test: tools up
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The unit tests and a short broker smoke test on the floor versions (CI runs it).
floor: $(FLOOR_VENV)/.installed up
	$(FLOOR_VENV)/bin/python .ci/floors --check
	$(FLOOR_VENV)/bin/pytest -q -p no:cacheprovider tests/unit $(FLOOR_SMOKE)

lint: install
	$(VENV)/bin/ruff check streamjobs tests bench examples
	$(VENV)/bin/mypy streamjobs

bench: up
	bench/run

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .pytest_cache .mypy_cache .ruff_cache
