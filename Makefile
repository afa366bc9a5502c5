# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration test-e2e test-contract lint bench bench-phones venv npm clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

npm: node_modules/.package-lock.json

## Run a bundled sample through the real state machine on moto + the TikTok emulator.
demo: $(STAMP)
	$(BIN)/tiktok-destination demo

## The whole suite: lint, unit, integration, end to end (the CI command).
test: $(STAMP) npm lint
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e

test-contract: $(STAMP)
	$(BIN)/python -m pytest -q tests/contract

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy layers/tiktok_destination/tiktok_destination local/tiktok_destination_local functions

## Long benchmarks, not run in CI: validate's peak memory, throughput, and per-row cost
## against bare SHA-256 of the same identifiers, at BENCH_ROWS rows (make bench BENCH_ROWS=200000).
BENCH_ROWS ?= 1000000 5000000
bench: $(STAMP)
	$(BIN)/python tests/bench/bench_validate.py --rows $(BENCH_ROWS)
	$(BIN)/python tests/bench/bench_diff.py
	$(BIN)/python tests/bench/bench_sync_e2e.py

## The phone fast path's equivalence proof: PHONES generated numbers through both paths.
PHONES ?= 1000000
bench-phones: $(STAMP)
	$(BIN)/python -m tests.bench.bench_phones --count $(PHONES)

.PHONY: bench-duckdb
## DuckDB against our diff and validate (needs the bench extra; not a runtime dependency).
bench-duckdb: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python tests/bench/bench_duckdb.py

clean:
	rm -rf $(VENV) node_modules .tiktok-destination .pytest_cache .mypy_cache .ruff_cache
