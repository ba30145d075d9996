"""One daily run at a time: the run lock on SQLite (flock) and PostgreSQL (advisory lock).

A second run waits, or gives up with one line naming the holder, having written
nothing; a lock left by a killed process is free again; two runs started together
never send an order twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import MARKET
from tests.helpers import RULES_DAILY
from tests.runner import run_daily, start_daily
from tiller.store.locks import LockBusy, run_lock
from tiller.store.repo import CHECKPOINTS, ORDERS, RUNS, Store
from tiller.store.simbroker import ORDERS as SIM_ORDERS

HOLD = """
import sys, time
from tiller.store.locks import run_lock
from tiller.store.repo import Store
store = Store.open(sys.argv[1])
with run_lock(store, "daily-rebalance", "held by a test", 0):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(db_url: str, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, db_url, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_waits_or_gives_up_naming_the_first(db_url: str) -> None:
    store = Store.open(db_url)
    holder = _holder(db_url, 1.5)
    try:
        with pytest.raises(LockBusy) as info, run_lock(store, "daily-rebalance", "second", 0):
            pass
        message = str(info.value)
        assert "\n" not in message and "holds the run lock" in message
        assert f"pid {holder.pid}@" in message and "held by a test" in message
        began = time.monotonic()
        with run_lock(store, "daily-rebalance", "second", 30):  # waits for the holder
            assert time.monotonic() - began > 0.3
        # another lock name is independent
        with run_lock(store, "weekly-review", "other", 0):
            pass
    finally:
        holder.kill()
        holder.wait()
        store.close()


def test_a_lock_left_by_a_killed_process_is_free_again(db_url: str) -> None:
    store = Store.open(db_url)
    holder = _holder(db_url, 600)
    try:
        with pytest.raises(LockBusy), run_lock(store, "daily-rebalance", "second", 0):
            pass
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up at all
        holder.wait()
        with run_lock(store, "daily-rebalance", "after the kill", 10):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
        store.close()


def _env(tmp_path: Path, db_url: str, wait: str = "0") -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    return base | {
        "TILLER_HOME": str(tmp_path / "home"),
        "TILLER_DATABASE_URL": db_url,
        "TILLER_DATA_SOURCES": f"csv:{MARKET}",
        "TILLER_UNIVERSE": "SPY,QQQ,GLD,TLT",
        "TILLER_HISTORY_START": "2020-03-02",
        "TILLER_OPTIMIZE__SOLVER": "newton",
        "TILLER_RUN_LOCK_WAIT_SECONDS": wait,
        "GX_ANALYTICS_ENABLED": "false",
        **RULES_DAILY,
    }


def _count(store: Store, table, *where) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(table)
    for condition in where:
        query = query.where(condition)
    return int(store.select(query).iloc[0, 0])


@pytest.mark.slow
def test_a_run_refused_by_the_lock_writes_nothing(tmp_path: Path, db_url: str) -> None:
    store = Store.open(db_url)
    with run_lock(store, "daily-rebalance", "by an operator", 0):
        refused = run_daily(_env(tmp_path, db_url), "2021-06-01")
    assert refused.exitcode == 2 and refused.error is not None
    assert "holds the run lock" in refused.error and "operator" in refused.error
    assert "\n" not in refused.error
    assert _count(store, RUNS) == 0 and _count(store, CHECKPOINTS) == 0
    store.close()


@pytest.mark.slow
def test_two_runs_started_together_never_send_an_order_twice(tmp_path: Path, db_url: str) -> None:
    """Both start at once; one takes the lock and trades, the other waits for it and then
    finds every stage complete (or, not waiting, gives up): the orders go out once."""
    waiting = [start_daily(_env(tmp_path, db_url, "120"), "2021-06-01") for _ in range(2)]
    outcomes = [w.wait() for w in waiting]
    assert [o.exitcode for o in outcomes] == [0, 0], outcomes
    stages = sorted(
        ",".join(sorted(set(o.summary["stages"].values()))) for o in outcomes if o.summary
    )
    assert stages == ["completed", "skipped"]
    store = Store.open(db_url)
    sent = _count(store, SIM_ORDERS)
    assert sent == 2 and _count(store, ORDERS) == sent  # QQQ and SPY, once each
    ids = store.select(select(SIM_ORDERS.c.client_order_id))["client_order_id"]
    assert ids.is_unique

    racing = [start_daily(_env(tmp_path, db_url, "0"), "2021-06-02") for _ in range(2)]
    results = [r.wait() for r in racing]
    codes = sorted(r.exitcode for r in results)
    busy = [r for r in results if r.exitcode == 2]
    assert codes in ([0, 0], [0, 2]), results
    for refused in busy:
        assert refused.error and "holds the run lock" in refused.error
    done = store.checkpoints("daily-rebalance", date(2021, 6, 2))
    assert {c.stage: c.status for c in done}["report"] == "completed"
    assert _count(store, SIM_ORDERS) == sent  # 06-02 holds: nothing new, nothing twice
    store.close()
