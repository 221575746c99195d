# The two commands the README opens with: `make demo` and `make test`.
# Each does its own set-up: a venv, the project with its dev extra, and the local Kafka broker.
VENV ?= .venv
PYTHON ?= python3
SJ := $(VENV)/bin/streamjobs
PORT ?= 9092
export STREAMJOBS_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(PORT)
PYTEST_ARGS ?=

.PHONY: install tools up down demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

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

lint: install
	$(VENV)/bin/ruff check streamjobs tests bench examples
	$(VENV)/bin/mypy streamjobs

bench: up
	bench/run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
