"""The alpha stages: factors, regime and signals (SPEC stages 3-5).

Each task loads its inputs, calls the pure functions in ``tiller.strategy``
and persists the result with its checkpoint.  A skipped stage recomputes its
value in memory (pure and deterministic) so the stages after it can use it.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from tasks.checkpoint import StageOutcome, fingerprint, frame_digest, run_stage
from tasks.context import RunContext
from tiller.domain import Signal
from tiller.store import Tx
from tiller.store import decisions as decision_store
from tiller.strategy.factors import FactorSnapshot, factor_panel, factors_at, min_history
from tiller.strategy.regime import RegimeReading, regime_at
from tiller.strategy.signals import generate_signals


def load_history(ctx: RunContext) -> pd.DataFrame:
    """Universe bars up to ``as_of``: enough sessions for the longest factor window."""
    longest = max(min_history(ctx.settings.strategy.factors).values())
    start = ctx.as_of - timedelta(days=int(longest * 7 / 5) + 30)  # sessions -> calendar days
    return ctx.store.load_bars(ctx.settings.symbols, start, ctx.as_of)


def factors_stage(ctx: RunContext) -> StageOutcome:
    """Compute and persist the factor snapshot of ``as_of`` (long format) and its gaps."""
    settings = ctx.settings
    bars = load_history(ctx)
    key = fingerprint(
        ctx.as_of,
        settings.strategy.factors.model_dump(),
        frame_digest(bars.drop(columns="source")),
    )

    def compute() -> FactorSnapshot:
        calendars = {s: settings.calendar_of(s) for s in settings.symbols}
        panel = factor_panel(bars, settings.strategy.factors, calendars)
        return factors_at(panel, ctx.as_of)

    def persist(tx: Tx, snapshot: FactorSnapshot) -> tuple[str, str]:
        decision_store.save_factors(
            tx,
            ctx.store,
            ctx.as_of,
            [
                {
                    "run_id": ctx.run_id,
                    "symbol": r.symbol,
                    "factor": r.factor,
                    "value": float(r.value),
                }
                for r in snapshot.values.itertuples(index=False)
            ],
            [
                {"run_id": ctx.run_id, "symbol": r.symbol, "factor": r.factor, "reason": r.reason}
                for r in snapshot.missing.itertuples(index=False)
            ],
        )
        return "completed", f"factor_values?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, "factors", key, compute, persist, recompute_on_skip=True)


def regime_stage(ctx: RunContext) -> StageOutcome:
    """Classify the regime of ``as_of`` from the last VIX close on or before it."""
    settings = ctx.settings
    vix = ctx.store.load_bars(
        [settings.volatility_index], ctx.as_of - timedelta(days=14), ctx.as_of
    )
    key = fingerprint(ctx.as_of, settings.strategy.regime.model_dump(), vix["close"].tolist())

    def compute() -> RegimeReading:
        return regime_at(vix[["date", "close"]], ctx.as_of, settings.strategy.regime)

    def persist(tx: Tx, reading: RegimeReading) -> tuple[str, str]:
        decision_store.save_regime(
            tx,
            ctx.store,
            ctx.as_of,
            {
                "run_id": ctx.run_id,
                "regime": reading.regime.value,
                "vix": reading.vix,
                "vix_date": reading.vix_date,
                "reason": reading.reason,
            },
        )
        return "completed", f"regimes?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, "regime", key, compute, persist, recompute_on_skip=True)


def signals_stage(ctx: RunContext, snapshot: FactorSnapshot, regime: RegimeReading) -> StageOutcome:
    """Generate and persist one signal per asset with its confidence and reason."""
    config = ctx.settings.strategy.signals
    key = fingerprint(
        ctx.as_of,
        config.model_dump(),
        frame_digest(snapshot.values),
        regime.regime.value,
        regime.vix,
    )

    def compute() -> list[Signal]:
        return generate_signals(snapshot, regime, config)

    def persist(tx: Tx, signals: list[Signal]) -> tuple[str, str]:
        decision_store.save_signals(
            tx,
            ctx.store,
            ctx.as_of,
            [
                {
                    "run_id": ctx.run_id,
                    "symbol": s.symbol,
                    "signal": s.signal.value,
                    "confidence": s.confidence,
                    "long_eligible": s.long_eligible,
                    "reason": s.reason,
                }
                for s in signals
            ],
        )
        return "completed", f"signals?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, "signals", key, compute, persist, recompute_on_skip=True)
