"""The optimize stage (SPEC stage 7): risk-parity targets over what signals and risk allow
(:func:`tiller.pipeline.decide.targets`, as the backtest computes them)."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tasks.portfolio import current_portfolio, returns_window
from tiller.calendars import portfolio_calendar
from tiller.domain import RiskLevel, Signal
from tiller.pipeline import decide
from tiller.portfolio.cadence import scheduled_on
from tiller.portfolio.optimize import OptimizationResult
from tiller.risk import RiskDecision
from tiller.store import Tx
from tiller.store import decisions as decision_store


def optimize_stage(
    ctx: RunContext, signals: Sequence[Signal], decision: RiskDecision
) -> StageOutcome:
    """Build and persist the target weights of ``as_of`` (``CASH`` included): new ones on
    a rebalance day (``backtest.cadence`` on the exchange calendar, the first run, or a
    day the risk level rises), the last ones kept (method ``"hold"``) on any other day."""
    settings, store = ctx.settings, ctx.store
    config = settings.optimize
    portfolio = current_portfolio(store, settings, ctx.as_of)
    returns = returns_window(store, settings, ctx.as_of, settings.symbols, config.lookback)
    locked = decide.holding_locks(ctx.as_of, portfolio.opened, config.min_holding_days)
    last_targets = decision_store.previous_targets(store, ctx.as_of)
    cadence = settings.backtest.cadence
    calendar = portfolio_calendar(settings.calendar_of(s) for s in settings.symbols)
    previous_level = decision_store.previous_level(store, ctx.as_of)  # None: the first run
    rebalance = decide.rebalances(
        scheduled_on(ctx.as_of, cadence, calendar, first=previous_level is None),
        decision.level,
        None if previous_level is None else RiskLevel(previous_level),
    )
    key = fingerprint(
        ctx.as_of,
        config.model_dump(),
        [(s.symbol, s.signal.value, s.confidence, s.long_eligible) for s in signals],
        decision.exposure_scale,
        decision.pair_caps,
        decision.allowed_symbols,
        portfolio.weights,
        returns.values.tolist(),
        *([sorted(locked)] if locked else []),
        *([] if rebalance else ["hold", sorted(last_targets.items())]),
    )

    def compute() -> OptimizationResult:
        if not rebalance:
            return decide.held_targets(
                last_targets,
                f"not a rebalance day ({cadence} cadence, risk level not risen): the last "
                "targets are kept; only exits and halvings risk forces are traded",
            )
        return decide.targets(
            signals,
            decision,
            portfolio.weights,
            portfolio.nav,
            returns,
            settings,
            day=ctx.as_of,
            opened=portfolio.opened,
        )

    def persist(tx: Tx, result: OptimizationResult) -> tuple[str, str]:
        decision_store.save_targets(
            tx,
            store,
            ctx.as_of,
            [
                {
                    "run_id": ctx.run_id,
                    "symbol": symbol,
                    "weight": weight,
                    "raw_weight": result.raw_weights.get(symbol),
                }
                for symbol, weight in result.weights.items()
            ],
            {
                "run_id": ctx.run_id,
                "method": result.method,
                "reason": result.reason,
                "turnover": result.turnover,
                "skipped": result.skipped,
            },
        )
        return "completed", f"target_weights?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, "optimize", key, compute, persist, recompute_on_skip=True)
