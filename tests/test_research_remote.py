"""The remote path: ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, a
sweep through their ``tcp://`` address, and a worker killed in the middle of a sweep."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client

from tests.conftest import MARKET, REPO
from tests.test_research import write_grid
from tiller.research.executor import DaskExecutor, SerialExecutor
from tiller.research.grid import read_grid
from tiller.research.sweep import run_sweep
from tiller.store.repo import SWEEP_POINTS, Store

BASE = {"data_sources": f"csv:{MARKET}"}

EIGHT = """
name: eight
profiles: [trend-rp]
periods:
  - {start: 2012-01-03, end: 2019-12-31}
parameters:
  optimize.lookback: [40, 60, 90, 120]
  optimize.cash_buffer: [0.05, 0.10]
objective: sharpe
"""


def _dask(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dask")), *args],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], Path]]:
    """A scheduler and two single-threaded workers without nannies (a killed worker stays
    dead), each worker logging the points it computes to ``trace``."""
    trace = tmp_path / "computed.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLER_")}
    env |= {"TILLER_TEST_TRACE": str(trace), "PYTHONPATH": str(REPO)}
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _dask(
        "scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-dashboard",
        "--scheduler-file",
        str(scheduler_file),
        env=env,
        log=tmp_path / "scheduler.log",
    )
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    workers = [
        _dask(
            "worker",
            address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--preload",
            "tests.dask_trace",
            env=env,
            log=tmp_path / f"worker{i}.log",
        )
        for i in range(2)
    ]
    try:
        # Both workers must have registered before a test counts them (on a loaded CI
        # machine the second one can take several seconds to start).
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, workers, trace
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*workers, scheduler]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _computed(trace: Path) -> Counter[str]:
    text = trace.read_text() if trace.exists() else ""
    return Counter(re.findall(r"computed point ([0-9a-f]{12})", text))


@pytest.mark.slow
def test_a_sweep_through_a_remote_scheduler_matches_serial(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]], Path]
) -> None:
    address, _, trace = cluster
    grid = read_grid(write_grid(tmp_path, EIGHT.replace("[40, 60, 90, 120]", "[60, 120]")))
    remote_store = Store.open(f"sqlite:///{tmp_path / 'remote.db'}")
    with DaskExecutor(address) as remote:
        assert remote.workers == 2
        run, table = run_sweep(grid, remote_store, remote, BASE)
    assert run.computed == 4
    _, serial = run_sweep(
        grid, Store.open(f"sqlite:///{tmp_path / 's.db'}"), SerialExecutor(), BASE
    )
    pd.testing.assert_frame_equal(table, serial)
    assert sum(_computed(trace).values()) == 4  # computed on the workers, once each


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_nothing_is_computed_twice(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]], Path]
) -> None:
    address, workers, trace = cluster
    grid = read_grid(write_grid(tmp_path, EIGHT))
    store = Store.open(f"sqlite:///{tmp_path / 'sweep.db'}")
    outcome: dict[str, object] = {}

    def sweep() -> None:
        try:
            with DaskExecutor(address) as remote:
                outcome["run"] = run_sweep(grid, store, remote, BASE)[0]
        except Exception as exc:  # the sweep may fail with the worker; the rerun must not
            outcome["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill worker 0 once the first point is stored
        points = store.select(SWEEP_POINTS.select())
        if len(points) >= 1:
            break
        time.sleep(0.1)
    os.kill(workers[0].pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive()
    # the rerun completes on the surviving worker and reuses every stored point
    with DaskExecutor(address) as remote:
        rerun, table = run_sweep(grid, store, remote, BASE)
    assert rerun.total == 8 and rerun.computed + rerun.reused == 8
    assert table["score"].notna().all()  # none lost
    counts = _computed(trace)
    assert len(counts) == 8 and max(counts.values()) == 1, counts  # none computed twice
