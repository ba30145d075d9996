"""The weekly review's inputs and its one checkpointed stage (``report``)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tasks.report import RenderedReport, notify, publish, trade_pnls, write_report
from tiller import calendars
from tiller.backtest.service import stress_rows
from tiller.reporting.render import render_html
from tiller.reporting.weekly import WeeklyReportInputs, build_weekly_report
from tiller.store.repo import (
    NAV_SNAPSHOTS,
    ORDERS,
    POSITION_SNAPSHOTS,
    RISK_DECISIONS,
    RUNS,
    TARGETS,
    Store,
)

DAILY = "daily-rebalance"


def weekly_inputs(store: Store, settings: Any, as_of: date) -> WeeklyReportInputs:
    """The week ending ``as_of`` (Monday..as_of) and the whole paper record before it."""
    week_start = as_of - timedelta(days=as_of.weekday())
    navs = store.select(
        select(NAV_SNAPSHOTS.c.as_of, NAV_SNAPSHOTS.c.nav)
        .where(NAV_SNAPSHOTS.c.as_of <= as_of)
        .order_by(NAV_SNAPSHOTS.c.as_of)
    )
    nav_history = pd.Series(navs["nav"].astype(float).values, index=pd.to_datetime(navs["as_of"]))
    latest = store.select(
        select(func.max(POSITION_SNAPSHOTS.c.as_of)).where(POSITION_SNAPSHOTS.c.as_of <= as_of)
    ).iloc[0, 0]
    weights: dict[str, float] = {}
    if latest is not None:
        held = store.select(
            select(POSITION_SNAPSHOTS.c.symbol, POSITION_SNAPSHOTS.c.weight).where(
                POSITION_SNAPSHOTS.c.as_of == latest
            )
        )
        weights = {str(r.symbol): float(r.weight) for r in held.itertuples()}
    last_target = store.select(select(func.max(TARGETS.c.as_of)).where(TARGETS.c.as_of <= as_of))
    targets: dict[str, float] = {}
    if last_target.iloc[0, 0] is not None:
        rows = store.select(
            select(TARGETS.c.symbol, TARGETS.c.weight).where(
                TARGETS.c.as_of == last_target.iloc[0, 0]
            )
        )
        targets = {str(r.symbol): float(r.weight) for r in rows.itertuples() if r.symbol != "CASH"}
    levels = store.select(
        select(RISK_DECISIONS.c.as_of, RISK_DECISIONS.c.level)
        .where(RISK_DECISIONS.c.as_of <= as_of)
        .order_by(RISK_DECISIONS.c.as_of)
    )
    risk_history = pd.Series(
        levels["level"].astype(int).values, index=pd.to_datetime(levels["as_of"])
    )
    from tasks.risk import returns_window  # the same returns the risk stage monitors

    returns = returns_window(
        store, settings, as_of, settings.symbols, settings.risk.correlation_window
    )
    week_trades = store.select(
        select(func.count())
        .select_from(ORDERS)
        .where(ORDERS.c.as_of >= week_start, ORDERS.c.as_of <= as_of)
    )
    sent = store.select(select(ORDERS.c.status).where(ORDERS.c.status != "planned"))
    fill_rate = float((sent["status"] == "filled").mean()) if len(sent) else None
    runs = store.select(
        select(RUNS.c.as_of, RUNS.c.status).where(RUNS.c.flow == DAILY, RUNS.c.as_of <= as_of)
    )
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
        all_trade_pnls=trade_pnls(store, date.min, as_of),
        week_trades_count=int(week_trades.iloc[0, 0]),
        weights=weights,
        targets=targets,
        risk_history=risk_history,
        asset_returns=returns,
        stress_results=stress_rows(store),
        deviation=_deviation(store, settings, as_of),
        uptime=uptime,
        fill_rate=fill_rate,
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
    """Build, render, save, register, publish and send the weekly review of ``as_of``."""
    inputs = weekly_inputs(ctx.store, ctx.settings, ctx.as_of)
    key = fingerprint(ctx.as_of, str(inputs.nav_history.to_dict()), inputs.week_trades_count)

    def compute() -> RenderedReport:
        built = build_weekly_report(inputs)
        return RenderedReport("weekly", ctx.as_of, built, render_html(built, "weekly"))

    paths: dict[str, Any] = {}

    def persist(tx: Connection, rendered: RenderedReport) -> tuple[str, str]:
        _, html = write_report(ctx.settings.home_dir, ctx.store, tx, rendered, ctx.run_id)
        paths["html"] = html
        return "completed", str(html)

    outcome = run_stage(ctx, "report", key, compute, persist)
    if outcome.status == "completed" and "html" in paths:
        publish(outcome.value, paths["html"])
        notify(ctx.settings, ctx.store, outcome.value, paths["html"])
    return outcome
