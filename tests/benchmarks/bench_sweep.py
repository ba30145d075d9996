"""Sweep benchmark: a 16-point sweep of the 14-ETF backtest, serial vs a local Dask cluster.

Run from the repository root::

    uv run python tests/benchmarks/bench_sweep.py            # 2007-2023, 3 runs each
    uv run python tests/benchmarks/bench_sweep.py --quick    # 2019-2023, one run each

Prints figures, asserts nothing.  Each run is a whole ``tiller sweep --json`` process in a
fresh ``TILLER_HOME`` (nothing reused), timed from here (spawn to exit); peak memory is
the largest process of the tree (``ru_maxrss`` of the reaped children: the client or a
worker).  The grid: the default strategy on the 14 ETFs (the ``extended`` group without
BTC-USD), weekly, ``optimize.lookback`` x ``optimize.cash_buffer`` = 4 x 4 points.

Also printed: the mean compute time of a point as the store recorded it (the backtest
alone), the overhead per point (wall x workers / points - that mean: start-up, loading
the history, shipping it and the results), points per core-hour, and a lone
``tiller backtest`` of one point for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKET = REPO.parent / "shared" / "data" / "market"
ETFS = "GLD,SPY,QQQ,SLV,XLK,XLF,XLE,XLV,TLT,TIP,EFA,EEM,DBC,VNQ"
GRID = """name: bench-16
periods:
  - {{start: {start}, end: 2023-12-29}}
parameters:
  optimize.lookback: [63, 126, 189, 252]
  optimize.cash_buffer: [0.02, 0.05, 0.08, 0.11]
objective: sharpe
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {
        "TILLER_HOME": str(home),
        "TILLER_DATA_SOURCES": f"csv:{MARKET}",
        "TILLER_UNIVERSE": ETFS,
    }


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def _point_seconds(home: Path) -> list[float]:
    with sqlite3.connect(home / "tiller.db") as db:
        return [row[0] for row in db.execute("select seconds from sweep_points")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="2019-2023, one run each")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.n
    start = "2019-01-02" if args.quick else "2007-01-03"
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="tiller-bench-sweep-") as tmp:
        folder = Path(tmp)
        grid = folder / "grid.yaml"
        grid.write_text(GRID.format(start=start))
        figures: dict[str, dict[str, float]] = {}
        for executor in ("serial", "local"):
            walls, peaks, compute = [], [], []
            for i in range(repeats):
                home = folder / f"{executor}-{i}"
                wall, peak, out = _run(
                    [sys.executable, "-m", "tiller.cli", "sweep", "--grid", str(grid)]
                    + ["--executor", executor, "--json"],
                    _env(home),
                )
                assert json.loads(out)["computed"] == 16
                walls.append(wall)
                peaks.append(peak)
                compute.extend(_point_seconds(home))
            figures[executor] = {
                "wall": statistics.median(walls),
                "peak": max(peaks),
                "point": statistics.mean(compute),
                "cores": 1 if executor == "serial" else workers,
            }
        lone = statistics.median(
            _run(
                [sys.executable, "-m", "tiller.cli", "backtest", "--start", start]
                + ["--end", "2023-12-29", "--json"],
                _env(folder / f"lone-{i}"),
            )[0]
            for i in range(repeats)
        )
    print(f"Sweep benchmark: 16 points, 14 ETFs, {start}..2023-12-29, median of {repeats}")
    print(
        f"{'executor':<10}{'wall s':>9}{'speed-up':>10}{'pts/core-h':>12}"
        f"{'point s':>9}{'overhead/pt s':>15}{'peak MiB':>10}"
    )
    serial = figures["serial"]["wall"]
    for name, f in figures.items():
        per_core_hour = 16 / (f["wall"] * f["cores"]) * 3600
        overhead = f["wall"] * f["cores"] / 16 - f["point"]
        print(
            f"{name:<10}{f['wall']:9.2f}{serial / f['wall']:10.2f}{per_core_hour:12.0f}"
            f"{f['point']:9.2f}{overhead:15.2f}{f['peak']:10.0f}"
        )
    print(f"lone `tiller backtest` of one point (with its tearsheet): {lone:.2f} s")


if __name__ == "__main__":
    main()
