"""Daily-flow benchmark: ``tiller run daily`` as a whole process, three ways, and the core.

Run from the repository root::

    uv run python tests/benchmarks/bench_daily.py               # every case (--case all)
    uv run python tests/benchmarks/bench_daily.py --case b      # one case: a, b, c or d
    uv run python tests/benchmarks/bench_daily.py --solver riskfolio   # optimize.solver

The script prints figures and asserts nothing about time: it is a measuring stick to
compare before and after a change, not a test (pytest does not collect it).

Data: the ``extended`` universe (15 assets), VIX and the macro series from
``<repo>/../shared/data/market`` (``TILLER_DATA_SOURCES=csv:...``), history from
2022-01-03.  One home is prepared first and not timed: a fresh ``TILLER_HOME`` (SQLite)
and ``tiller run daily --as-of 2023-11-30`` in-process, which ingests the history and
trades the first day.  Each case then gets its own copy of that home and runs the three
sessions after it (2023-12-01, 2023-12-04, 2023-12-05), one new process each, so every
run does a real day's work (ingest one session, validate, decide, trade, report) and
the cases do the same work.

(a) in-process, no Prefect: ``tiller run daily --as-of D --json`` without
    ``PREFECT_API_URL``.
(b) against a running Prefect server: ``prefect server start --host 127.0.0.1`` on a
    free port with its own ``PREFECT_HOME`` (a temporary folder) is started once (its
    start-up is printed, not counted) and stopped at the end; the runs get
    ``PREFECT_API_URL`` and show in that server.  This is the operator's set-up.
(c) with the temporary server: ``tiller run daily --prefect`` without
    ``PREFECT_API_URL``; each run starts and stops its own server
    (:mod:`tiller.prefect_server`).
(d) the strategy core for one date in this process: bars of the 15 assets read from the
    CSV files (not timed), then factors (``factor_panel`` over the window the factors
    stage loads, ``factors_at``), regime, signals, risk (``decide.assess``) and target
    weights (``decide.targets``) for 2023-12-05; the median of ``--core-runs`` calls
    (the first call, which imports ``pandas_ta`` and, with the riskfolio solver,
    ``riskfolio``, is printed apart).

What is printed
---------------
For (a)-(c), per run: whole-process wall time (``time.perf_counter`` around spawn and
``os.wait4``, so interpreter start and every import are in it), CPU seconds (user +
system from ``wait4``; less sensitive than the wall time to other work on the host),
peak RSS (``ru_maxrss`` from ``wait4``; both count the descendants the process waited
for, e.g. the temporary server of (c)), the status, the orchestrator the summary names,
the sum of the stage times the run recorded (``stage_checkpoints.duration_ms``) and the
rest (interpreter, imports, Prefect, store).  Then the median of the runs.  Each case is
preceded by one warm-up run on a scratch copy (not counted) so that no timed run compiles
bytecode.

The summary compares (b) with the goal of 3 s (a figure, not an assertion).

Notes
-----
Runs use the virtualenv's ``tiller`` console script (as the Docker image does); ``uv
run`` adds its own start-up on top.  Children get a clean environment (no ``TILLER_*`` /
``PREFECT_*`` from the caller).  Bytecode: as in ``bench_backtest.py``, ``--pycache
cached`` (default) keeps the children's bytecode in ``$TMPDIR/tiller-bench-pycache``;
``--pycache env`` uses the caller's setting.  Only 127.0.0.1 is used.  Timings depend on
the machine and its load; compare runs made on the same host.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # the child's own clock: before every other import

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager, suppress  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import date, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MARKET_DIR = (REPO.parent / "shared" / "data" / "market").resolve()
PYCACHE_DIR = Path(tempfile.gettempdir()) / "tiller-bench-pycache"
UNIVERSE = "extended"
HISTORY_START = "2022-01-03"
PREPARE_AS_OF = "2023-11-30"  # not timed: ingests the history, first trades
RUN_DATES = ("2023-12-01", "2023-12-04", "2023-12-05")  # the timed runs of each case
CORE_AS_OF = date(2023, 12, 5)
STAGES = ("ingest", "validate", "factors", "regime", "signals", "risk", "optimize", "orders")
GOAL_B = 3.0
SERVER_STARTUP = 120.0
RULE = "-" * 100


@dataclass
class Measured:
    """A finished subprocess: wall seconds, peak RSS (MiB), exit code, output and CPU
    seconds (user + system, its waited-for descendants included)."""

    wall: float
    peak_mib: float
    code: int
    stdout: str
    stderr: str
    cpu: float = 0.0

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


@dataclass
class Run:
    """One timed ``tiller run daily``: its measurement, summary and recorded stage times."""

    as_of: str
    done: Measured
    summary: dict[str, Any] | None
    stages: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.summary is not None and self.summary.get("status") == "completed"


@dataclass
class Case:
    """A case of the flow: key, title, extra environment and options."""

    key: str
    title: str
    short: str
    env: dict[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    runs: list[Run] = field(default_factory=list)
    note: str = ""


CACHED = True  # --pycache cached (default) or env; set by main()
SOLVER: str | None = None  # --solver: optimize.solver for the children (None: the config's)


def kib_to_mib(kib: float) -> float:
    """``ru_maxrss`` (KiB on Linux, bytes on macOS) in MiB."""
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without ``TILLER_*`` / ``PREFECT_*``, plus quiet defaults
    and the bytecode cache of ``--pycache cached``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    if CACHED:
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
            usage.ru_utime + usage.ru_stime,
        )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or ``n/a``."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def code_version() -> str:
    """``git <short HEAD>`` and how many paths under tiller/, tasks/, flows/ and config/
    differ from it (figures of a dirty tree belong to that tree only)."""
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


def script(name: str) -> str:
    """A console script of this virtualenv (``tiller``, ``prefect``)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise SystemExit(f"{path} not found: run this script with `uv run python ...`")
    return str(path)


