"""Backtest benchmark: whole-process wall time, peak memory and stage times of a backtest.

Run from the repository root::

    uv run python tests/benchmarks/bench_backtest.py               # every case (--case all)
    uv run python tests/benchmarks/bench_backtest.py --case c      # one case
    uv run python tests/benchmarks/bench_backtest.py --quick       # 2019-2020 windows (smoke run)

The script prints figures and asserts nothing about time: it is a measuring
stick to compare before and after a change, not a test (pytest does not
collect it).  Each case runs in a **new process** (``python
tests/benchmarks/bench_backtest.py --case X --child``) timed from this one, so
the wall time holds the interpreter start and every import, as a real
``tiller backtest`` run pays them.  The child prints its own breakdown as one
JSON line on stdout.

Cases (windows are the replayed dates; warm-up history before them is loaded too):

(a) The 14 ETFs of the ``extended`` universe group without its crypto asset
    (BTC-USD), 2007-01-01 .. 2023-12-31, cadence weekly, the full pipeline:
    ``load_settings`` -> :func:`tiller.backtest.data.load_market` through
    ``TILLER_DATA_SOURCES=csv:<repo>/../shared/data/market`` ->
    :func:`tiller.backtest.engine.run_backtest`.
(b) The same with cadence daily.
(c) 150 symbols of ``<repo>/../shared/data/universe/us_equities_daily.csv.gz``
    (the 150 with the most rows, ties by name), 2005-01-01 .. 2023-12-31,
    weekly.  The symbols are not in ``config/universe.yaml``, so the settings
    get ``assets`` (equity, max weight 5 %, stop loss 12 %, XNYS, cost class
    etf), ``universe_groups`` and ``universe`` overrides.  The bars are read
    with pandas from the gzip (its prices are split-adjusted closes, so
    ``adj_close = close``), cut to the warm-up start, and VIX is read from
    ``market/VIX.csv``; the :class:`~tiller.backtest.engine.MarketHistory` is
    built here.
(d) The ``daily-rebalance`` flow with Prefect: ``uv run --frozen tiller run
    daily --as-of 2023-12-29 --json`` in a fresh temporary ``TILLER_HOME``
    (SQLite) with ``TILLER_DATA_SOURCES=csv:<shared market>``,
    ``TILLER_UNIVERSE=extended`` and ``TILLER_HISTORY_START=2022-01-03``; the
    first run ingests that history, then a second run on the next session
    (``--as-of 2024-01-02``) shows the steady-state daily cost.

What is printed
---------------
``whole process``
    Wall time of the child process measured by this one (``time.perf_counter``
    around spawn and ``os.wait4``) and its peak RSS (``ru_maxrss`` from
    ``wait4``, which also counts the descendants the child waited for).
``python start + shutdown``
    The whole-process wall time minus the child's own clock (which starts at
    the top of the script, before any import but ``time``).
``imports``
    From the top of the script to after importing pandas and the backtest
    modules.  ``pandas_ta`` and ``riskfolio`` are imported lazily inside the
    run (``factor_panel`` and the first risk-parity solve); the import table
    measures each in its own process, alone and on top of the engine.
``riskfolio first call``
    ``optimize_weights`` is wrapped in the child (the engine's module
    attribute) to time every call: the call during which ``riskfolio`` got
    imported minus the median of the other calls.
``data``, ``settings``, ``run_backtest``
    Wall time of each step in the child; the run is split by
    ``BacktestResult.timings`` (seconds per engine stage) and ``untimed`` is
    the rest of ``run_backtest`` (the per-session record, the result and its
    metrics).
``result``
    Final NAV, total return, CAGR, max drawdown, trades, sessions and
    rebalances, so a reader sees the run was real.
Case (d) prints the stage durations the flow recorded
(``stage_checkpoints.duration_ms``) beside the wall time.

The summary compares with the goals (a) < 5 s and (c) < 15 s of whole-process
wall time and a peak memory < 1 GiB per process (figures, not assertions; in
``--quick`` mode the goals are shown for reference only).

Notes
-----
Children get a clean environment (no ``TILLER_*`` or ``PREFECT_*`` variables
from the caller).  Timings depend on the machine and on its load (other jobs,
disk cache); compare runs made on the same host.  ``--years N`` replays only
the last ``N`` calendar years of each window of (a)-(c).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # the child's own clock: before every other import

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
MARKET_DIR = (SHARED_DATA / "market").resolve()
UNIVERSE_FILE = (SHARED_DATA / "universe" / "us_equities_daily.csv.gz").resolve()
VIX_FILE = MARKET_DIR / "VIX.csv"
EQUITY_COUNT = 150
EQUITY_SPEC = {
    "asset_class": "equity",
    "max_weight": 0.05,
    "stop_loss": 0.12,  # AssetSpec has no default for it; the ETFs' value
    "calendar": "XNYS",
    "cost_class": "etf",
}
QUICK = (date(2019, 1, 1), date(2020, 12, 31))
# Bytecode of the children (``--pycache cached``): kept between runs, outside the repo and .venv.
PYCACHE_DIR = Path(tempfile.gettempdir()) / "tiller-bench-pycache"
FLOW_RUNS = ("2023-12-29", "2024-01-02")  # first run (ingest from history start), next session
FLOW_UNIVERSE = "extended"
FLOW_HISTORY_START = "2022-01-03"
FLOW_STAGES = ("ingest", "validate", "factors", "regime", "signals", "risk", "optimize", "orders")
ENGINE_STAGES = ("factors", "prepare", "fills", "mark", "risk", "signals", "optimize", "orders")
GOAL_WALL = {"a": 5.0, "c": 15.0}
GOAL_PEAK_MIB = 1024.0
LAZY = ("pandas_ta", "riskfolio")
ENGINE_IMPORT = "import pandas, tiller.backtest.engine, tiller.backtest.data"
RULE = "-" * 100


@dataclass(frozen=True)
class Case:
    """One backtest case: universe, replayed window and cadence."""

    key: str
    title: str
    start: date
    end: date
    cadence: str


CASES = {
    "a": Case(
        "a", "14 ETFs (extended minus crypto)", date(2007, 1, 1), date(2023, 12, 31), "weekly"
    ),
    "b": Case(
        "b", "14 ETFs (extended minus crypto)", date(2007, 1, 1), date(2023, 12, 31), "daily"
    ),
    "c": Case(
        "c", f"{EQUITY_COUNT} equities (csv.gz)", date(2005, 1, 1), date(2023, 12, 31), "weekly"
    ),
}


def window(case: Case, quick: bool, years: int | None) -> Case:
    """``case`` with the ``--quick`` window or the last ``years`` calendar years."""
    if quick:
        return replace(case, start=QUICK[0], end=QUICK[1])
    if years:
        return replace(case, start=date(max(case.end.year - years + 1, case.start.year), 1, 1))
    return case


def kib_to_mib(kib: float) -> float:
    """``ru_maxrss`` (KiB on Linux, bytes on macOS) in MiB."""
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


# =========================================================== child process
def etf_settings() -> Any:
    """Settings of case (a)/(b): the ``extended`` group minus crypto, read from the CSV folder."""
    from tiller.settings import load_settings

    extended = load_settings(universe="extended")
    symbols = [s for s in extended.symbols if extended.asset(s).asset_class != "crypto"]
    return load_settings(data_sources=f"csv:{MARKET_DIR}", universe=",".join(symbols))


def pick_equities(frame: Any) -> list[str]:
    """The :data:`EQUITY_COUNT` symbols with the most rows (ties by name) that the settings
    accept (``^[A-Z0-9][A-Z0-9.\\-^=]{0,14}$``)."""
    from tiller.settings import _SYMBOL

    counts = frame["symbol"].value_counts()
    ranked = sorted(
        ((str(s), int(n)) for s, n in counts.items() if _SYMBOL.match(str(s))),
        key=lambda item: (-item[1], item[0]),
    )
    return sorted(s for s, _ in ranked[:EQUITY_COUNT])


def equity_settings(symbols: list[str]) -> Any:
    """Settings of case (c): the symbols as equity assets (they are not in the config)."""
    from tiller.settings import load_settings

    return load_settings(
        assets={s: dict(EQUITY_SPEC) for s in symbols},
        universe_groups={"bench": list(symbols)},
        universe=",".join(symbols),
    )


def child(case: Case) -> int:
    """Run one case in this (fresh) process and print its breakdown as a JSON line."""
    report: dict[str, Any] = {"case": case.key, "start": str(case.start), "end": str(case.end)}
    report["bytecode"] = (
        f"cache prefix {sys.pycache_prefix}"
        if sys.pycache_prefix
        else ("not written" if sys.dont_write_bytecode else "__pycache__")
    )
    began = time.perf_counter()
    import numpy  # noqa: F401
    import pandas as pd

    report["import_pandas"] = time.perf_counter() - began
    began = time.perf_counter()
    import tiller.backtest.engine as engine
    from tiller.backtest.data import load_market, warmup_start

    report["import_tiller"] = time.perf_counter() - began
    report["imports"] = time.perf_counter() - T0  # script top -> everything imported

    data_seconds = 0.0
    if case.key in ("a", "b"):
        began = time.perf_counter()
        settings = etf_settings()
        report["settings"] = time.perf_counter() - began
        began = time.perf_counter()
        market = load_market(settings, case.start, case.end)
        data_seconds = time.perf_counter() - began
        report["data_note"] = "load_market through csv:<shared>/market"
    else:
        began = time.perf_counter()
        frame = pd.read_csv(UNIVERSE_FILE, parse_dates=["date"])
        read_seconds = time.perf_counter() - began
        symbols = pick_equities(frame)
        data_seconds = time.perf_counter() - began
        began = time.perf_counter()
        settings = equity_settings(symbols)
        report["settings"] = time.perf_counter() - began
        began = time.perf_counter()
        first = pd.Timestamp(warmup_start(settings, case.start))
        keep = (
            frame["symbol"].isin(symbols)
            & (frame["date"] >= first)
            & (frame["date"] <= pd.Timestamp(case.end))
        )
        bars = frame.loc[keep].reset_index(drop=True)
        bars["adj_close"] = bars["close"]  # split-adjusted closes, no dividend series
        del frame
        vix = pd.read_csv(VIX_FILE, usecols=["date", "close"], parse_dates=["date"])
        vix = vix.loc[(vix["date"] >= first) & (vix["date"] <= pd.Timestamp(case.end))]
        market = engine.MarketHistory(bars=bars, vix=vix.reset_index(drop=True))
        data_seconds += time.perf_counter() - began
        report["data_note"] = (
            f"read csv.gz {read_seconds:.3f} s, pick symbols, cut from {first.date()}, VIX csv"
        )
    report["data"] = data_seconds
    report["symbols"] = int(market.bars["symbol"].nunique())
    report["bar_rows"] = len(market.bars)
    report["first_bar"] = str(market.bars["date"].min().date())

    calls: list[tuple[float, bool]] = []  # (seconds, riskfolio imported during the call)
    original = engine.optimize_weights

    def timed_optimize(*args: Any, **kwargs: Any) -> Any:
        fresh = "riskfolio" not in sys.modules
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            calls.append((time.perf_counter() - began, fresh and "riskfolio" in sys.modules))

    engine.optimize_weights = timed_optimize
    before = {m for m in LAZY if m in sys.modules}
    began = time.perf_counter()
    result = engine.run_backtest(settings, market, case.start, case.end, cadence=case.cadence)  # type: ignore[arg-type]
    report["run"] = time.perf_counter() - began
    report["lazy_imported"] = [m for m in LAZY if m not in before and m in sys.modules]
    report["timings"] = dict(result.timings)
    cold = [s for s, imported in calls if imported]
    warm = [s for s, imported in calls if not imported]
    report["optimize_calls"] = len(calls)
    report["optimize_cold"] = cold[0] if cold else None
    report["optimize_warm_median"] = statistics.median(warm) if warm else None
    metrics = result.metrics
    report["result"] = {
        "final_nav": metrics.get("final_nav"),
        "total_return": metrics.get("total_return"),
        "cagr": metrics.get("cagr"),
        "max_drawdown": metrics.get("max_drawdown"),
        "trades": metrics.get("trades"),
        "sessions": metrics.get("sessions"),
        "max_level": metrics.get("max_level"),
        "rebalances": int(result.daily["rebalanced"].sum()),
        "first": str(result.start),
        "last": str(result.end),
    }
    report["peak_mib"] = kib_to_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    report["total"] = time.perf_counter() - T0
    print(json.dumps(report, default=str), flush=True)
    return 0


# ========================================================== parent process
@dataclass
class Measured:
    """A finished subprocess: wall seconds, peak RSS (MiB), exit code and output."""

    wall: float
    peak_mib: float
    code: int
    stdout: str
    stderr: str

    def last_json(self) -> dict[str, Any] | None:
        """The last stdout line that parses as a JSON object."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return value
        return None


