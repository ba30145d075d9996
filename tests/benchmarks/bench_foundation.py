"""Foundation benchmark: CLI cold start, ingest, validation and peak memory.

Run from the repository root::

    uv run python tests/benchmarks/bench_foundation.py [--pg-url URL]

The script prints figures and asserts nothing about time: it is a measuring
stick to compare before and after a change, not a test (pytest does not
collect it).  What it measures:

1. CLI cold start: the ``tiller --help`` console script as a fresh process,
   ``--cli-runs`` times (min / median / max seconds).
2. Ingest of the ``extended`` universe (15 symbols, VIX and the macro series)
   from the CSV folder ``<repo>/../shared/data/market`` (read in place, never
   copied) for ``2004-01-01 .. 2025-09-26`` into a fresh SQLite file in a
   temporary folder and, when a URL is given, into a fresh PostgreSQL
   database (created through the server's ``postgres`` database, dropped at
   the end).  Split into (a) plan + fetch through the provider chain (no
   database), (b) the upsert transaction, (c) their total; then the real
   ``ingest_stage`` on another fresh database, its checkpoint skip, and an
   incremental re-ingest with nothing new.
3. Validation: ``great_expectations`` import time, then the suite over every
   ingested bar (``validate_market_data``) and the whole ``validate_stage``.
4. Peak resident memory of this process (and of the largest CLI child).

Notes
-----
The PostgreSQL URL comes from ``--pg-url`` or ``TILLER_TEST_DATABASE_URL``;
its user needs ``CREATEDB``.  Pass ``--no-pg`` to ignore the environment
variable.  See ``tests/benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `tasks` and `models` when run as a plain script

DATA_DIR = REPO.parent / "shared" / "data" / "market"
HISTORY_START = date(2004, 1, 1)
AS_OF = date(2025, 9, 26)
PG_ENV = "TILLER_TEST_DATABASE_URL"
RULE = "-" * 120

NewUrl = Callable[[str], str]


# ------------------------------------------------------------------ output
def clock(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Call ``fn`` and return ``(result, wall seconds)``."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def header(title: str) -> None:
    """Print a section title and a rule."""
    print(f"\n{title}\n{RULE}")


def row(step: str, backend: str, seconds: float, rows: int | None = None, note: str = "") -> None:
    """One result line: step, backend, rows, seconds, rows/s and a free note."""
    count = f"{rows:>10,} rows" if rows is not None else " " * 15
    rate = f"{rows / seconds:>11,.0f} rows/s" if rows and seconds > 0 else " " * 18
    print(f"{step:<36} {backend:<8} {count} {seconds:>8.3f} s {rate}  {note}".rstrip(), flush=True)


# ------------------------------------------------------------- 1. CLI start
def cli_command() -> list[str]:
    """The ``tiller`` console script of this environment (``python -m`` as a fallback)."""
    entry = Path(sys.executable).with_name("tiller")
    if entry.exists():
        return [str(entry), "--help"]
    return [sys.executable, "-m", "tiller.cli", "--help"]


def bench_cli(runs: int) -> None:
    """Start ``tiller --help`` ``runs`` times as a new process; print min/median/max."""
    command = cli_command()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    shown = " ".join([Path(command[0]).name, *command[1:]])
    header(f"1. CLI cold start: {shown} as a new process, {runs} runs")
    print(
        f"{'tiller --help':<36} {'-':<8} min {min(times):.3f} s   median "
        f"{statistics.median(times):.3f} s   max {max(times):.3f} s"
    )


# ---------------------------------------------------------------- imports
def bench_imports(home: Path) -> None:
    """Time the imports the stages pay once per process (pandas and the store, Prefect, GX)."""
    header("0. imports (once per process)")
    _, seconds = clock(
        lambda: [
            importlib.import_module(m)
            for m in ("tiller.settings", "tiller.store.repo", "tiller.data.factory")
        ]
    )
    row("import tiller core (pandas, SA)", "-", seconds)
    from tiller.runtime import prepare_environment
    from tiller.settings import load_settings

    prepare_environment(load_settings(home=home))  # PREFECT_HOME in the temp folder
    _, seconds = clock(
        lambda: [importlib.import_module(m) for m in ("tasks.ingest", "tasks.validate")]
    )
    row("import tasks (prefect)", "-", seconds)
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    already = "great_expectations" in sys.modules
    _, seconds = clock(importlib.import_module, "great_expectations")
    # GX pins this logger at INFO ("Created temporary directory ... ephemeral docs site")
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    row("import great_expectations", "-", seconds, note="(already imported!)" if already else "")
    from tiller import calendars

    _, seconds = clock(
        lambda: [calendars.sessions(c, HISTORY_START, AS_OF) for c in ("XNYS", "24/7")]
    )
    row("exchange calendars (first use)", "-", seconds)


# ---------------------------------------------------------------- databases
@contextmanager
def sqlite_databases(folder: Path) -> Iterator[NewUrl]:
    """Fresh SQLite files under ``folder`` (removed with the temporary folder)."""
    yield lambda label: f"sqlite:///{folder / f'bench_{label}.db'}"


@contextmanager
def postgres_databases(admin_url: str) -> Iterator[NewUrl]:
    """Fresh PostgreSQL databases, created via the server's ``postgres`` database and
    dropped (``WITH (FORCE)``) when the block ends."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tiller.store.engine import normalise_url

    admin = make_url(normalise_url(admin_url)).set(database="postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def new(label: str) -> str:
        name = f"tiller_bench_{os.getpid()}_{label}"
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return admin.set(database=name).render_as_string(hide_password=False)

    try:
        yield new
    finally:
        with engine.connect() as connection:
            for name in created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def bench_settings(url: str, home: Path) -> Any:
    """Settings of the run: extended universe, the shared CSV folder, 2004 onwards."""
    from tiller.settings import load_settings

    return load_settings(
        universe="extended",
        data_sources=f"csv:{DATA_DIR}",
        history_start=HISTORY_START,
        database_url=url,
        home=home,
        log_level="WARNING",
    )


def open_store(url: str, backend: str) -> Any:
    """Open (and migrate) the store at ``url``, printing how long that took."""
    from tiller.store.repo import Store

    store, seconds = clock(Store.open, url)
    row("open + migrate (empty DB)", backend, seconds)
    return store


# ------------------------------------------------------------ 2. ingest
def write_result(store: Any, result: Any) -> tuple[int, float, int, float, float]:
    """Upsert every fetched frame in one transaction, as the ingest stage does.

    Returns bar rows, bar seconds, macro rows, macro seconds and commit seconds.
    """
    from tiller.data.base import SeriesKind

    bar_rows = macro_rows = 0
    bar_seconds = macro_seconds = 0.0
    with store.transaction() as tx:
        for fetched in result.fetched:
            if fetched.source is None:
                continue
            series, frame = fetched.request.series, fetched.frame
            if fetched.request.kind is SeriesKind.BAR:
                n, seconds = clock(store.upsert_bars, tx, series, frame, fetched.source)
                bar_rows, bar_seconds = bar_rows + n, bar_seconds + seconds
            else:
                n, seconds = clock(store.upsert_macro, tx, series, frame, fetched.source)
                macro_rows, macro_seconds = macro_rows + n, macro_seconds + seconds
        commit_start = time.perf_counter()
    commit_seconds = time.perf_counter() - commit_start
    return bar_rows, bar_seconds, macro_rows, macro_seconds, commit_seconds


def bench_ingest_steps(backend: str, new_url: NewUrl, home: Path) -> None:
    """(a) plan + fetch, (b) the upsert transaction, (c) both, on a fresh database."""
    from tiller.data.base import SeriesKind
    from tiller.data.factory import build_chain, series_specs
    from tiller.data.ingest import plan_ingest, run_ingest

    url = new_url("steps")
    settings = bench_settings(url, home)
    store = open_store(url, backend)
    try:
        specs = series_specs(settings)
        last = {**store.last_bar_dates(AS_OF), **store.last_macro_dates(AS_OF)}
        plans, plan_seconds = clock(plan_ingest, specs, last, AS_OF, settings.history_start)
        sessions = settings.data.cross_check_sessions if settings.data.cross_check else None
        result, fetch_seconds = clock(run_ingest, plans, build_chain(settings), AS_OF, sessions)
        read = plan_seconds + fetch_seconds
        bars = sum(len(f.frame) for f in result.fetched if f.request.kind is SeriesKind.BAR)
        series = f"{len(result.fetched)} series: {bars:,} bars + {result.rows - bars:,} macro"
        row("(a) plan + read/fetch (no DB)", backend, read, result.rows, series)
        bar_rows, bar_s, macro_rows, macro_s, commit_s = write_result(store, result)
        write = bar_s + macro_s + commit_s
        detail = f"bars {bar_s:.2f} s, macro {macro_s:.2f} s, commit {commit_s:.2f} s"
        row("(b) DB write (upsert transaction)", backend, write, bar_rows + macro_rows, detail)
        row("(c) total (a + b)", backend, read + write, result.rows)
    finally:
        store.close()


def new_context(settings: Any, store: Any, flow: str) -> Any:
    """A recorded flow run of ``flow`` for ``AS_OF`` and its stage context."""
    from tasks.context import RunContext

    run_id = store.start_run(flow, AS_OF, False, None, run_id=str(uuid.uuid4()))
    return RunContext(settings, store, flow, AS_OF, run_id)


def bench_stages(backend: str, new_url: NewUrl, home: Path) -> None:
    """The real path on another fresh database: ingest_stage, validation, skip, incremental."""
    from tasks.ingest import ingest_stage

    url = new_url("stage")
    settings = bench_settings(url, home)
    store = open_store(url, backend)
    try:
        ctx = new_context(settings, store, "bench")
        outcome, seconds = clock(ingest_stage, ctx)
        rows = outcome.value.rows
        row("ingest_stage (fresh DB, end to end)", backend, seconds, rows, outcome.status)
        bench_validation(ctx, backend)
        outcome, seconds = clock(ingest_stage, ctx)
        row("ingest_stage again (checkpoint)", backend, seconds, 0, outcome.status)
        # Another flow name, so the checkpoint does not short-cut the stage: the real
        # incremental path (plan from the stored last dates, fetch, persist nothing new).
        outcome, seconds = clock(ingest_stage, new_context(settings, store, "bench-incremental"))
        result = outcome.value
        note = (
            f"{outcome.status}: {len(result.up_to_date)} up to date, "
            f"{len(result.fetched)} re-asked (series ending before as_of)"
        )
        row("incremental re-ingest (nothing new)", backend, seconds, result.rows, note)
    finally:
        store.close()


# ----------------------------------------------------------- 3. validation
def bench_validation(ctx: Any, backend: str) -> None:
    """The GX suite over every ingested bar, then the whole validate stage."""
    from tasks.validate import load_inputs, validate_stage
    from tiller import validation

    settings = ctx.settings
    setup = getattr(validation, "_context", None)  # private, lru_cached: the GX context
    if hasattr(setup, "cache_info") and setup.cache_info().currsize == 0:
        _, seconds = clock(setup)
        row("GX ephemeral context (first use)", backend, seconds)
    (window, previous, deviations), seconds = clock(load_inputs, ctx)
    row("load bars to validate", backend, seconds, len(window))
    series = [*settings.symbols, settings.volatility_index]
    report, seconds = clock(
        validation.validate_market_data,
        window,
        ctx.as_of,
        settings.validation,
        calendar_of={s: settings.calendar_of(s) for s in window["symbol"].unique()},
        index_series=[settings.volatility_index],
        deviations=deviations,
        previous_close=previous,
        expected_series=series,
    )
    note = (
        f"{report.status}: {report.expectations_run} expectations, "
        f"{len(report.blocking)} blocking, {len(report.warnings)} warnings"
    )
    row("GX suite (validate_market_data)", backend, seconds, report.rows_checked, note)
    outcome, seconds = clock(validate_stage, ctx)
    rows = outcome.value.rows_checked
    row("validate_stage (load + GX + persist)", backend, seconds, rows, outcome.status)


def bench_backend(backend: str, new_url: NewUrl, home: Path) -> None:
    """Sections 2 and 3 on one database backend."""
    header(f"2-3. ingest and validation: {backend}")
    bench_ingest_steps(backend, new_url, home)
    bench_stages(backend, new_url, home)


# ---------------------------------------------------------------- 4. memory
def report_memory() -> None:
    """Peak RSS of this process and of the largest finished child process."""
    header("4. peak resident memory (getrusage, Linux KiB -> MiB)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{'this process':<36} {own:>10,.0f} MiB")
    print(f"{'largest child (CLI --help)':<36} {children:>10,.0f} MiB")


# ------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(PG_ENV),
        help=f"PostgreSQL server URL, user with CREATEDB (default: ${PG_ENV})",
    )
    parser.add_argument(
        "--no-pg", action="store_true", help=f"SQLite only, even if ${PG_ENV} is set"
    )
    parser.add_argument("--cli-runs", type=int, default=5, help="CLI cold starts (default 5)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every section and print the figures; returns the exit code."""
    args = parse_args(argv)
    if not DATA_DIR.is_dir():
        print(f"error: market data folder {DATA_DIR} not found", file=sys.stderr)
        return 2
    print(f"Tiller foundation benchmark  python {sys.version.split()[0]}  data {DATA_DIR}")
    print(f"window {HISTORY_START} .. {AS_OF}, universe extended (+ VIX, macro)")
    if args.cli_runs > 0:
        bench_cli(args.cli_runs)
    with tempfile.TemporaryDirectory(prefix="tiller-bench-") as tmp:
        home = Path(tmp)
        bench_imports(home)
        with sqlite_databases(home) as new_url:
            bench_backend("sqlite", new_url, home)
        if args.pg_url and not args.no_pg:
            with postgres_databases(args.pg_url) as new_url:
                bench_backend("postgres", new_url, home)
    report_memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
