# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration test-e2e test-contract lint bench bench-phones mutation venv npm clean

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

## The whole suite: lint, unit, integration, end to end (the CI command). worksteal: the
## slow end-to-end tests sit at the end of the file order, and the default scheduler hands
## them out in advance, leaving one worker to run the tail alone while the other idles.
test: $(STAMP) npm lint
	$(BIN)/python -m pytest -q -n auto --dist worksteal

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

## Long benchmarks, not run in CI: identifier hashing's per-value cost and validate's peak
## memory, throughput and per-row cost, both against bare SHA-256 of the same identifiers,
## at BENCH_ROWS rows (make bench BENCH_ROWS=200000); the diff at DIFF_MEMBERS members; an
## end-to-end sync of SYNC_ROWS rows; and whether the app-wide rate limit holds: RATE_TRIALS
## trials of two audience runs against a TikTok enforcing tiktok_qps (any answer of 40100
## fails it). Each bench writes build/bench/<name>.json; the last line renders them into
## docs/performance.md, the one page the docs take performance figures from.
BENCH_ROWS ?= 1000000 5000000
DIFF_MEMBERS ?= 1000000 5000000
SYNC_ROWS ?= 1000000
RATE_TRIALS ?= 50
BENCH_RESULTS := build/bench
bench: $(STAMP)
	rm -rf $(BENCH_RESULTS)
	$(BIN)/python tests/bench/bench_identifiers.py
	$(BIN)/python tests/bench/bench_validate.py --rows $(BENCH_ROWS)
	$(BIN)/python tests/bench/bench_diff.py --members $(DIFF_MEMBERS)
	$(BIN)/python tests/bench/bench_sync_e2e.py --rows $(SYNC_ROWS) --range-bytes 16777216 --diff-inline-members 0
	$(BIN)/python tests/bench/bench_export_parts.py --parts 100
	$(BIN)/python tests/bench/bench_rate_limit.py --trials $(RATE_TRIALS)
	$(BIN)/python tests/bench/write_performance.py --results $(BENCH_RESULTS) \
	    --command 'make bench BENCH_ROWS="$(BENCH_ROWS)" DIFF_MEMBERS="$(DIFF_MEMBERS)" SYNC_ROWS=$(SYNC_ROWS) RATE_TRIALS=$(RATE_TRIALS)'

## The phone fast path's equivalence proof: PHONES generated numbers through both paths.
PHONES ?= 1000000
bench-phones: $(STAMP)
	$(BIN)/python -m tests.bench.bench_phones --count $(PHONES)

.PHONY: bench-duckdb
## DuckDB against our diff and validate (needs the bench extra; not a runtime dependency).
## Run after make bench: its figures join docs/performance.md (make bench starts it afresh).
bench-duckdb: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python tests/bench/bench_duckdb.py
	$(BIN)/python tests/bench/write_performance.py --results $(BENCH_RESULTS) --command 'make bench-duckdb'

## Mutation testing of the rule modules (mutmut; slow, not in CI). Config: [tool.mutmut].
# mutmut only understands ./, src/ and source/ layouts, so the package is staged as
# .mutation/src/tiktok_destination; mutmut's cache in .mutation/mutants survives re-runs.
# Results stand until the code changes: after adding tests, re-test survivors by name with
# `make mutation MUTANTS="name ..."`, or `rm -rf .mutation` for a fresh run.
MUTATION_DIR := .mutation
mutation: $(STAMP)
	test -x $(BIN)/mutmut || $(BIN)/pip install --quiet -e '.[dev,mutation]'
	rm -rf $(MUTATION_DIR)/src $(MUTATION_DIR)/tests
	mkdir -p $(MUTATION_DIR)/src
	cp -a layers/tiktok_destination/tiktok_destination $(MUTATION_DIR)/src/
	cp -a tests pyproject.toml $(MUTATION_DIR)/
	cd $(MUTATION_DIR) && env -u PYTHONPATH $(abspath $(BIN))/mutmut run --max-children 2 $(MUTANTS)
	cd $(MUTATION_DIR) && $(abspath $(BIN))/mutmut results

clean:
	rm -rf $(VENV) node_modules .mutation .tiktok-destination .pytest_cache .mypy_cache .ruff_cache
