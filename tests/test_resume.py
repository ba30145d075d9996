"""A stage killed mid-way (the process dies inside its transaction) resumes on rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from flows.daily_rebalance import STAGES
from tiller.store.repo import BARS, DQ_REPORTS, RUNS, Store

AS_OF = "2024-03-08"


def _tiller(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiller.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("killed", ["ingest", "validate"])
def test_killed_stage_resumes_without_writing_twice(
    killed: str, tmp_path: Path, db_url: str, prefect_api: str
) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "TILLER_HOME": str(tmp_path / "home"),
        "TILLER_DATABASE_URL": db_url,
        "TILLER_HISTORY_START": "2023-06-01",
        "TILLER_FAULT_INJECT": f"{killed}:before_commit",
    }
    crashed = _tiller(env, "run", "daily", "--as-of", AS_OF, "--json")
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    store = Store.open(db_url)
    done = {c.stage: c.status for c in store.checkpoints("daily-rebalance", date(2024, 3, 8))}
    assert done == ({} if killed == "ingest" else {"ingest": "completed"})
    bars_after_crash = int(store.select(select(func.count()).select_from(BARS)).iloc[0, 0])
    assert (bars_after_crash == 0) == (killed == "ingest")

    del env["TILLER_FAULT_INJECT"]
    rerun = _tiller(env, "run", "daily", "--as-of", AS_OF, "--json")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    expected = dict.fromkeys(STAGES, "completed")
    if killed == "validate":
        expected["ingest"] = "skipped"
    assert summary["status"] == "completed" and summary["stages"] == expected
    assert int(store.select(select(func.count()).select_from(DQ_REPORTS)).iloc[0, 0]) == 1
    bars = store.load_bars(["GLD", "SPY", "QQQ", "BTC-USD", "VIX"])
    assert not bars.duplicated(["symbol", "date"]).any()
    if killed == "validate":
        assert len(bars) == bars_after_crash
    statuses = sorted(store.select(select(RUNS.c.status))["status"])
    assert statuses == ["completed", "interrupted"]
