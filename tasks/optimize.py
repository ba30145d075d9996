"""The optimize stage: risk-parity targets over what signals and risk allow (SPEC stage 7)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection

from tasks.checkpoint import StageOutcome, fingerprint, frame_digest, run_stage
from tasks.context import RunContext
from tasks.risk import current_portfolio, daily_returns
from tiller.domain import Signal, SignalType
from tiller.portfolio.optimize import OptimizationResult, optimize_weights
from tiller.risk import RiskDecision
from tiller.store.repo import OPTIMIZATIONS, TARGETS

SELLS = (SignalType.SELL, SignalType.STRONG_SELL)


def investable(signals: Sequence[Signal], decision: RiskDecision, held: Sequence[str]) -> list[str]:
    """Assets the optimiser may weight: long-eligible, not a sell signal, and allowed by risk
    (a buy must pass :meth:`RiskDecision.may_buy`; a held asset may stay unless forced out)."""
    chosen = []
    for signal in signals:
        if not signal.long_eligible or signal.signal in SELLS:
            continue
        if signal.symbol in held:
            if signal.symbol in decision.allowed_symbols and signal.symbol not in (
                decision.forced_exits
            ):
                chosen.append(signal.symbol)
        elif signal.signal.is_buy and decision.may_buy(signal.symbol, signal.confidence)[0]:
            chosen.append(signal.symbol)
    return sorted(chosen)


def optimize_stage(
    ctx: RunContext, signals: Sequence[Signal], decision: RiskDecision
) -> StageOutcome:
    """Build and persist the target weights of ``as_of`` (``CASH`` included)."""
    settings = ctx.settings
    config = settings.optimize
    portfolio = current_portfolio(ctx)
    assets = investable(signals, decision, list(portfolio.weights))
    returns = daily_returns(ctx, assets, config.lookback) if assets else None
    max_weights = {s: settings.asset(s).max_weight for s in assets}
    key = fingerprint(
        ctx.as_of,
        config.model_dump(),
        assets,
        decision.exposure_scale,
        decision.pair_caps,
        portfolio.weights,
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


optimize = task(name="optimize", cache_policy=NO_CACHE)(optimize_stage)
