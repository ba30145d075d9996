"""Reruns repeat no side effect: a finished date changes nothing, ``--force`` keeps the
decision the day traded on, and a day whose orders all failed is not "completed".

Real data (``../shared/data/market``), SPY, QQQ, GLD, TLT: 2021-06-01 buys QQQ 38 and
SPY 40; 2021-06-02 fills them at the open and holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import MARKET
from tests.fakes.alpaca_trading_server import AlpacaTradingState, alpaca_trading_server
from tests.helpers import RULES_DAILY
from tests.runner import run_daily
from tiller.store.repo import ORDERS, RISK_DECISIONS, TARGETS, Store
from tiller.store.simbroker import ORDERS as SIM_ORDERS

KEY, SECRET = "PKRERUNTESTKEY000001", "reruntestsecret0000000000000000000000000"


def _env(tmp_path: Path, db_url: str, **more: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    return base | {
        "TILLER_HOME": str(tmp_path / "home"),
        "TILLER_DATABASE_URL": db_url,
        "TILLER_DATA_SOURCES": f"csv:{MARKET}",
        "TILLER_UNIVERSE": "SPY,QQQ,GLD,TLT",
        "TILLER_HISTORY_START": "2020-03-02",
        "TILLER_OPTIMIZE__SOLVER": "newton",
        "GX_ANALYTICS_ENABLED": "false",
        **RULES_DAILY,
        **more,
    }


def _count(store: Store, table) -> int:  # type: ignore[no-untyped-def]
    return int(store.select(select(func.count()).select_from(table)).iloc[0, 0])


@pytest.mark.slow
def test_a_rerun_of_a_finished_date_changes_nothing_and_sends_nothing(
    tmp_path: Path, db_url: str
) -> None:
    env = _env(tmp_path, db_url)
    for day in ("2021-06-01", "2021-06-02"):
        assert run_daily(env, day).exitcode == 0
    store = Store.open(db_url)
    sent, rows = _count(store, SIM_ORDERS), _count(store, ORDERS)
    decisions = store.select(select(RISK_DECISIONS)).drop(columns=["run_id"])
    # the day's fills moved the NAV the risk stage read: once, this recomputed risk,
    # optimize and orders and sent QQQ buy 13 and SPY buy 14
    again = run_daily(env, "2021-06-02")
    assert again.exitcode == 0 and again.summary is not None
    assert set(again.summary["stages"].values()) == {"skipped"}
    assert (_count(store, SIM_ORDERS), _count(store, ORDERS)) == (sent, rows) == (2, 2)
    after = store.select(select(RISK_DECISIONS)).drop(columns=["run_id"])
    assert after.equals(decisions)
    store.close()


@pytest.mark.slow
def test_force_recomputes_but_keeps_the_decision_the_day_traded_on(
    tmp_path: Path, db_url: str
) -> None:
    env = _env(tmp_path, db_url)
    assert run_daily(env, "2021-06-01").exitcode == 0
    store = Store.open(db_url)
    decision = store.select(select(RISK_DECISIONS)).drop(columns=["run_id"])
    targets = store.select(select(TARGETS.c.symbol, TARGETS.c.weight))
    forced = run_daily(env, "2021-06-01", "--force")
    assert forced.exitcode == 0 and forced.summary is not None
    stages = forced.summary["stages"]
    assert {s for s, v in stages.items() if v == "skipped"} == {"risk", "optimize", "orders"}
    assert stages["factors"] == stages["report"] == "completed"
    assert store.select(select(RISK_DECISIONS)).drop(columns=["run_id"]).equals(decision)
    assert store.select(select(TARGETS.c.symbol, TARGETS.c.weight)).equals(targets)
    assert _count(store, SIM_ORDERS) == 2  # no order the day's decision did not contain
    store.close()


@pytest.mark.slow
def test_a_day_whose_orders_all_failed_is_not_completed(tmp_path: Path, sqlite_url: str) -> None:
    """A 503 storm at the broker: every order fails; the run is recorded as failed (exit
    1), trading is paused automatically and a critical alert is recorded."""
    from tiller.store.repo import models

    state = AlpacaTradingState(api_key=KEY, secret_key=SECRET)
    with alpaca_trading_server(state) as fake:
        fake.fail_path("POST", "/v2/orders", 503, "<html>503 Service Unavailable</html>", times=99)
        env = _env(
            tmp_path,
            sqlite_url,
            TILLER_BROKER="alpaca",
            TILLER_ALPACA_URL=fake.url,
            ALPACA_API_KEY=KEY,
            ALPACA_SECRET_KEY=SECRET,
            TILLER_EXECUTION__RETRY_BACKOFF_SECONDS="0",
            TILLER_EXECUTION__POLL_TIMEOUT_SECONDS="0.2",
        )
        failed = run_daily(env, "2021-06-01")
    assert failed.exitcode == 1 and failed.summary is not None
    summary = failed.summary
    assert summary["status"] == "failed"
    assert "every one of the day's 2 order(s) failed at the broker" in summary["error"]
    assert summary["stages"]["report"] == "completed"  # the report still says what happened
    assert {o["status"] for o in summary["orders"]} == {"failed"}
    store = Store.open(sqlite_url)
    risk = store.load_risk_state("paper")
    assert risk is not None and risk["kill_switch"] and risk["manual_by"] == "system"
    log = models.AlertLog.__table__  # type: ignore[attr-defined]
    triggers = store.select(select(log.c.trigger))["trigger"].tolist()
    assert "order_failures" in triggers
    store.close()