def flow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a flow run on ``home``: CSV data, extended universe."""
    return clean_env(
        TILLER_HOME=str(home),
        TILLER_DATA_SOURCES=f"csv:{MARKET_DIR}",
        TILLER_UNIVERSE=UNIVERSE,
        TILLER_HISTORY_START=HISTORY_START,
        **extra,
    )


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


def run_daily(home: Path, as_of: str, case: Case) -> Run:
    """``tiller run daily --as-of AS_OF --json`` (plus the case's options) on ``home``."""
    command = [script("tiller"), "run", "daily", "--as-of", as_of, "--json", *case.options]
    done = measure(command, flow_env(home, **case.env))
    return Run(as_of, done, done.last_json(), recorded(home, as_of))


# ------------------------------------------------------------ Prefect server (b)
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthy(url: str) -> bool:
    """The Prefect API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def high_water_mib(pid: int) -> float | None:
    """Peak RSS of a running process (``VmHWM``, MiB), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def prefect_server(folder: Path) -> Iterator[tuple[str, float, Callable[[], float | None]]]:
    """``prefect server start`` on a free 127.0.0.1 port with ``PREFECT_HOME`` in
    ``folder``; yields (API URL, start-up seconds, peak RSS reader); stopped afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = clean_env(
        PREFECT_HOME=str(folder),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_ENABLED="false",
    )
    log = (folder / "server.log").open("wb")
    began = time.perf_counter()
    process = subprocess.Popen(
        [script("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one below
    )
    try:
        while not healthy(url):
            if process.poll() is not None or time.perf_counter() - began > SERVER_STARTUP:
                log.flush()
                text = (folder / "server.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"the Prefect server did not start; its log:\n{text}")
            time.sleep(0.2)
        yield url, time.perf_counter() - began, lambda: high_water_mib(process.pid)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


# ------------------------------------------------------------------ cases a-c
def prepare(tmp: Path) -> tuple[Path, Measured]:
    """The prepared home (history ingested, first day traded) and that run's measurement."""
    home = tmp / "prepared"
    done = measure(
        [script("tiller"), "run", "daily", "--as-of", PREPARE_AS_OF, "--json"], flow_env(home)
    )
    summary = done.last_json()
    if summary is None or summary.get("status") != "completed":
        print(f"preparing the home failed (exit {done.code}):\n{done.stderr[-4000:]}")
        raise SystemExit(1)
    return home, done


def run_case(case: Case, prepared: Path, tmp: Path, warmup: bool) -> None:
    """A warm-up run on a scratch copy (not counted), then the timed runs on a fresh copy."""
    if warmup:
        scratch = tmp / f"warmup-{case.key}"
        shutil.copytree(prepared, scratch)
        run_daily(scratch, RUN_DATES[0], case)
        shutil.rmtree(scratch, ignore_errors=True)
    home = tmp / f"case-{case.key}"
    shutil.copytree(prepared, home)
    for as_of in RUN_DATES:
        case.runs.append(run_daily(home, as_of, case))


def print_case(case: Case) -> None:
    """Each run of a case and their median."""
    print(f"\n({case.key}) {case.title}")
    if case.note:
        print(f"    {case.note}")
    print(RULE)
    for run in case.runs:
        summary = run.summary or {}
        status = summary.get("status") or f"no JSON (exit {run.done.code})"
        staged = sum(run.stages.values())
        print(
            f"  --as-of {run.as_of}  wall {run.done.wall:7.3f} s  cpu {run.done.cpu:6.2f} s  "
            f"peak RSS {run.done.peak_mib:6.1f} MiB  {status:<9} "
            f"{summary.get('orchestrator', '?'):<7} stages {staged:6.3f} s  rest "
            f"{run.done.wall - staged:6.3f} s"
        )
        if summary.get("error"):
            print(f"    error: {summary['error']}")
        if not run.ok:
            print(
                "    stderr (last 3000 chars):\n    "
                + run.done.stderr[-3000:].replace("\n", "\n    ")
            )
    if not case.runs:
        return
    walls = [r.done.wall for r in case.runs]
    print(
        f"  median of {len(walls)}: wall {statistics.median(walls):.3f} s (min {min(walls):.3f}, "
        f"max {max(walls):.3f}), cpu {statistics.median(r.done.cpu for r in case.runs):.2f} s, "
        f"peak RSS {statistics.median(r.done.peak_mib for r in case.runs):.1f} MiB"
    )
    cells = []
    for stage in [*STAGES, "report"]:
        values = [r.stages[stage] for r in case.runs if stage in r.stages]
        if values:
            cells.append(f"{stage} {statistics.median(values):.3f}")
    print(f"  median recorded stage seconds: {', '.join(cells)}")
    rest = [r.done.wall - sum(r.stages.values()) for r in case.runs]
    print(
        f"  median outside the stages: {statistics.median(rest):.3f} s (interpreter, imports, "
        "store, lock, Prefect client or server)"
    )


# -------------------------------------------------------------------- case d
def core_child(runs: int) -> int:
    """Case (d) in this (fresh) process: time the strategy core; print one JSON line."""
    import pandas as pd

    from tiller.data.base import SeriesKind, SeriesRequest
    from tiller.data.providers.csv import CsvProvider
    from tiller.pipeline import decide
    from tiller.pipeline.market import Market
    from tiller.risk import RiskState
    from tiller.risk.window import ReturnWindow
    from tiller.settings import load_settings
    from tiller.strategy.factors import factor_panel, factors_at, min_history
    from tiller.strategy.regime import regime_at
    from tiller.strategy.signals import generate_signals

    imported = time.perf_counter() - T0
    began = time.perf_counter()
    settings = load_settings(universe=UNIVERSE, home=Path(tempfile.gettempdir()) / "tiller-core")
    symbols = list(settings.symbols)
    calendars = {s: settings.calendar_of(s) for s in symbols}
    provider = CsvProvider(MARKET_DIR)
    # The windows the stages load (tasks/strategy.load_history, tasks/portfolio.returns_frame).
    longest = max(min_history(settings.strategy.factors).values())
    factor_start = CORE_AS_OF - timedelta(days=int(longest * 7 / 5) + 30)
    sessions = max(settings.optimize.lookback, settings.risk.correlation_window)
    start = min(factor_start, CORE_AS_OF - timedelta(days=int(sessions * 7 / 5) + 20))
    frames = [
        provider.fetch(SeriesRequest(s, SeriesKind.BAR, start, CORE_AS_OF)).assign(symbol=s)
        for s in symbols
    ]
    bars = pd.concat(frames, ignore_index=True)
    factor_bars = bars.loc[bars["date"] >= pd.Timestamp(factor_start)].reset_index(drop=True)
    vix = provider.fetch(
        SeriesRequest(
            settings.volatility_index, SeriesKind.BAR, CORE_AS_OF - timedelta(14), CORE_AS_OF
        )
    )[["date", "close"]]
    no_vix = pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "close": []})
    returns = Market.from_bars(bars, no_vix, symbols, calendars).returns
    risk_window = ReturnWindow.from_frame(returns.tail(settings.risk.correlation_window))
    optimize_window = ReturnWindow.from_frame(returns.tail(settings.optimize.lookback))
    nav = settings.optimize.initial_capital
    loaded = time.perf_counter() - began

    steps: dict[str, list[float]] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        value = fn()
        steps.setdefault(name, []).append(time.perf_counter() - began)
        return value

    def core() -> Any:
        panel = step(
            "factor_panel", lambda: factor_panel(factor_bars, settings.strategy.factors, calendars)
        )
        snapshot = step("factors_at", lambda: factors_at(panel, CORE_AS_OF))
        reading = step("regime", lambda: regime_at(vix, CORE_AS_OF, settings.strategy.regime))
        signals = step(
            "signals", lambda: generate_signals(snapshot, reading, settings.strategy.signals)
        )
        decision = step(
            "risk",
            lambda: decide.assess(
                CORE_AS_OF, nav, None, {}, risk_window, {}, signals, RiskState(), settings
            ),
        )
        return step(
            "targets",
            lambda: decide.targets(signals, decision, {}, nav, optimize_window, settings),
        )

    lazy = ("pandas_ta", "riskfolio", "scipy")
    before = {m for m in lazy if m in sys.modules}
    totals = []
    result = None
    for _ in range(max(runs, 1) + 1):
        began = time.perf_counter()
        result = core()
        totals.append(time.perf_counter() - began)
    cold = {name: values[0] for name, values in steps.items()}
    warm = {name: statistics.median(values[1:]) for name, values in steps.items()}
    weights = getattr(result, "weights", {})
    report = {
        "imports": imported,
        "load": loaded,
        "cold": totals[0],
        "cold_imported": [m for m in lazy if m not in before and m in sys.modules],
        "cold_steps": cold,
        "median": statistics.median(totals[1:]),
        "min": min(totals[1:]),
        "max": max(totals[1:]),
        "runs": len(totals) - 1,
        "steps": warm,
        "symbols": len(symbols),
        "factor_rows": len(factor_bars),
        "method": getattr(result, "method", None),
        "weights": {k: round(v, 4) for k, v in sorted(weights.items())},
        "peak_mib": kib_to_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    }
    print(json.dumps(report, default=str), flush=True)
    return 0


