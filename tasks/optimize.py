"""The optimize stage: risk-parity targets over what signals and risk allow (SPEC stage 7)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection

from tasks.checkpoint import StageOutcome, fingerprint, frame_digest, run_stage
from tasks.context import RunContext
from tasks.risk import current_portfolio, daily_returns
from tiller.domain import Signal
from tiller.portfolio.optimize import OptimizationResult, optimize_weights
from tiller.portfolio.selection import investable
from tiller.risk import RiskDecision
from tiller.store.repo import OPTIMIZATIONS, TARGETS


def optimize_stage(
    ctx: RunContext, signals: Sequence[Signal], decision: RiskDecision
) -> StageOutcome:
    """Build and persist the target weights of ``as_of`` (``CASH`` included)."""
    settings = ctx.settings
    config = settings.optimize
    portfolio = current_portfolio(ctx)
    fixed = config.fixed_weights if config.method == "fixed" else None
    assets = investable(signals, decision, list(portfolio.weights), fixed)
    returns = daily_returns(ctx, assets, config.lookback) if assets else None
    max_weights = {s: settings.asset(s).max_weight for s in assets}
    key = fingerprint(
        ctx.as_of,
        config.model_dump(),
        assets,
        decision.exposure_scale,
        decision.pair_caps,
        portfolio.weights,
        fixed,
        frame_digest(returns),
    )

    def compute() -> OptimizationResult:
        import pandas as pd

        frame = returns if returns is not None else pd.DataFrame()
        return optimize_weights(
            frame.dropna(),
            portfolio.weights,
            portfolio.nav,
            max_weights,
            config,
            exposure=decision.exposure_scale,
            pair_caps=decision.pair_caps,
            fixed=fixed,
        )

    def persist(tx: Connection, result: OptimizationResult) -> tuple[str, str]:
        store = ctx.store
        store.replace_for_as_of(tx, TARGETS, ctx.as_of)
        store.replace_for_as_of(tx, OPTIMIZATIONS, ctx.as_of)
        store.insert(
            tx,
            TARGETS,
            [
                {
                    "as_of": ctx.as_of,
                    "run_id": ctx.run_id,
                    "symbol": symbol,
                    "weight": weight,
                    "raw_weight": result.raw_weights.get(symbol),
                }
                for symbol, weight in result.weights.items()
            ],
        )
        store.insert(
            tx,
            OPTIMIZATIONS,
            [
                {
                    "as_of": ctx.as_of,
                    "run_id": ctx.run_id,
                    "method": result.method,
                    "reason": result.reason,
                    "turnover": result.turnover,
                    "skipped": json.dumps(result.skipped),
                }
            ],
        )
        return "completed", f"target_weights?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, "optimize", key, compute, persist, recompute_on_skip=True)
