"""The weekly review's inputs and its one checkpointed stage (``report``)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd

from tasks.checkpoint import StageOutcome, fingerprint
from tasks.context import RunContext
from tasks.report import PaperTrading, run_report_stage, trade_pnls
from tiller import calendars
from tiller.backtest.gate import GateRecord
from tiller.backtest.service import stress_rows
from tiller.reporting.weekly import WeeklyReportInputs, build_weekly_report
from tiller.store import reports as db
from tiller.store.repo import Store

DAILY = "daily-rebalance"


def weekly_inputs(store: Store, settings: Any, as_of: date) -> WeeklyReportInputs:
    """The week ending ``as_of`` (Monday..as_of) and the whole paper record before it."""
    week_start = as_of - timedelta(days=as_of.weekday())
    navs = db.nav_history(store, as_of)
    nav_history = pd.Series(navs["nav"].astype(float).values, index=pd.to_datetime(navs["as_of"]))
    latest = db.latest_positions_date(store, as_of)
    weights: dict[str, float] = {}
    if latest is not None:
        held = db.positions_on(store, latest)
        weights = {str(r.symbol): float(r.weight) for r in held.itertuples()}
    last_target = db.latest_targets_date(store, as_of)
    targets: dict[str, float] = {}
    if last_target is not None:
        rows = db.targets_on(store, last_target)
        targets = {str(r.symbol): float(r.weight) for r in rows.itertuples() if r.symbol != "CASH"}
    levels = db.risk_decisions(store, as_of)
    risk_history = pd.Series(
        levels["level"].astype(int).values, index=pd.to_datetime(levels["as_of"])
    )
    # the returns the risk stage monitors, as a frame (returns_window wraps the same frame)
    from tasks.portfolio import returns_frame

    returns = returns_frame(
        store, settings, as_of, settings.symbols, settings.risk.correlation_window
    )
    week_trades = db.order_count(store, week_start, as_of)
    sent = db.sent_order_statuses(store)
    fill_rate = float((sent["status"] == "filled").mean()) if len(sent) else None
    all_pnls = trade_pnls(store, date.min, as_of)
    trading = PaperTrading.load(store, as_of)
    stress = stress_rows(store)
    runs = db.flow_runs(store, DAILY, as_of)
    uptime = None
    if len(runs):
        expected = calendars.sessions("XNYS", min(runs["as_of"]), as_of)
        done = set(runs.loc[runs["status"] == "completed", "as_of"])
        uptime = len(done) / len(expected) if len(expected) else None
    return WeeklyReportInputs(
        week_start=week_start,
        week_end=as_of,
        nav_history=nav_history,
        week_trade_pnls=trade_pnls(store, week_start, as_of),
        all_trade_pnls=all_pnls,
        week_trades_count=week_trades,
        weights=weights,
        targets=targets,
        risk_history=risk_history,
        asset_returns=returns,
        stress_results=stress,
        deviation=_deviation(store, settings, as_of),
        uptime=uptime,
        fill_rate=fill_rate,
        performance=_paper_record(settings, nav_history, all_pnls, risk_history, trading),
        trading=trading.monthly(nav_history),
        gate_config=settings.gate,
        stress_scenarios=tuple(s.name for s in settings.stress.scenarios),
    )


def _paper_record(
    settings: Any,
    nav_history: pd.Series,
    pnls: tuple[float, ...],
    risk_history: pd.Series,
    trading: PaperTrading,
) -> GateRecord:
    """The paper book for the performance gate: its NAV, the notional its fills traded
    per session, their commissions and its closed trades' P&L."""
    return GateRecord(
        label="paper",
        nav=nav_history,
        initial_capital=float(settings.optimize.initial_capital),
        traded=trading.traded,
        costs=float(trading.costs.sum()),
        trade_pnls=pnls,
        levels=risk_history,
    )


def _deviation(store: Store, settings: Any, as_of: date) -> dict[str, Any] | None:
    """Paper vs a backtest over the same sessions; None when there is nothing to compare."""
    from tiller.backtest.engine import BacktestError
    from tiller.backtest.service import paper_deviation

    try:
        return paper_deviation(store, settings, as_of)
    except BacktestError:
        return None


def weekly_report_stage(ctx: RunContext) -> StageOutcome:
    """Build, render, save, register and send the weekly review of ``as_of`` (the flow
    publishes it as Prefect artifacts: :func:`flows.artifacts.publish_run`)."""
    inputs = weekly_inputs(ctx.store, ctx.settings, ctx.as_of)
    key = fingerprint(ctx.as_of, str(inputs.nav_history.to_dict()), inputs.week_trades_count)
    return run_report_stage(ctx, "weekly", key, lambda: build_weekly_report(inputs))
