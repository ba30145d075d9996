"""Backtest benchmark: whole-process wall time and peak memory, median of N runs.

Run from the repository root::

    uv run python tests/benchmarks/bench_backtest.py             # every case, 3 runs each
    uv run python tests/benchmarks/bench_backtest.py --case r -n 5
    uv run python tests/benchmarks/bench_backtest.py --quick     # one run each

It prints figures and asserts nothing (pytest does not collect it).  Every figure is a
new process timed from this one (spawn to exit, ``os.wait4``): the interpreter start and
every import are included, as a user's command pays them.  Peak memory is the child's
``ru_maxrss``.  Children get a clean environment (no ``TILLER_*``/``PREFECT_*`` of the
caller) and a fresh ``TILLER_HOME``.

Cases (data: ``<repo>/../shared/data``):

``a``  the default strategy, 14 ETFs (the ``extended`` group without BTC-USD),
       2007-01-03 .. 2023-12-29, weekly;
``r``  the trend-filtered risk parity, profile ``trend-rp`` (TREND-RP.md ``etf14``);
``c``  the default strategy on the 150 symbols of ``trend-rp-150`` (the first 150 of
       ``universe/us_equities_daily.csv.gz``, 5% cap each), 2005-01-01 .. 2023-12-31,
       weekly;
``s``  profile ``trend-rp-150`` (TREND-RP.md ``scale150``).

Each case is timed three ways:

``tiller backtest``
    the command a user runs: load, replay, save the run to SQLite, write the tearsheet
    (``--no-benchmarks``: the tearsheet's benchmark runs are cached per window and would
    be computed afresh in every new ``TILLER_HOME``);
``engine``
    load and replay only (``load_market`` + ``run_backtest``; what other engines' timings
    cover), with the engine's own stage split;
``numpy floor``
    for ``r`` and ``s``: ``tests/reference_trend_rp.py``, the plain numpy implementation
    of the same strategy (the least any Python engine can spend on it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
MARKET = DATA / "market"
UNIVERSE = DATA / "universe" / "us_equities_daily.csv.gz"
ETFS = "GLD,SPY,QQQ,SLV,XLK,XLF,XLE,XLV,TLT,TIP,EFA,EEM,DBC,VNQ"


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    start: str
    end: str
    env: dict[str, str]
    floor: str | None = None  # task name of tests/reference_trend_rp.py


def _default150_profile(folder: Path) -> Path:
    """The 150 symbols of trend-rp-150 with the default strategy (a profile file)."""
    text = (REPO / "config" / "profiles" / "trend-rp-150.yaml").read_text()
    universe = re.search(r"universe: >-\n((?:  .*\n)+)", text)
    assert universe is not None
    path = folder / "default-150.yaml"
    path.write_text(
        "universe: >-\n"
        + universe.group(1)
        + "asset_defaults: {asset_class: equity, max_weight: 0.05, stop_loss: 0.12}\n"
    )
    return path


def cases(folder: Path) -> dict[str, Case]:
    both = f"csv:{UNIVERSE},csv:{MARKET}"
    return {
        "a": Case(
            "a",
            "default strategy, 14 ETFs, weekly",
            "2007-01-03",
            "2023-12-29",
            {"TILLER_DATA_SOURCES": f"csv:{MARKET}", "TILLER_UNIVERSE": ETFS},
        ),
        "r": Case(
            "r",
            "trend-rp (TREND-RP etf14)",
            "2007-01-03",
            "2023-12-29",
            {"TILLER_DATA_SOURCES": f"csv:{MARKET}", "TILLER_PROFILE": "trend-rp"},
            floor="etf14",
        ),
        "c": Case(
            "c",
            "default strategy, 150 symbols, weekly",
            "2005-01-01",
            "2023-12-31",
            {"TILLER_DATA_SOURCES": both, "TILLER_PROFILE": str(_default150_profile(folder))},
        ),
        "s": Case(
            "s",
            "trend-rp-150 (TREND-RP scale150)",
            "2005-01-01",
            "2023-12-31",
            {"TILLER_DATA_SOURCES": both, "TILLER_PROFILE": "trend-rp-150"},
            floor="scale150",
        ),
    }


def _clean_env(extra: dict[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled modules are reused, as installed
    return env | extra | {"TILLER_HOME": str(home)}


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak MiB, stdout) of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def _median(runs: list[tuple[float, float, str]]) -> tuple[float, float, str]:
    walls = [r[0] for r in runs]
    return statistics.median(walls), max(r[1] for r in runs), runs[-1][2]


def measure(case: Case, repeats: int, folder: Path) -> dict[str, object]:
    python = sys.executable
    row: dict[str, object] = {"case": case.key, "title": case.title}
    runs = []
    for i in range(repeats):
        env = _clean_env(case.env, folder / f"{case.key}-cli-{i}")
        command = [python, "-m", "tiller.cli", "backtest", "--start", case.start]
        runs.append(_timed([*command, "--end", case.end, "--no-benchmarks", "--json"], env))
    wall, peak, out = _median(runs)
    summary = json.loads(out)
    row |= {"cli_s": wall, "cli_mib": peak, "final_nav": summary["metrics"]["final_nav"]}
    runs = []
    for i in range(repeats):
        env = _clean_env(case.env, folder / f"{case.key}-engine-{i}")
        runs.append(_timed([python, __file__, "--child", case.key, case.start, case.end], env))
    wall, peak, out = _median(runs)
    row |= {"engine_s": wall, "engine_mib": peak, "stages": json.loads(out)}
    if case.floor:
        floor = [
            _timed(
                [python, str(REPO / "tests" / "reference_trend_rp.py"), case.floor],
                _clean_env({"TILLER_SHARED_DATA": str(DATA)}, folder / "floor"),
            )
            for _ in range(repeats)
        ]
        wall, peak, _ = _median(floor)
        row |= {"floor_s": wall, "floor_mib": peak}
    return row


def child(start: str, end: str) -> None:
    """Load and replay only; print the stage split as JSON."""
    began = time.perf_counter()
    from datetime import date

    from tiller.backtest.data import load_market
    from tiller.backtest.engine import run_backtest
    from tiller.settings import load_settings

    settings = load_settings()
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    imported = time.perf_counter()
    market = load_market(settings, first, last)
    loaded = time.perf_counter()
    result = run_backtest(settings, market, first, last)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "imports": imported - began,
                "load": loaded - imported,
                "run": done - loaded,
                **{k: round(v, 3) for k, v in result.timings.items()},
                "final_nav": result.metrics["final_nav"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["a", "r", "c", "s", "all"], default="all")
    parser.add_argument("-n", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="one run per figure")
    parser.add_argument(
        "--child", nargs=3, metavar=("CASE", "START", "END"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(args.child[1], args.child[2])
        return
    repeats = 1 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="tiller-bench-") as tmp:
        folder = Path(tmp)
        chosen = cases(folder)
        keys = list(chosen) if args.case == "all" else [args.case]
        print(f"Backtest benchmark: whole process, median of {repeats}, peak RSS (MiB)")
        print(f"{'case':<44}{'tiller backtest':>18}{'engine':>16}{'numpy floor':>16}")
        for key in keys:
            row = measure(chosen[key], repeats, folder)
            floor = f"{row['floor_s']:7.2f} s {row['floor_mib']:4.0f}" if "floor_s" in row else ""
            print(
                f"({key}) {row['title']:<40}"
                f"{row['cli_s']:9.2f} s {row['cli_mib']:5.0f}"
                f"{row['engine_s']:8.2f} s {row['engine_mib']:4.0f}{floor:>16}"
            )
            stages = dict(row["stages"])  # type: ignore[call-overload]
            split = "  ".join(f"{k} {float(v):.2f}" for k, v in stages.items() if k != "final_nav")
            print(f"    final NAV {row['final_nav']:,.2f}; engine split (s): {split}")


if __name__ == "__main__":
    main()
