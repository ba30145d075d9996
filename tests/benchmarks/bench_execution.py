"""Execution benchmark: order throughput on the simulated broker and the daily flow's wall time.

Run from the repository root::

    uv run python tests/benchmarks/bench_execution.py [--pg-url URL]

The script prints figures and asserts nothing about time: it is a measuring
stick to compare before and after a change, not a test (pytest does not
collect it).  What it measures:

1. Order throughput for 500 made-up symbols ``S000 .. S499``.  Their bars come
   from :class:`tiller.data.providers.synthetic.SyntheticProvider` (the shared
   equities file has only 186 real symbols): 60 XNYS sessions per symbol, stored
   with ``Store.upsert_bars`` in a fresh SQLite file and, when a URL is given, a
   fresh PostgreSQL database (created through the server's ``postgres``
   database, dropped at the end).  Two rounds are played, each step timed on
   its own and printed as orders per second:

   ``plan_orders``
       :func:`tiller.execution.orders.plan_orders` for 500 target weights
       (``decision=None``: no risk rule).
   ``SimulatedBroker.submit``
       One committed transaction per order (duplicate, funds and position checks).
   ``SimulatedBroker.process``
       ``broker.process(next session)``: every open order fills at the next open.
   ``apply_fill`` / ``snapshot``
       :func:`tiller.execution.accounting.apply_fill` for each fill, then one
       :func:`~tiller.execution.accounting.snapshot` of the book (rate = fills/s).

   Round 1 buys every symbol from cash; round 2 rebalances the next session
   (half the symbols go to 0 %, the other half grow), so it has sells and buys.
2. The full daily flow for the ``extended`` universe (15 assets, synthetic data,
   a fresh ``TILLER_HOME`` in a temporary folder): ``tiller run daily --as-of
   2024-03-08 --json`` as a subprocess twice on the same home (cold: ingest of
   the whole history, then ``--force``), timed from outside; the stage
   durations the flow recorded (``stage_checkpoints.duration_ms``); the same
   stages called directly in this process without Prefect on another fresh
   home (cold, then forced); and the cost of a process that only imports what
   the flow imports.  Prefect overhead is estimated as
   ``flow wall time - sum of direct stage times - process start and imports``.

Notes
-----
The PostgreSQL URL comes from ``--pg-url`` or ``TILLER_TEST_DATABASE_URL``; its
user needs ``CREATEDB``.  ``--no-pg`` ignores the environment variable.  The
flow subprocesses get a clean environment (no ``TILLER_*`` or ``PREFECT_*``
variables from the caller), so Prefect starts its ephemeral API under the temp
home.  Timings depend on the machine and its load; compare runs on one host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `tasks`, `flows` and `models` when run as a plain script

PG_ENV = "TILLER_TEST_DATABASE_URL"
PG_URL_DEFAULT = os.environ.get(PG_ENV)
# Nothing from the caller's shell may leak into the settings built here.
for _key in [k for k in os.environ if k.startswith("TILLER_")]:
    del os.environ[_key]
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("YF_TELEMETRY", "0")

SYMBOLS = [f"S{i:03d}" for i in range(500)]
SESSIONS = 60
ORDER_DAY = date(2024, 3, 7)  # round 1 orders; fills and round 2 on the next sessions
NAV = 10_000_000.0
FLOW_AS_OF = "2024-03-08"
FLOW = "daily-rebalance"
STAGES = ("ingest", "validate", "factors", "regime", "signals", "risk", "optimize", "orders")
FLOW_IMPORTS = (
    "tiller.cli",
    "flows.daily_rebalance",
    "flows.summary",
    "great_expectations",
    "pandas_ta",
    "riskfolio",
    "exchange_calendars",
)
RULE = "-" * 100


# ------------------------------------------------------------------ helpers
def clock(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Call ``fn`` and return ``(result, wall seconds)`` (``time.perf_counter``)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def rate(count: int, seconds: float) -> str:
    """``count / seconds`` formatted as a per-second rate."""
    return f"{count / seconds:12,.0f}" if seconds > 0 else f"{'inf':>12}"


@contextmanager
def pg_database(url: str, label: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``url``; dropped (``WITH (FORCE)``) after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(url).set(drivername="postgresql+psycopg", database="postgres")
    name = f"tiller_bench_{os.getpid()}_{label}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        import gc

        gc.collect()  # engines left behind close their pooled connections
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as exc:  # a leftover database is harmless; say so and go on
            warnings.warn(f"could not drop benchmark database {name}: {exc}", stacklevel=1)
        admin.dispose()


# ------------------------------------------------------- part 1: throughput
def synthetic_settings(home: Path, db_url: str) -> Any:
    """Settings whose universe is the 500 made-up equities (cost class ``etf``)."""
    from tiller.settings import AssetSpec, load_settings

    spec = AssetSpec(asset_class="equity", max_weight=0.05, stop_loss=0.12)
    return load_settings(
        home=home,
        database_url=db_url,
        assets=dict.fromkeys(SYMBOLS, spec),
        universe_groups={"core": list(SYMBOLS)},
        universe="core",
        data_sources="synthetic",
    )


def bar_window() -> tuple[list[date], date, date]:
    """XNYS sessions: ``SESSIONS`` of them ending two sessions after :data:`ORDER_DAY`."""
    from tiller.calendars import sessions

    after = [d.date() for d in sessions("XNYS", ORDER_DAY, ORDER_DAY + timedelta(days=10))]
    last = after[2]
    days = [d.date() for d in sessions("XNYS", last - timedelta(days=140), last)][-SESSIONS:]
    return days, days[0], last


def fetch_bars(start: date, end: date) -> dict[str, Any]:
    """Synthetic bars of every symbol in ``[start, end]``."""
    from tiller.data.base import SeriesKind, SeriesRequest
    from tiller.data.providers.synthetic import SyntheticProvider

    provider = SyntheticProvider(7)
    return {s: provider.fetch(SeriesRequest(s, SeriesKind.BAR, start, end)) for s in SYMBOLS}


def one_round(
    store: Any,
    settings: Any,
    broker: Any,
    book: Any,
    targets: dict[str, float],
    as_of: date,
    fill_day: date,
) -> tuple[Any, list[tuple[str, int, float, str]]]:
    """Plan, submit, process and book one rebalance; the new book and the timed rows."""
    from tiller.execution.accounting import Fill, apply_fill, snapshot
    from tiller.execution.broker import BrokerError
    from tiller.execution.orders import plan_orders
    from tiller.store.book import last_closes

    rows: list[tuple[str, int, float, str]] = []
    prices = last_closes(store, SYMBOLS, as_of)
    nav = snapshot(book, prices, as_of).nav
    account = broker.account()
    plan, seconds = clock(
        plan_orders,
        as_of,
        targets,
        book.quantities(),
        prices,
        nav=nav,
        cash=book.cash,
        buying_power=account.buying_power,
        decision=None,
        assets=settings.assets,
        config=settings.execution,
        paper_only=True,
    )
    sells = sum(o.side.value == "sell" for o in plan.orders)
    note = f"{len(plan.orders)} orders ({sells} sells), {len(plan.rejected)} rejected"
    rows.append(("plan_orders", len(plan.orders), seconds, note))

    rejected: Counter[str] = Counter()
    start = time.perf_counter()
    for order in plan.orders:
        try:
            broker.submit(order)
        except BrokerError as exc:
            rejected[f"{order.side.value} {exc.kind}"] += 1
    seconds = time.perf_counter() - start
    why = ", ".join(f"{n} {kind}" for kind, n in sorted(rejected.items()))
    note = f"{sum(rejected.values())} rejected" + (f" ({why})" if why else "")
    rows.append(("SimulatedBroker.submit", len(plan.orders), seconds, note))

    filled, seconds = clock(broker.process, fill_day)
    rows.append(("SimulatedBroker.process", len(filled), seconds, f"fills on {fill_day}"))

    fills = [
        Fill(
            o.client_order_id,
            o.symbol,
            o.side,
            o.filled_qty,
            float(o.filled_avg_price or 0.0),
            o.commission,
            o.filled_at,
        )
        for o in filled
        if o.filled_qty > 0
    ]
    start = time.perf_counter()
    for fill in fills:
        book = apply_fill(book, fill)
    seconds = time.perf_counter() - start
    rows.append(("accounting apply_fill", len(fills), seconds, f"{len(book.positions)} held"))
    close = last_closes(store, SYMBOLS, fill_day)
    snap, seconds = clock(snapshot, book, close, fill_day)
    rows.append(("accounting snapshot", len(book.positions), seconds, f"NAV ${snap.nav:,.2f}"))
    return book, rows


def throughput(
    backend: str, db_url: str, home: Path, bars: dict[str, Any], days: list[date]
) -> None:
    """Part 1 on one database: store the bars, then two timed rounds."""
    from tiller.execution.accounting import Portfolio
    from tiller.execution.simulated import SimulatedBroker
    from tiller.store.repo import Store

    settings = synthetic_settings(home, db_url)
    store, seconds = clock(Store.open, db_url)
    print(f"  {'open + migrate':<28} {backend:<10} {seconds:8.3f} s")

    def write() -> int:
        with store.transaction() as tx:
            return sum(store.upsert_bars(tx, s, f, "synthetic") for s, f in bars.items())

    written, seconds = clock(write)
    print(
        f"  {'store bars (upsert)':<28} {backend:<10} {seconds:8.3f} s   {written:,} rows "
        f"({rate(written, seconds).strip()} rows/s)"
    )

    broker = SimulatedBroker(store, settings, initial_cash=NAV)
    book = Portfolio.initial(NAV)
    day0 = days.index(ORDER_DAY)
    d1, d2 = days[day0 + 1], days[day0 + 2]
    first = {s: 0.95 / len(SYMBOLS) for s in SYMBOLS}
    second = {s: (0.0 if i % 2 == 0 else 1.4 / len(SYMBOLS)) for i, s in enumerate(SYMBOLS)}
    table: list[tuple[str, str, int, float, str]] = []
    for label, targets, as_of, fill_day in (
        ("1 buy", first, ORDER_DAY, d1),
        ("2 rebal", second, d1, d2),
    ):
        book, rows = one_round(store, settings, broker, book, targets, as_of, fill_day)
        table.extend((label, *r) for r in rows)
    print(f"  {'round':<8} {'step':<26} {'count':>6} {'seconds':>9} {'per second':>12}  note")
    for label, step, count, seconds, note in table:
        print(f"  {label:<8} {step:<26} {count:>6} {seconds:9.4f} {rate(count, seconds)}  {note}")
    store.close()


def part_one(pg_url: str | None, tmp: Path) -> None:
    """Order throughput on SQLite and (optionally) PostgreSQL."""
    print(f"\n1. Order throughput, {len(SYMBOLS)} synthetic symbols, {SESSIONS} sessions of bars")
    print(RULE)
    (days, start, end), _ = clock(bar_window)
    bars, seconds = clock(fetch_bars, start, end)
    rows = sum(len(f) for f in bars.values())
    print(f"  {'synthetic fetch':<28} {'-':<10} {seconds:8.3f} s   {rows:,} rows, {start} .. {end}")
    throughput("sqlite", f"sqlite:///{tmp / 'throughput.db'}", tmp / "home-sqlite", bars, days)
    if pg_url:
        with pg_database(pg_url, "orders") as url:
            throughput("postgresql", url, tmp / "home-pg", bars, days)
    else:
        print("  (PostgreSQL skipped: no --pg-url and no TILLER_TEST_DATABASE_URL)")


# ------------------------------------------------------------ part 2: flow
def flow_env(home: Path) -> dict[str, str]:
    """A clean environment for the CLI subprocess: no caller TILLER_* / PREFECT_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    env.update(
        TILLER_HOME=str(home),
        TILLER_UNIVERSE="extended",
        TILLER_DATA_SOURCES="synthetic",
        GX_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def run_cli(home: Path, force: bool) -> tuple[dict[str, Any], float]:
    """``uv run tiller run daily --as-of ... --json`` in a subprocess; summary and wall seconds."""
    command = ["uv", "run", "tiller", "run", "daily", "--as-of", FLOW_AS_OF, "--json"]
    if force:
        command.append("--force")
    done, seconds = clock(
        subprocess.run, command, cwd=REPO, env=flow_env(home), capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        print(f"  flow produced no JSON (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return {"status": f"exit {done.returncode}"}, seconds
    return json.loads(lines[-1]), seconds


def import_cost(home: Path) -> float:
    """Wall seconds of ``uv run python -c 'import ...'`` for the modules the flow process loads."""
    code = "; ".join(f"import {m}" for m in FLOW_IMPORTS)
    _, seconds = clock(
        subprocess.run,
        ["uv", "run", "python", "-c", code],
        cwd=REPO,
        env=flow_env(home),
        capture_output=True,
        check=True,
    )
    return seconds


def recorded_durations(home: Path) -> dict[str, float]:
    """``stage_checkpoints.duration_ms`` per stage of the flow's SQLite database (seconds)."""
    import sqlite3

    connection = sqlite3.connect(home / "tiller.db")
    try:
        rows = connection.execute(
            "SELECT stage, duration_ms FROM stage_checkpoints WHERE flow = ? AND as_of = ?",
            (FLOW, FLOW_AS_OF),
        ).fetchall()
    finally:
        connection.close()
    return {str(stage): float(ms) / 1000 for stage, ms in rows}


def direct_stages(home: Path, force: bool) -> tuple[dict[str, float], str]:
    """The eight stages called without Prefect (as the flow chains them); seconds per stage."""
    from tasks.context import RunContext
    from tasks.execute import orders_stage
    from tasks.ingest import ingest_stage
    from tasks.optimize import optimize_stage
    from tasks.risk import risk_stage
    from tasks.strategy import factors_stage, regime_stage, signals_stage
    from tasks.validate import validate_stage
    from tiller.settings import load_settings
    from tiller.store.repo import Store

    settings = load_settings(home=home, universe="extended", data_sources="synthetic")
    as_of = date.fromisoformat(FLOW_AS_OF)
    times: dict[str, float] = {}
    store, times["(open store + start run)"] = clock(Store.open, settings.db_url)
    start = time.perf_counter()
    run_id = store.start_run(FLOW, as_of, force, None)
    ctx = RunContext(settings, store, FLOW, as_of, run_id, force)
    times["(open store + start run)"] += time.perf_counter() - start

    def stage(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        outcome, times[name] = clock(fn, ctx, *args)
        return outcome

    stage("ingest", ingest_stage)
    checked = stage("validate", validate_stage)
    if checked.status == "blocked":
        return times, f"blocked by validate: {checked.value.blocking_message()}"
    snapshot = stage("factors", factors_stage).value
    reading = stage("regime", regime_stage).value
    signals = stage("signals", signals_stage, snapshot, reading).value
    decision = stage("risk", risk_stage, signals).value
    targets = stage("optimize", optimize_stage, signals, decision).value
    stage("orders", orders_stage, targets, decision)
    store.finish_run(run_id, "completed", dict.fromkeys(STAGES, "completed"))
    store.close()
    return times, "completed"


def part_two(tmp: Path) -> None:
    """The daily flow through the CLI, the stages without Prefect, and the split."""
    print(f"\n2. Daily flow, universe extended (15 assets), synthetic data, as_of {FLOW_AS_OF}")
    print(RULE)
    imports = import_cost(tmp / "home-imports")  # also warms uv's own cache for the runs below
    imports = min(imports, import_cost(tmp / "home-imports"))
    flow_home = tmp / "home-flow"
    cold, cold_wall = run_cli(flow_home, force=False)
    cold_recorded = recorded_durations(flow_home)
    forced, forced_wall = run_cli(flow_home, force=True)
    forced_recorded = recorded_durations(flow_home)
    print(f"  flow cold:   status {cold.get('status')}  stages {cold.get('stages')}")
    print(f"  flow forced: status {forced.get('status')}  stages {forced.get('stages')}")

    # Pre-import what the stages import lazily, so the direct times hold no import cost
    # (the subprocess import figure above pays for those imports instead).
    for module in FLOW_IMPORTS:
        __import__(module)
    direct_home = tmp / "home-direct"
    direct_cold, status_cold = direct_stages(direct_home, force=False)
    direct_forced, status_forced = direct_stages(direct_home, force=True)
    print(f"  direct cold: {status_cold};  direct forced: {status_forced}")
    print(RULE)
    head = f"  {'stage':<26} {'direct cold':>12} {'flow cold':>10} {'direct force':>13}"
    print(f"{head} {'flow force':>11}")
    print(
        f"  {'':<26} {'(no Prefect)':>12} {'(recorded)':>10} {'(no Prefect)':>13} "
        f"{'(recorded)':>11}"
    )
    for name in ("(open store + start run)", *STAGES):
        cells = [
            direct_cold.get(name),
            cold_recorded.get(name),
            direct_forced.get(name),
            forced_recorded.get(name),
        ]
        text = [f"{c:.3f}" if c is not None else "-" for c in cells]
        print(f"  {name:<26} {text[0]:>12} {text[1]:>10} {text[2]:>13} {text[3]:>11}")
    sums = [
        sum(v for k, v in direct_cold.items() if k in STAGES),
        sum(cold_recorded.values()),
        sum(v for k, v in direct_forced.items() if k in STAGES),
        sum(forced_recorded.values()),
    ]
    print(
        f"  {'sum of stages':<26} {sums[0]:12.3f} {sums[1]:10.3f} {sums[2]:13.3f} {sums[3]:11.3f}"
    )
    print(RULE)
    print(f"  {'':<44} {'cold':>10} {'forced':>10}")
    print(
        f"  {'flow wall time (uv run tiller run daily)':<44} {cold_wall:10.3f} {forced_wall:10.3f}"
    )
    print(f"  {'  process start + imports (uv run python -c)':<44} {imports:10.3f} {imports:10.3f}")
    print(f"  {'  stage compute (direct, no Prefect)':<44} {sums[0]:10.3f} {sums[2]:10.3f}")
    overhead = (cold_wall - sums[0] - imports, forced_wall - sums[2] - imports)
    print(f"  {'  Prefect overhead (rest)':<44} {overhead[0]:10.3f} {overhead[1]:10.3f}")
    inside = (cold_recorded, forced_recorded)
    gap = [
        w - sum(r.values()) - imports for w, r in zip((cold_wall, forced_wall), inside, strict=True)
    ]
    print(f"  {'  (wall - recorded stages - imports)':<44} {gap[0]:10.3f} {gap[1]:10.3f}")
    print("  Imports: " + ", ".join(FLOW_IMPORTS) + " (best of 2 processes).")
    print("  The recorded times (stage_checkpoints.duration_ms) run from the stage's compute to")
    print("  its checkpoint write; they leave out the fingerprint inputs read before compute.")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run both parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=PG_URL_DEFAULT, help=f"default: ${PG_ENV}")
    parser.add_argument("--no-pg", action="store_true", help=f"ignore ${PG_ENV}")
    parser.add_argument("--skip-flow", action="store_true", help="part 1 only")
    args = parser.parse_args(argv)
    pg_url = None if args.no_pg else args.pg_url
    tmp = Path(tempfile.mkdtemp(prefix="tiller-bench-exec-"))
    try:
        print(RULE)
        print(f"Execution benchmark  python {sys.version.split()[0]}  temp {tmp}")
        print(RULE)
        part_one(pg_url, tmp)
        if not args.skip_flow:
            part_two(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
