"""The risk stage: assess the hierarchical risk level, persist the decision and the state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Connection, select

from tasks.checkpoint import StageOutcome, fingerprint, frame_digest, run_stage
from tasks.context import RunContext
from tiller.domain import Signal
from tiller.portfolio.returns import price_matrix, session_returns
from tiller.risk import PositionInfo, RiskDecision, RiskInputs, RiskState, assess_risk
from tiller.risk.reentry import target_portfolio_returns
from tiller.settings import Settings
from tiller.store.repo import (
    CHECKPOINTS,
    DQ_FINDINGS,
    DQ_REPORTS,
    NAV_SNAPSHOTS,
    RISK_DECISIONS,
    RISK_EVENTS,
    TARGETS,
    Store,
    utcnow,
)

PORTFOLIO = "paper"


@dataclass(frozen=True)
class PortfolioView:
    """The book valued at the ``as_of`` closes, as the risk and optimize stages see it.

    The book is the one the orders stage persisted last; fills the broker makes
    today (yesterday's orders at today's open) are applied by today's orders stage.
    """

    nav: float
    previous_nav: float | None
    weights: dict[str, float]
    positions: dict[str, PositionInfo]


def current_portfolio(ctx: RunContext) -> PortfolioView:
    """NAV, weights and positions of the paper book at the ``as_of`` closes (USD)."""
    from tasks.execute import PORTFOLIO, last_prices, load_book
    from tiller.execution.accounting import snapshot

    book = load_book(ctx.store, ctx.settings.optimize.initial_capital)
    prices = last_prices(ctx.store, sorted(book.positions), ctx.as_of)
    snap = snapshot(book, prices, ctx.as_of)
    previous = ctx.store.select(
        select(NAV_SNAPSHOTS.c.nav)
        .where(NAV_SNAPSHOTS.c.portfolio == PORTFOLIO, NAV_SNAPSHOTS.c.as_of < ctx.as_of)
        .order_by(NAV_SNAPSHOTS.c.as_of.desc())
        .limit(1)
    )
    weights = {s: m.value / snap.nav for s, m in snap.positions.items()} if snap.nav else {}
    positions = {
        s: PositionInfo(qty=m.qty, entry_price=m.avg_cost, price=m.price, weight=weights[s])
        for s, m in snap.positions.items()
    }
    return PortfolioView(
        snap.nav, None if previous.empty else float(previous.iloc[0, 0]), weights, positions
    )


def daily_returns(ctx: RunContext, symbols: Sequence[str], sessions: int) -> pd.DataFrame:
    """Daily simple returns (rows: dates, columns: symbols) of the last ``sessions`` sessions."""
    return returns_window(ctx.store, ctx.settings, ctx.as_of, symbols, sessions)


def returns_window(
    store: Store, settings: Settings, as_of: date, symbols: Sequence[str], sessions: int
) -> pd.DataFrame:
    """Daily simple returns of ``symbols`` over the last ``sessions`` exchange sessions."""
    start = as_of - timedelta(days=int(sessions * 7 / 5) + 20)
    bars = store.load_bars(list(symbols), start, as_of)
    if bars.empty:
        return pd.DataFrame()
    calendars = {s: settings.calendar_of(s) for s in symbols}
    return session_returns(price_matrix(bars), calendars).tail(sessions)


def _previous_targets(ctx: RunContext) -> dict[str, float]:
    query = select(TARGETS.c.as_of, TARGETS.c.symbol, TARGETS.c.weight).where(
        TARGETS.c.as_of < ctx.as_of
    )
    frame = ctx.store.select(query)
    if frame.empty:
        return {}
    last = frame[frame["as_of"] == frame["as_of"].max()]
    return {r.symbol: float(r.weight) for r in last.itertuples() if r.symbol != "CASH"}


def _stale_today(ctx: RunContext) -> bool:
    query = (
        select(DQ_FINDINGS.c.id)
        .join(DQ_REPORTS, DQ_REPORTS.c.id == DQ_FINDINGS.c.report_id)
        .where(DQ_REPORTS.c.as_of == ctx.as_of, DQ_FINDINGS.c.check == "stale")
    )
    return not ctx.store.select(query).empty


def _errors_today(ctx: RunContext) -> int:
    query = select(CHECKPOINTS.c.id).where(
        CHECKPOINTS.c.as_of == ctx.as_of, CHECKPOINTS.c.status == "failed"
    )
    return len(ctx.store.select(query))


def risk_stage(ctx: RunContext, signals: Sequence[Signal]) -> StageOutcome:
    """Assess risk for ``as_of`` from the persisted state; persist decision, events and state."""
    settings = ctx.settings
    config = settings.risk
    portfolio = current_portfolio(ctx)
    returns = daily_returns(ctx, settings.symbols, config.correlation_window)
    targets = _previous_targets(ctx)
    portfolio_returns = target_portfolio_returns(returns, targets)
    stored = ctx.store.load_risk_state(PORTFOLIO)
    state = RiskState.from_dict(stored) if stored else RiskState()
    inputs = RiskInputs(
        as_of=ctx.as_of,
        nav=portfolio.nav,
        previous_nav=portfolio.previous_nav,
        returns=returns,
        portfolio_returns=portfolio_returns,
        positions=portfolio.positions,
        signals=tuple(signals),
        asset_classes={s: settings.asset(s).asset_class for s in settings.symbols},
        stale_data=_stale_today(ctx),
        broker_reachable=True,
        errors_today=_errors_today(ctx),
    )
    key = fingerprint(
        ctx.as_of,
        config.model_dump(),
        [(s.symbol, s.signal.value, s.confidence) for s in signals],
        frame_digest(returns),
        portfolio.nav,
    )

    def compute() -> RiskDecision:
        return assess_risk(inputs, state, config)

    def persist(tx: Connection, decision: RiskDecision) -> tuple[str, str]:
        store = ctx.store
        store.replace_for_as_of(tx, RISK_DECISIONS, ctx.as_of)
        store.replace_for_as_of(tx, RISK_EVENTS, ctx.as_of)
        store.insert(
            tx,
            RISK_DECISIONS,
            [
                {
                    "as_of": ctx.as_of,
                    "portfolio": PORTFOLIO,
                    "run_id": ctx.run_id,
                    "level": int(decision.level),
                    "drawdown": decision.drawdown,
                    "nav": portfolio.nav,
                    "peak_nav": decision.peak_nav,
                    "distance_to_next": decision.distance_to_next,
                    "exposure_scale": decision.exposure_scale,
                    "buy_allowed": decision.buy_allowed,
                    "kill_switch": decision.kill_switch,
                    "halted": decision.halted,
                    "actions": json.dumps(decision.actions),
                }
            ],
        )
        now = utcnow()
        store.insert(
            tx,
            RISK_EVENTS,
            [
                {
                    "as_of": ctx.as_of,
                    "portfolio": PORTFOLIO,
                    "run_id": ctx.run_id,
                    "kind": e.kind,
                    "symbol": e.symbol,
                    "reason": e.reason,
                    "created_at": now,
                }
                for e in decision.decisions
            ],
        )
        store.save_risk_state(tx, PORTFOLIO, ctx.as_of, decision.state.to_dict())
        return "completed", f"risk_decisions?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, "risk", key, compute, persist, recompute_on_skip=True)
