"""`tiller status`: one screen (and ``--json``) on the last runs, NAV and P&L, risk, kill
switch, open orders, data freshness and the next scheduled runs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MARKET
from tests.helpers import cli_env, run_cli
from tiller.calendars import latest_completed_session
from tiller.store.repo import Store
from tiller.store.status import latest_navs

UNIVERSE = ["SPY", "QQQ", "GLD", "TLT"]


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return cli_env(
        tmp_path, market=MARKET, universe=",".join(UNIVERSE), history_start="2022-06-01", **more
    )


_cli = run_cli


def _status(env: dict[str, str]) -> dict[str, Any]:
    done = _cli(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def test_status_after_real_daily_runs_human_and_json(tmp_path: Path) -> None:
    env = _env(tmp_path)
    runs = []
    for day in ("2024-03-07", "2024-03-08"):
        done = _cli(env, "run", "daily", "--as-of", day, "--json")
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    store = Store.open(env["TILLER_DATABASE_URL"], migrate=False)
    try:
        navs = latest_navs(store, "paper", 2)
    finally:
        store.close()
    assert [n["as_of"] for n in navs] == [date(2024, 3, 8), date(2024, 3, 7)]

    before = latest_completed_session()
    status = _status(env)
    after = latest_completed_session()  # the status may straddle a close
    daily = status["runs"]["daily-rebalance"]
    assert daily["as_of"] == "2024-03-08" and daily["status"] == "completed"
    assert daily["error"] is None and daily["finished_at"] >= daily["started_at"]
    assert status["runs"]["weekly-review"] is None  # listed, never run

    nav = status["nav"]
    assert nav["as_of"] == "2024-03-08" and nav["previous_as_of"] == "2024-03-07"
    assert nav["nav"] == pytest.approx(navs[0]["nav"]) == pytest.approx(runs[-1]["nav"])
    assert nav["day_pnl"] == pytest.approx(navs[0]["nav"] - navs[1]["nav"], abs=0.005)
    assert nav["since_start_pnl"] == pytest.approx(navs[0]["nav"] - 100_000.0, abs=0.005)
    assert nav["initial_capital"] == 100_000.0

    risk = status["risk"]
    assert risk["level"] == runs[-1]["risk_level"] and risk["as_of"] == "2024-03-08"
    assert risk["kill_switch"] is False and 0.0 <= risk["drawdown"] < 1.0

    # the paper broker fills at the next session's open: the last day's orders are open
    sent = {o["client_order_id"] for o in runs[-1]["orders"] if o["status"] == "accepted"}
    assert {o["client_order_id"] for o in status["open_orders"]} == sent

    data = {row["symbol"]: row for row in status["data"]}
    assert list(data) == [*UNIVERSE, "VIX"]
    for row in data.values():
        assert row["last_bar"] == "2024-03-08" and row["calendar"] == "XNYS"
        assert row["last_session"] in (before.isoformat(), after.isoformat())
        assert row["fresh"] is False and row["behind"] > 0

    assert status["schedule"] == {
        "configured": False,
        "api_url": None,
        "deployments": [],
        "error": None,
    }

    # the kill switch shows on the screen with its reason
    assert _cli(env, "risk", "kill-switch", "on", "--reason", "status test").returncode == 0
    screen = _cli(env, "status")
    assert screen.returncode == 0, screen.stderr
    text = screen.stdout
    assert "\x1b[" not in text  # plain text when stdout is not a terminal
    assert "daily-rebalance  2024-03-08  completed" in text
    assert "weekly-review    never run" in text
    assert f"NAV      ${nav['nav']:,.2f} on 2024-03-08" in text
    assert "P&L      day " in text and "since start " in text
    assert f"risk     {risk['level']}  drawdown" in text
    assert "kill     ON (" in text and "status test" in text
    orders = f"orders   {len(sent)} open" if sent else "orders   none open"
    assert orders in text
    for symbol in [*UNIVERSE, "VIX"]:
        assert f"  {symbol:<9} 2024-03-08  " in text
    assert "no Prefect server configured (PREFECT_API_URL is not set)" in text
    assert len(text.splitlines()) <= 40  # one screen


def test_status_of_an_empty_store_and_an_unreachable_prefect_server(tmp_path: Path) -> None:
    env = _env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    status = _status(env)
    assert status["runs"] == {"daily-rebalance": None, "weekly-review": None}
    assert status["nav"] is None and status["open_orders"] == []
    assert status["risk"]["level"] == "L0" and status["risk"]["kill_switch"] is False
    assert all(row["last_bar"] is None and row["behind"] is None for row in status["data"])
    schedule = status["schedule"]
    assert schedule["configured"] is True and schedule["api_url"] == "http://127.0.0.1:9/api"
    assert schedule["deployments"] == [] and "ConnectError" in schedule["error"]

    screen = _cli(env, "status")
    assert screen.returncode == 0, screen.stderr
    assert "daily-rebalance  never run" in screen.stdout
    assert "no NAV snapshot yet" in screen.stdout
    assert "orders   none open" in screen.stdout
    assert "  SPY       -           no bars stored" in screen.stdout
    assert "Prefect server http://127.0.0.1:9/api: ConnectError" in screen.stdout


@pytest.mark.slow
def test_status_lists_the_deployments_next_scheduled_runs(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.states import Scheduled

    from flows.serve import DAILY_CRON, TIMEZONE
    from tiller.status import _render_schedule, next_scheduled_runs

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("status-test-flow")
        deployment = client.create_deployment(
            flow_id,
            "status-test",
            schedules=[
                DeploymentScheduleCreate(
                    schedule=CronSchedule(cron=DAILY_CRON, timezone=TIMEZONE), active=True
                )
            ],
        )
        for when in (first + timedelta(days=1), first):
            client.create_flow_run_from_deployment(deployment, state=Scheduled(scheduled_time=when))
    schedule = next_scheduled_runs()
    assert schedule["configured"] is True and schedule["error"] is None
    found = {d["deployment"]: d for d in schedule["deployments"]}
    mine = found["status-test-flow/status-test"]
    assert mine["schedules"] == [f"cron {DAILY_CRON} {TIMEZONE}"]
    assert [datetime.fromisoformat(t) for t in mine["next_runs"][:2]] == [
        first,
        first + timedelta(days=1),
    ]
    screen = "\n".join(_render_schedule(schedule))
    assert f"next runs on {prefect_api}" in screen
    assert first.strftime("%Y-%m-%d %H:%M UTC") in screen
