"""The risk stage: assess the hierarchical risk level (:func:`tiller.pipeline.decide.assess`,
as the backtest does), persist the decision, its events and the state."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tasks.portfolio import PORTFOLIO, current_portfolio, returns_window
from tiller.domain import Signal
from tiller.pipeline import decide
from tiller.risk import RiskDecision, RiskState
from tiller.store import Tx
from tiller.store import decisions as decision_store
from tiller.store import quality as quality_store


def risk_stage(ctx: RunContext, signals: Sequence[Signal]) -> StageOutcome:
    """Assess risk for ``as_of`` from the persisted state; persist decision, events and state."""
    settings, store = ctx.settings, ctx.store
    config = settings.risk
    portfolio = current_portfolio(store, settings, ctx.as_of)
    returns = returns_window(
        store, settings, ctx.as_of, settings.symbols, config.correlation_window
    )
    targets = decision_store.previous_targets(store, ctx.as_of)
    stored = store.load_risk_state(PORTFOLIO)
    state = RiskState.from_dict(stored) if stored else RiskState()
    stale = quality_store.stale_on(store, ctx.as_of)
    errors = decision_store.failed_stages(store, ctx.as_of)
    key = fingerprint(
        ctx.as_of,
        config.model_dump(),
        [(s.symbol, s.signal.value, s.confidence) for s in signals],
        returns.values.tolist(),
        portfolio.nav,
    )

    def compute() -> RiskDecision:
        return decide.assess(
            ctx.as_of,
            portfolio.nav,
            portfolio.previous_nav,
            portfolio.positions,
            returns,
            targets,
            signals,
            state,
            settings,
            stale_data=stale,
            broker_reachable=True,
            errors_today=errors,
        )

    def persist(tx: Tx, decision: RiskDecision) -> tuple[str, str]:
        decision_store.save_risk_decision(
            tx,
            store,
            ctx.as_of,
            PORTFOLIO,
            {
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
            },
            [
                {"run_id": ctx.run_id, "kind": e.kind, "symbol": e.symbol, "reason": e.reason}
                for e in decision.decisions
            ],
        )
        store.save_risk_state(tx, PORTFOLIO, ctx.as_of, decision.state.to_dict())
        return "completed", f"risk_decisions?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, "risk", key, compute, persist, recompute_on_skip=True)
