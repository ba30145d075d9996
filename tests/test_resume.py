"""A stage killed mid-way (the process dies inside its transaction) resumes on rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from flows.daily_rebalance import STAGES
from tests.helpers import run_cli
from tiller.store.repo import BARS, DQ_REPORTS, RUNS, Store

AS_OF = "2024-03-08"


_tiller = run_cli


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
    # ingest runs again until the day's validation has passed (nothing new to fetch here)
    assert summary["status"] == "completed"
    assert summary["stages"] == dict.fromkeys(STAGES, "completed")
    assert int(store.select(select(func.count()).select_from(DQ_REPORTS)).iloc[0, 0]) == 1
    bars = store.load_bars(["GLD", "SPY", "QQQ", "BTC-USD", "VIX"])
    assert not bars.duplicated(["symbol", "date"]).any()
    if killed == "validate":
        assert len(bars) == bars_after_crash
    statuses = sorted(store.select(select(RUNS.c.status))["status"])
    assert statuses == ["completed", "interrupted"]
    # Prefect no longer shows the killed run as running
    crashed = store.select(
        select(RUNS.c.prefect_flow_run_id).where(RUNS.c.status == "interrupted")
    ).iloc[0, 0]
    assert _flow_run_state(prefect_api, crashed) == "CRASHED"


def _flow_run_state(api: str, flow_run_id: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{api.rstrip('/')}/flow_runs/{flow_run_id}", timeout=30) as r:
        return str(json.loads(r.read())["state_type"])


@pytest.mark.slow
def test_a_killed_run_leaves_no_temporary_prefect_server_behind(tmp_path: Path) -> None:
    """``--prefect`` without PREFECT_API_URL: Tiller's temporary server dies with the run
    (the kernel signals it), and it never holds the caller's stdout: the pipe closes."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))} | {
        "TILLER_HOME": str(home),
        "TILLER_DATABASE_URL": f"sqlite:///{tmp_path / 'tiller.db'}",
        "TILLER_HISTORY_START": "2023-06-01",
        "TILLER_FAULT_INJECT": "ingest:before_commit",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tiller.cli", "run", "daily", "--as-of", AS_OF, "--prefect"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _out, err = process.communicate(timeout=240)  # returns: nothing else holds the pipes
    assert process.returncode == 137, err[-2000:]
    assert "temporary Prefect server" in err
    server = int((home / "prefect" / "server.pid").read_text())
    for _ in range(100):
        try:
            os.kill(server, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the temporary Prefect server {server} outlived the killed run")
