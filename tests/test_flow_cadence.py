"""The daily flow rebalances on the backtest's cadence (``backtest.cadence``), the same
rule the backtest applies (:func:`tiller.pipeline.decide.rebalances`): on a day off the
cadence the last targets are kept and nothing is traded unless risk forces it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import MARKET
from tests.helpers import cli_env
from tests.runner import run_daily
from tiller.domain import RiskLevel
from tiller.pipeline import decide
from tiller.portfolio.cadence import scheduled_on
from tiller.store.repo import OPTIMIZATIONS, ORDERS, TARGETS, Store


def test_the_calendar_decides_the_scheduled_days() -> None:
    # 2024-02-29 (Thu) is February's last session; 2024-03-01 (Fri) March's first
    assert scheduled_on(date(2024, 2, 29), "month_end", "XNYS", first=False)
    assert not scheduled_on(date(2024, 2, 28), "month_end", "XNYS", first=False)
    assert scheduled_on(date(2024, 3, 1), "monthly", "XNYS", first=False)
    assert not scheduled_on(date(2024, 3, 4), "monthly", "XNYS", first=False)
    # Monday 2024-03-04 starts a week; after Good Friday (2024-03-29) Monday 04-01 does too,
    # and Tuesday 2024-01-16 after Martin Luther King day (Monday 01-15, closed) does
    assert scheduled_on(date(2024, 3, 4), "weekly", "XNYS", first=False)
    assert scheduled_on(date(2024, 1, 16), "weekly", "XNYS", first=False)
    assert not scheduled_on(date(2024, 1, 17), "weekly", "XNYS", first=False)
    # the first run starts the first period whatever the day
    assert scheduled_on(date(2024, 3, 6), "monthly", "XNYS", first=True)
    assert scheduled_on(date(2024, 3, 6), "once", "XNYS", first=True)
    assert not scheduled_on(date(2024, 3, 7), "once", "XNYS", first=False)


def test_a_rising_level_rebalances_and_only_forced_trades_go_out_on_other_days() -> None:
    from tests.test_orders import _decision

    assert decide.rebalances(False, RiskLevel.L2, RiskLevel.L1)  # the level rose
    assert not decide.rebalances(False, RiskLevel.L1, RiskLevel.L2)  # it fell
    assert not decide.rebalances(False, RiskLevel.L1, None)
    assert decide.rebalances(True, RiskLevel.L0, RiskLevel.L0)
    calm = _decision()
    assert not decide.trades_today(False, calm)
    assert decide.trades_today(True, calm)
    assert decide.trades_today(False, _decision(forced_exits={"SPY": "stop"}))
    assert decide.trades_today(False, _decision(halve={"SPY": 0.5}))
    held = decide.held_targets({"SPY": 0.6, "TLT": 0.35, "CASH": 0.05}, "kept")
    # CASH = 1 - (0.6 + 0.35)
    assert held.weights == pytest.approx({"SPY": 0.6, "TLT": 0.35, "CASH": 0.05})
    assert held.method == "hold" and held.turnover == 0.0


@pytest.mark.slow
def test_the_daily_flow_keeps_its_targets_between_monthly_rebalances(
    tmp_path: Path, sqlite_url: str
) -> None:
    env = cli_env(
        tmp_path,
        market=MARKET,
        universe="SPY,QQQ,GLD,TLT",
        history_start="2020-03-02",
        db_url=sqlite_url,
        TILLER_BACKTEST__CADENCE="monthly",
    )
    # Thu 2021-05-27: the first run rebalances; Fri 05-28: off the cadence (its fills
    # land, nothing is planned); Tue 06-01: June's first session rebalances
    summaries = {}
    for day in ("2021-05-27", "2021-05-28", "2021-06-01"):
        outcome = run_daily(env, day)
        assert outcome.exitcode == 0, outcome.error
        summaries[day] = outcome.summary
    store = Store.open(sqlite_url)
    methods = dict(
        store.select(select(OPTIMIZATIONS.c.as_of, OPTIMIZATIONS.c.method)).itertuples(index=False)
    )
    assert methods[date(2021, 5, 28)] == "hold"
    assert methods[date(2021, 5, 27)] != "hold" and methods[date(2021, 6, 1)] != "hold"
    targets = store.select(select(TARGETS.c.as_of, TARGETS.c.symbol, TARGETS.c.weight))

    def on(day: date) -> dict[str, float]:
        rows = targets[targets["as_of"] == day]
        return dict(zip(rows["symbol"], rows["weight"], strict=True))

    assert on(date(2021, 5, 28)) == pytest.approx(on(date(2021, 5, 27)))  # kept
    orders = store.select(select(ORDERS.c.as_of))
    assert len(orders[orders["as_of"] == date(2021, 5, 27)]) > 0
    assert orders[orders["as_of"] == date(2021, 5, 28)].empty  # nothing planned off-cadence
    # the day's report says why no signal traded
    hold_day = summaries["2021-05-28"]
    assert hold_day is not None
    report = json.loads(Path(hold_day["reports"]["daily"]["json"]).read_text())
    reasons = [s["rejection_reason"] for s in report["signals"]["rejected"]]
    hold = [r for r in reasons if "not a rebalance day (monthly cadence" in r]
    assert hold and all(r in hold or "nothing to sell" in r for r in reasons)
    store.close()
