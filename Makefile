# Everything bootstraps itself: uv (into ~/.local/bin when missing), then the locked environment.
SHELL := /bin/bash
UV := $(shell uv --version >/dev/null 2>&1 && command -v uv || echo $(HOME)/.local/bin/uv)
SYNCED := .venv/.synced

.PHONY: demo test test-fast lint bench notebooks schema serve clean choose-default

$(HOME)/.local/bin/uv:
	python3 -m pip install --user --quiet uv

# --compile-bytecode: every test and CLI process starts from compiled modules (a shell with
# PYTHONDONTWRITEBYTECODE=1 would otherwise recompile pandas, Prefect and GX each time).
$(SYNCED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

## demo: run the daily flow offline on the synthetic market (SQLite under ./var)
demo: $(SYNCED)
	$(UV) run --frozen tiller demo

## test: lint, type-check, and the whole test suite (PostgreSQL too when TILLER_TEST_DATABASE_URL is set)
test: $(SYNCED) lint
	$(UV) run --frozen python -m compileall -q tiller tasks flows models tests
	$(UV) run --frozen pytest -n 2 --dist loadfile
	$(UV) run --frozen pytest --nbmake -n 2 notebooks/ -p no:cacheprovider

## test-fast: the suite without the tests that start real servers
test-fast: $(SYNCED)
	$(UV) run --frozen pytest -n 2 --dist loadfile -m "not slow"

lint: $(SYNCED)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

## bench: print the benchmark figures (not timed tests)
bench: $(SYNCED)
	$(UV) run --frozen python tests/benchmarks/bench_foundation.py
	$(UV) run --frozen python tests/benchmarks/bench_strategy.py
	$(UV) run --frozen python tests/benchmarks/bench_execution.py
	$(UV) run --frozen python tests/benchmarks/bench_backtest.py
	$(UV) run --frozen python tests/benchmarks/bench_sweep.py
	$(UV) run --frozen python tests/benchmarks/bench_daily.py

## choose-default: the walk-forward that chooses the shipped defaults (config/research/default-oos.yaml)
choose-default: $(SYNCED)
	TILLER_DATA_SOURCES=csv:../shared/data/market \
	TILLER_UNIVERSE=GLD,SPY,QQQ,SLV,XLK,XLF,XLE,XLV,TLT,TIP,EFA,EEM,DBC,VNQ \
	$(UV) run --frozen tiller walkforward --grid config/research/default-oos.yaml --train 5 --test 1

## notebooks: execute the research notebooks (offline, on ../shared/data/market; ~4 minutes)
notebooks: $(SYNCED)
	$(UV) run --frozen pytest --nbmake -n 2 notebooks/ -p no:cacheprovider

## schema: regenerate sql/schema*.sql from the models
schema: $(SYNCED)
	$(UV) run --frozen tiller db schema > sql/schema.sql
	$(UV) run --frozen tiller db schema --dialect postgresql > sql/schema.postgresql.sql

serve: $(SYNCED)
	$(UV) run --frozen tiller serve

clean:
	rm -rf var .venv .pytest_cache .mypy_cache .ruff_cache