CACHED = True  # --pycache cached (default) or env; set by main()
SOLVER: str | None = None  # --solver: optimize.solver for the children (None: the config's)


def clean_env(cached: bool | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment without ``TILLER_*`` / ``PREFECT_*``, plus quiet defaults.

    ``cached`` (default: the ``--pycache`` mode) lets the child write and read bytecode in
    :data:`PYCACHE_DIR` (``PYTHONPYCACHEPREFIX``, ``PYTHONDONTWRITEBYTECODE`` dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    if CACHED if cached is None else cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
    env.update(
        GX_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        YF_TELEMETRY="0",
        **extra,
    )
    if SOLVER:
        env["TILLER_OPTIMIZE__SOLVER"] = SOLVER
    return env


def measure(command: Sequence[str], env: dict[str, str]) -> Measured:
    """Run ``command`` from the repository root; wall time from here, peak RSS from ``wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=REPO, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            wall,
            kib_to_mib(usage.ru_maxrss),
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def code_version() -> str:
    """``git <short HEAD>`` and how many files under tiller/ differ from it (figures of a
    dirty tree belong to that tree only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "tiller", "tasks", "flows", "config"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "git unavailable"
    return f"git {head or '?'}" + (f" + {len(dirty)} changed/new paths" if dirty else "")


def uv_binary() -> str:
    """The uv running this script (``$UV``, set by ``uv run``), else ``~/.local/bin/uv`` or PATH."""
    local = Path.home() / ".local" / "bin" / "uv"
    found = os.environ.get("UV") or (str(local) if local.exists() else shutil.which("uv"))
    if not found:
        raise SystemExit("uv not found: run this script with `uv run python ...`")
    return found


# ------------------------------------------------------------------ imports
IMPORT_PROBES: tuple[tuple[str, str, str], ...] = (
    ("python -c pass (interpreter only)", "", ""),
    ("pandas + numpy", "", "import pandas, numpy"),
    ("tiller.backtest.engine + data (+ pandas)", "", ENGINE_IMPORT),
    ("pandas_ta, on top of the engine", ENGINE_IMPORT, "import pandas_ta"),
    ("riskfolio, on top of the engine", ENGINE_IMPORT, "import riskfolio"),
    ("riskfolio, alone", "", "import riskfolio"),
    ("flows.daily_rebalance (Prefect, GX), alone", "", "import flows.daily_rebalance"),
)


def probe(label: str, code: str, cached: bool) -> tuple[float, float] | None:
    """One import probe in a new process: (in-process import s, process wall s)."""
    done = measure([sys.executable, "-c", code], clean_env(cached))
    if done.code != 0:
        print(f"  {label}: failed (exit {done.code}): {done.stderr.strip()[-500:]}")
        return None
    return float(done.stdout.split()[-1]), done.wall


def import_costs(runs: int) -> list[tuple[str, tuple[float, float] | None, tuple[float, float]]]:
    """Each probe once with the caller's bytecode setting and, after a warm-up process, the best
    of ``runs`` with cached bytecode: (label, caller env, cached), each (import s, wall s)."""
    rows = []
    for label, setup, statement in IMPORT_PROBES:
        code = (
            f"{setup}\nimport time\nt = time.perf_counter()\n{statement or 'pass'}\n"
            "print(time.perf_counter() - t)"
        )
        as_is = probe(label, code, cached=False)
        warm = [probe(label, code, cached=True) for _ in range(max(runs, 1) + 1)][1:]
        done = [w for w in warm if w is not None]
        if done:
            rows.append((label, as_is, (min(w[0] for w in done), min(w[1] for w in done))))
    return rows


# ----------------------------------------------------------- cases a, b, c
def run_case(case: Case, quick: bool, years: int | None) -> tuple[Measured, dict[str, Any] | None]:
    """One case in a new process; its measurement and the child's report."""
    command = [sys.executable, str(Path(__file__).resolve()), "--case", case.key, "--child"]
    if quick:
        command.append("--quick")
    if years:
        command += ["--years", str(years)]
    done = measure(command, clean_env())
    return done, done.last_json()


def print_case(case: Case, done: Measured, report: dict[str, Any] | None) -> None:
    """The breakdown of one backtest case."""
    print(f"\n({case.key}) {case.title}, cadence {case.cadence}, {case.start} .. {case.end}")
    print(RULE)
    if report is None:
        print(f"  FAILED: exit {done.code} after {done.wall:.3f} s; stderr (last 6000 chars):")
        print("  " + done.stderr[-6000:].replace("\n", "\n  "))
        return
    line = "  {:<44} {:>9.3f} s  {}"
    print(
        line.format(
            "whole process (wall, from the parent)",
            done.wall,
            f"peak RSS {done.peak_mib:,.1f} MiB (child's own ru_maxrss {report['peak_mib']:,.1f})",
        )
    )
    print(
        line.format(
            "  python start + shutdown (wall - child clock)", done.wall - report["total"], ""
        )
    )
    print(
        line.format(
            "  imports (script top -> engine imported)",
            report["imports"],
            f"pandas+numpy {report['import_pandas']:.3f} s, "
            f"tiller.backtest {report['import_tiller']:.3f} s",
        )
    )
    print(line.format("  settings (load_settings)", report["settings"], ""))
    print(
        line.format(
            "  data loading",
            report["data"],
            f"{report['symbols']} symbols, {report['bar_rows']:,} bar rows from "
            f"{report['first_bar']}; {report['data_note']}",
        )
    )
    timings = report["timings"]
    lazy = ", ".join(report["lazy_imported"]) or "none"
    print(line.format("  run_backtest", report["run"], f"lazy imports inside: {lazy}"))
    for stage in [*ENGINE_STAGES, *sorted(set(timings) - set(ENGINE_STAGES))]:
        if stage in timings:
            print(line.format(f"    {stage}", timings[stage], ""))
    untimed = report["run"] - sum(timings.values())
    print(line.format("    untimed (record, result, metrics)", untimed, ""))
    rest = report["total"] - report["imports"] - report["settings"] - report["data"]
    print(line.format("  rest of the child (JSON, bookkeeping)", rest - report["run"], ""))
    cold, warm = report["optimize_cold"], report["optimize_warm_median"]
    if cold is not None and warm is not None:
        note = (
            f"{report['optimize_calls']} calls; the one importing riskfolio took {cold:.3f} s, "
            f"the others {warm * 1000:.1f} ms (median)"
        )
        print(line.format("  riskfolio first-call cost (cold - warm)", cold - warm, note))
    else:
        calls = report["optimize_calls"]
        print(f"  optimize_weights: {calls} calls; riskfolio was not imported during the run")
    r = report["result"]
    print(
        f"  result: final NAV ${r['final_nav']:,.2f}, total return {r['total_return']:+.1%}, "
        f"CAGR {r['cagr']:+.2%}, max drawdown {r['max_drawdown']:.1%}, max level L{r['max_level']}"
    )
    print(
        f"          {r['trades']:,} trades, {r['sessions']:,} sessions ({r['first']} .. "
        f"{r['last']}), {r['rebalances']:,} rebalance days"
    )


# ------------------------------------------------------------------ case d
def recorded(home: Path, as_of: str) -> dict[str, float]:
    """``stage_checkpoints.duration_ms`` per stage of ``daily-rebalance`` at ``as_of`` (s)."""
    connection = sqlite3.connect(home / "tiller.db")
    try:
        rows = connection.execute(
            "SELECT stage, duration_ms FROM stage_checkpoints WHERE flow = ? AND as_of = ?",
            ("daily-rebalance", as_of),
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        connection.close()
    return {str(stage): float(ms or 0) / 1000 for stage, ms in rows}


def run_flow() -> list[tuple[str, Measured, dict[str, Any] | None, dict[str, float]]]:
    """Case (d): the daily flow twice on one fresh home, through ``uv run tiller``."""
    tmp = Path(tempfile.mkdtemp(prefix="tiller-bench-backtest-"))
    home = tmp / "home"
    env = clean_env(
        TILLER_HOME=str(home),
        TILLER_DATA_SOURCES=f"csv:{MARKET_DIR}",
        TILLER_UNIVERSE=FLOW_UNIVERSE,
        TILLER_HISTORY_START=FLOW_HISTORY_START,
    )
    runs = []
    try:
        for as_of in FLOW_RUNS:
            command = [uv_binary(), "run", "--frozen", "tiller", "run", "daily"]
            done = measure([*command, "--as-of", as_of, "--json"], env)
            runs.append((as_of, done, done.last_json(), recorded(home, as_of)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return runs


def print_flow(runs: list[tuple[str, Measured, dict[str, Any] | None, dict[str, float]]]) -> None:
    """The wall time, peak memory and recorded stage times of the flow runs."""
    print(
        f"\n(d) daily-rebalance flow with Prefect: uv run --frozen tiller run daily --json, "
        f"universe {FLOW_UNIVERSE}, history from {FLOW_HISTORY_START}, fresh SQLite home"
    )
    print(RULE)
    for number, (as_of, done, summary, stages) in enumerate(runs, 1):
        label = "first run (ingests history)" if number == 1 else "second run (next session)"
        status = summary.get("status") if summary else f"no JSON (exit {done.code})"
        print(
            f"  {label:<30} --as-of {as_of}  wall {done.wall:8.3f} s  peak RSS "
            f"{done.peak_mib:8.1f} MiB  status {status}"
        )
        if summary and summary.get("error"):
            print(f"    error: {summary['error']}")
        if summary is None or summary.get("status") != "completed":
            print(
                "    stderr (last 3000 chars):\n    " + done.stderr[-3000:].replace("\n", "\n    ")
            )
        if stages:
            cells = ", ".join(f"{s} {stages[s]:.3f}" for s in FLOW_STAGES if s in stages)
            rest = done.wall - sum(stages.values())
            print(f"    recorded stage seconds: {cells}")
            print(
                f"    sum of stages {sum(stages.values()):.3f} s; the other {rest:.3f} s are "
                "uv, interpreter, imports, Prefect start-up and store"
            )


# ----------------------------------------------------------------- summary
def verdict(value: float, goal: float | None) -> str:
    """``met`` / ``missed`` against a goal, or ``-``."""
    if goal is None:
        return "-"
    return "met" if value < goal else "MISSED"


def print_summary(
    cases: list[tuple[Case, Measured, dict[str, Any] | None]],
    flow: list[tuple[str, Measured, dict[str, Any] | None, dict[str, float]]],
    quick: bool,
) -> None:
    """One table of wall time and peak memory against the goals."""
    print(f"\nSummary{' (quick windows: the goals are for the full windows)' if quick else ''}")
    print(RULE)
    head = f"  {'case':<56} {'wall s':>8} {'goal':>7} {'':>7} {'peak MiB':>9} {'< 1 GiB':>8}"
    print(head)
    for case, done, report in cases:
        label = f"({case.key}) {case.title} {case.cadence} {case.start.year}-{case.end.year}"
        if report is None:
            print(f"  {label:<56} {'failed':>8}")
            continue
        goal = GOAL_WALL.get(case.key)
        goal_text = f"< {goal:g} s" if goal else "-"
        print(
            f"  {label:<56} {done.wall:8.2f} {goal_text:>7} {verdict(done.wall, goal):>7} "
            f"{done.peak_mib:9.1f} {verdict(done.peak_mib, GOAL_PEAK_MIB):>8}"
        )
    for number, (as_of, done, _, _) in enumerate(flow, 1):
        kind = "first, ingest" if number == 1 else "steady state"
        label = f"(d{number}) daily flow {as_of} ({kind})"
        print(
            f"  {label:<56} {done.wall:8.2f} {'-':>7} {'-':>7} "
            f"{done.peak_mib:9.1f} {verdict(done.peak_mib, GOAL_PEAK_MIB):>8}"
        )
    print("  Wall = whole process seen from the parent, imports included; peak = ru_maxrss.")


# -------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options; run the cases (or, with ``--child``, one case in this process)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--case", choices=["a", "b", "c", "d", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="2019-2020 windows (smoke run)")
    parser.add_argument("--years", type=int, help="replay only the last N years of (a)-(c)")
    parser.add_argument("--import-runs", type=int, default=2, help="processes per import probe")
    parser.add_argument(
        "--pycache",
        choices=["cached", "env"],
        default="cached",
        help="cached (default): children keep bytecode in a private cache folder, like the "
        "Docker image's precompiled .venv; env: the caller's setting as is",
    )
    parser.add_argument(
        "--solver",
        choices=["riskfolio", "newton"],
        help="optimize.solver for every case (default: config/risk.yaml's)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global CACHED, SOLVER
    CACHED = args.pycache == "cached"
    SOLVER = args.solver
    mode_text = (
        f"cached in {PYCACHE_DIR} (PYTHONPYCACHEPREFIX)"
        if CACHED
        else "as the caller's environment sets it"
    )

    if args.child:
        return child(window(CASES[args.case], args.quick, args.years))

    keys = ["a", "b", "c", "d"] if args.case == "all" else [args.case]
    print(RULE)
    print(
        f"Backtest benchmark  python {sys.version.split()[0]}  {os.cpu_count()} CPUs  "
        f"data {SHARED_DATA}{'  --quick' if args.quick else ''}"
    )
    print(f"Code: {code_version()} (tiller, tasks, flows, config)  started {time.ctime()}")
    print(RULE)
    print(
        "Import costs, each in its own process: once as the caller's environment is "
        f"(PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}),"
    )
    print(f"and the best of {max(args.import_runs, 1)} with cached bytecode (after a warm-up):")
    head = f"{'caller env: import s':>21} {'wall s':>7} {'cached: import s':>17} {'wall s':>7}"
    print(f"  {'modules':<44} {head}")
    for label, as_is, cached in import_costs(args.import_runs):
        first = f"{as_is[0]:21.3f} {as_is[1]:7.3f}" if as_is else f"{'failed':>21} {'':>7}"
        print(f"  {label:<44} {first} {cached[0]:17.3f} {cached[1]:7.3f}")
    print(f"Cases run with bytecode {mode_text}.")

    cases: list[tuple[Case, Measured, dict[str, Any] | None]] = []
    for key in keys:
        if key == "d":
            continue
        case = window(CASES[key], args.quick, args.years)
        done, report = run_case(case, args.quick, args.years)
        print_case(case, done, report)
        cases.append((case, done, report))
    flow = []
    if "d" in keys:
        flow = run_flow()
        print_flow(flow)
    print_summary(cases, flow, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