def run_core(runs: int) -> tuple[Measured, dict[str, Any] | None]:
    """Case (d) in a new process (so its peak RSS is its own)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--core-child",
        "--core-runs",
        str(runs),
    ]
    done = measure(command, clean_env())
    return done, done.last_json()


def print_core(done: Measured, report: dict[str, Any] | None) -> None:
    """The strategy core's figures."""
    print(
        f"\n(d) strategy core for {CORE_AS_OF}, {UNIVERSE} universe, in-process "
        "(no store, no Prefect)"
    )
    print(RULE)
    if report is None:
        print(f"  FAILED: exit {done.code}; stderr (last 4000 chars):\n  " + done.stderr[-4000:])
        return
    line = "  {:<46} {:>9.4f} s  {}"
    print(
        line.format(
            f"median of {report['runs']} calls",
            report["median"],
            f"min {report['min']:.4f}, max {report['max']:.4f}; {report['symbols']} assets, "
            f"{report['factor_rows']:,} bar rows",
        )
    )
    for name, seconds in report["steps"].items():
        print(line.format(f"  {name}", seconds, ""))
    imported = ", ".join(report.get("cold_imported", [])) or "nothing"
    print(line.format("first call (not in the median)", report["cold"], f"imports {imported}"))
    print(line.format("imports before the core (pandas, tiller)", report["imports"], ""))
    print(line.format("settings + bars from CSV (not timed)", report["load"], ""))
    print(
        f"  process: wall {done.wall:.3f} s, peak RSS {done.peak_mib:.1f} MiB; method "
        f"{report['method']}, targets {report['weights']}"
    )


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the cases (or, with ``--core-child``, case (d) here)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--case", choices=["a", "b", "c", "d", "all"], default="all")
    parser.add_argument("--core-runs", type=int, default=30, help="timed calls of case (d)")
    parser.add_argument(
        "--pycache",
        choices=["cached", "env"],
        default="cached",
        help="cached (default): children keep bytecode in a private cache folder; env: the "
        "caller's setting as is",
    )
    parser.add_argument(
        "--solver",
        choices=["riskfolio", "newton"],
        help="optimize.solver for every run (default: config/risk.yaml's)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up runs")
    parser.add_argument("--core-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global CACHED, SOLVER
    CACHED = args.pycache == "cached"
    SOLVER = args.solver
    if args.core_child:
        return core_child(args.core_runs)

    keys = ["a", "b", "c", "d"] if args.case == "all" else [args.case]
    print(RULE)
    print(
        f"Daily-flow benchmark  python {sys.version.split()[0]}  {os.cpu_count()} CPUs  "
        f"data {MARKET_DIR}  universe {UNIVERSE}"
    )
    print(f"Code: {code_version()} (tiller, tasks, flows, config)  started {time.ctime()}")
    print(f"Load average at start: {load_average()} (other work on the host slows every figure)")
    mode = f"cached in {PYCACHE_DIR}" if CACHED else "as the caller's environment sets it"
    solver = SOLVER or "config/risk.yaml's"
    print(f"Bytecode {mode}; optimize.solver {solver}")
    print(
        f"Runs: {', '.join(RUN_DATES)}, each case on a copy of a home prepared at {PREPARE_AS_OF}"
    )
    print(RULE)

    cases: list[Case] = []
    server_note = ""
    flow_keys = [k for k in keys if k != "d"]
    if flow_keys:
        tmp = Path(tempfile.mkdtemp(prefix="tiller-bench-daily-"))
        try:
            prepared, prep = prepare(tmp)
            print(
                f"prepared home (not counted): --as-of {PREPARE_AS_OF}, history from "
                f"{HISTORY_START}: {prep.wall:.2f} s, peak RSS {prep.peak_mib:.1f} MiB"
            )
            if "a" in flow_keys:
                case = Case(
                    "a", "in-process, no Prefect: tiller run daily --json", "in-process, no Prefect"
                )
                run_case(case, prepared, tmp, not args.no_warmup)
                print_case(case)
                cases.append(case)
            if "b" in flow_keys:
                with prefect_server(tmp / "prefect-server") as (url, startup, server_peak):
                    server_note = f"server start-up {startup:.2f} s (not counted)"
                    case = Case(
                        "b",
                        "against a running Prefect server: PREFECT_API_URL set, tiller run daily "
                        "--json",
                        "PREFECT_API_URL, server already running",
                        env={"PREFECT_API_URL": url},
                    )
                    run_case(case, prepared, tmp, not args.no_warmup)
                    peak = server_peak()
                    peak_text = f", its peak RSS {peak:.1f} MiB" if peak else ""
                    case.note = f"prefect server start at {url}: {server_note}{peak_text}"
                print_case(case)
                cases.append(case)
            if "c" in flow_keys:
                case = Case(
                    "c",
                    "with the temporary server: tiller run daily --prefect --json (no "
                    "PREFECT_API_URL)",
                    "--prefect, temporary server per run",
                    options=("--prefect",),
                )
                run_case(case, prepared, tmp, not args.no_warmup)
                print_case(case)
                cases.append(case)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    core: tuple[Measured, dict[str, Any] | None] | None = None
    if "d" in keys:
        core = run_core(args.core_runs)
        print_core(*core)

    print(
        "\nSummary (medians; wall = whole process seen from here, imports included; load "
        f"average now {load_average()})"
    )
    print(RULE)
    for case in cases:
        walls = [r.done.wall for r in case.runs]
        peaks = [r.done.peak_mib for r in case.runs]
        failed = sum(not r.ok for r in case.runs)
        goal = ""
        if case.key == "b":
            verdict = "met" if statistics.median(walls) < GOAL_B else "MISSED"
            goal = f"  goal < {GOAL_B:g} s: {verdict}"
        cpu = statistics.median(r.done.cpu for r in case.runs)
        print(
            f"  ({case.key}) {case.short:<52} wall {statistics.median(walls):6.2f} s  cpu "
            f"{cpu:6.2f} s  {statistics.median(peaks):6.1f} MiB{goal}"
            + (f"  ({failed} runs not completed)" if failed else "")
        )
    if core is not None and core[1] is not None:
        label = f"strategy core, one date, 15 assets ({core[1]['runs']} calls)"
        print(
            f"  (d) {label:<52} wall {core[1]['median']:6.4f} s {'':<13}{core[0].peak_mib:6.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
