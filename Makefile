# StreamFlow Feature Studio
#   make run    venv + install; seed three demo months if data/seeds is empty; ingest new months;
#               register the Feast repo; first materialization; open the app on 127.0.0.1:8501
#   make test   the test suite (embedded PostgreSQL; server/Redis/browser tests when configured)
#   make test-fast  pure functions only: no database, no Feast store (seconds)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run install install-dev test test-fast reliability audit lint bench bench-growth bootstrap status api stop clean-state

# runtime pins only: what `make run` needs (no pytest, Playwright or Prefect)
$(STAMP): requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# the lake profile's Spark, only when it is chosen (STREAMFLOW_OFFLINE_STORE=spark make run)
SPARK_STAMP := $(VENV)/.installed-spark
$(SPARK_STAMP): $(STAMP) requirements-spark.txt
	@command -v java >/dev/null || { echo "the lake profile needs Java 17 (e.g. apt-get install -y openjdk-17-jre-headless)"; exit 1; }
	$(BIN)/pip install -q -r requirements-spark.txt -c constraints.txt
	touch $(SPARK_STAMP)

PROFILE_STAMP := $(if $(filter spark,$(STREAMFLOW_OFFLINE_STORE)),$(SPARK_STAMP),$(STAMP))

# + the dev pins: tests, lint, benchmarks, the optional Prefect flow, Spark
$(DEV_STAMP): $(STAMP) requirements-dev.txt requirements-prefect.txt requirements-spark.txt
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

PORT ?= 8501
ADDRESS ?= 127.0.0.1

bootstrap: $(PROFILE_STAMP)
	$(BIN)/streamflow bootstrap
	$(BIN)/streamflow status

run: bootstrap
	@echo "StreamFlow Feature Studio on http://$(ADDRESS):$(PORT)  (Ctrl+C to stop)"
	$(BIN)/python app/serve.py --server.port $(PORT) --server.address $(ADDRESS)

api: $(STAMP)
	$(BIN)/streamflow serve-api --host $(ADDRESS) --port 8000

status: $(STAMP)
	$(BIN)/streamflow status

stop: $(STAMP)
	$(BIN)/streamflow stop-db

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

reliability: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/reliability

# Needs the PyPI JSON / OSV vulnerability services, which our build machines cannot reach.
audit: $(DEV_STAMP)
	$(BIN)/pip install -q pip-audit
	$(BIN)/pip-audit -r requirements.txt -r requirements-prefect.txt

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# every figure beside its same-run floor -> benchmarks/results.json -> docs/benchmarks.png
bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_monthly.py --scenario 100000x6
	$(BIN)/python benchmarks/bench_retrieval.py
	$(BIN)/python benchmarks/bench_app.py
	$(BIN)/python benchmarks/bench_pages.py --scenario 7043x2 100000x2
	$(BIN)/python benchmarks/bench_monitor.py --scenario 100000x12
	$(BIN)/python benchmarks/plot.py
	$(BIN)/python benchmarks/plot.py --docs

# how cost grows: 10,000 / 100,000 / 1,000,000 users x 2 months (about an hour on 2 cores)
bench-growth: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_ingest.py --users 10000 100000 1000000 --repeat 1
	$(BIN)/python benchmarks/bench_store.py --scenario 10000x2 100000x2 1000000x2 --repeat 1 --lookups 300
	$(BIN)/python benchmarks/bench_memory.py --users 1000000 --months 2
	$(BIN)/python benchmarks/bench_retrieval.py --scenario 1000000x2
	$(BIN)/python benchmarks/bench_pages.py --scenario 1000000x2
	$(BIN)/python benchmarks/bench_monitor.py --scenario 1000000x12
	$(BIN)/python benchmarks/bench_monthly.py --scenario 1000000x6 --repeat 1 --api-requests 0
	$(BIN)/python benchmarks/plot.py
	$(BIN)/python benchmarks/plot.py --docs

clean-state:
	rm -rf .streamflow
