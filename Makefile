# StreamFlow Feature Studio
#   make run    venv + install, seed two demo months if data/seeds is empty, ingest, status
#   make test   the test suite (embedded PostgreSQL; server/Redis tests when configured)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run install test lint bench bootstrap status clean-state

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

bootstrap: $(STAMP)
	@if [ -z "$$(ls -A data/seeds 2>/dev/null)" ]; then \
	  $(BIN)/streamflow seed --users 7043 --months 2 --start 2024-01-31 --out data/seeds --seed 42; fi
	$(BIN)/streamflow ingest data/seeds

run: bootstrap
	$(BIN)/streamflow status

status: $(STAMP)
	$(BIN)/streamflow status

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ingest.py

clean-state:
	rm -rf .streamflow
