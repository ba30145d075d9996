"""The day's decision from the pure stages, composed once for the flow and the backtest.

The daily flow's tasks and the backtest call these functions in the same order with the
same inputs (read from the store or sliced from the whole history):

1. :func:`assess` -- the risk stage: :func:`tiller.risk.assess_risk` on the book valued at
   the day's closes, the recent returns (the correlation monitor), the returns of the
   last targets (re-entry calm) and the day's signals;
2. :func:`rebalances` -- whether today recomputes the targets: a day of the cadence
   (``backtest.cadence``, :mod:`tiller.portfolio.cadence`) or a day the risk level rises;
3. :func:`targets` -- the optimize stage on a rebalance: the assets the signals and risk
   allow (:func:`tiller.portfolio.selection.investable`), then
   :func:`tiller.portfolio.optimize.optimize_weights` over the lookback window; on any
   other day :func:`held_targets` keeps the last targets;
4. :func:`orders` -- the orders the targets call for, checked before trading
   (:func:`tiller.execution.orders.plan_orders`), or the L4 liquidation; a day that does
   not rebalance trades only when risk forces an exit or a halving
   (:func:`trades_today`), towards the current weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date

from tiller.domain import RiskLevel, Signal
from tiller.execution.broker import OrderRequest
from tiller.execution.orders import OrderPlan, liquidation_orders, plan_orders
from tiller.portfolio.optimize import CASH, OptimizationResult, optimize_weights
from tiller.portfolio.selection import investable
from tiller.risk import PositionInfo, RiskDecision, RiskInputs, RiskState, assess_risk
from tiller.risk.engine import CRYPTO
from tiller.risk.reentry import target_portfolio_returns
from tiller.risk.window import ReturnWindow
from tiller.settings import Settings


def assess(
    day: date,
    nav: float,
    previous_nav: float | None,
    positions: Mapping[str, PositionInfo],
    returns: ReturnWindow,
    last_targets: Mapping[str, float],
    signals: Sequence[Signal],
    state: RiskState,
    settings: Settings,
    *,
    stale_data: bool = False,
    broker_reachable: bool = True,
    errors_today: int = 0,
    classes: Mapping[str, str] | None = None,
) -> RiskDecision:
    """The risk stage of ``day`` (see the module docstring).

    ``returns`` are the universe's daily returns up to ``day`` (at least
    ``risk.correlation_window`` rows); ``last_targets`` the latest target weights (the
    re-entry test measures the calm of the portfolio the book would hold); ``classes``
    the universe's asset classes when the caller has them already.
    """
    window = returns.tail(settings.risk.correlation_window)
    classes = classes if classes is not None else asset_classes(settings, returns.columns)
    buyable = [s for s in window.columns if classes.get(s) != CRYPTO]
    recovery = None  # no crypto: a recovery measures the whole portfolio, as it is
    if len(buyable) < len(window.columns):
        recovery = target_portfolio_returns(
            ReturnWindow(window.select(buyable), tuple(buyable)), last_targets
        )
    inputs = RiskInputs(
        as_of=day,
        nav=nav,
        previous_nav=previous_nav,
        returns=window,
        portfolio_returns=target_portfolio_returns(window, last_targets),
        recovery_returns=recovery,
        positions=positions,
        signals=tuple(signals),
        asset_classes=classes,
        stale_data=stale_data,
        broker_reachable=broker_reachable,
        errors_today=errors_today,
    )
    return assess_risk(inputs, state, settings.risk)


def asset_classes(settings: Settings, symbols: Sequence[str]) -> dict[str, str]:
    """``{symbol: asset_class}`` of the universe (and any other known symbol given)."""
    known = [*settings.symbols, *(s for s in symbols if s not in settings.symbols)]
    return {s: settings.asset(s).asset_class for s in known if s in settings.assets}


def rebalances(scheduled: bool, level: RiskLevel, previous_level: RiskLevel | None) -> bool:
    """Whether today's targets are recomputed: on a day of the cadence (``scheduled``), and
    on a day the risk level rises above ``previous_level`` (the last assessed day's), so an
    exposure cut is traded the day it is decided."""
    return scheduled or (previous_level is not None and level > previous_level)


def trades_today(rebalance: bool, decision: RiskDecision) -> bool:
    """Whether the orders stage plans anything: on a rebalance (towards the new targets),
    or when risk forces an exit or a halving (towards the current weights, which
    :func:`orders` then cuts); otherwise the book is left as it is."""
    return rebalance or bool(decision.forced_exits or decision.halve)


def held_targets(last_targets: Mapping[str, float], why: str) -> OptimizationResult:
    """The optimize stage's result on a day that does not rebalance: the last targets
    kept (``CASH`` = 1 - their sum), method ``"hold"``, nothing traded towards them."""
    kept = {s: float(w) for s, w in last_targets.items() if s != CASH}
    return OptimizationResult(
        weights=kept | {CASH: 1.0 - math.fsum(kept.values())},
        raw_weights={},
        target_weights=kept,
        method="hold",
        reason=why,
        risk_contributions={},
        skipped=[],
        turnover=0.0,
        condition_number=None,
    )


def targets(
    signals: Sequence[Signal],
    decision: RiskDecision,
    current: Mapping[str, float],
    nav: float,
    returns: ReturnWindow,
    settings: Settings,
    *,
    day: date | None = None,
    opened: Mapping[str, date | None] | None = None,
) -> OptimizationResult:
    """The optimize stage: target weights (``CASH`` included) over what signals and risk
    allow, from the last ``optimize.lookback`` rows of ``returns``.

    ``opened`` gives the date each held position was opened; with
    ``optimize.min_holding_days`` > 0 a position opened fewer calendar days before ``day``
    stays investable whatever its signal (:func:`holding_locks`).
    """
    config = settings.optimize
    fixed = config.fixed_weights if config.method == "fixed" else None
    locked = holding_locks(day, opened or {}, config.min_holding_days)
    assets = investable(signals, decision, list(current), fixed, locked)
    columns = set(returns.columns)
    usable = [s for s in assets if s in columns]
    window = ReturnWindow(returns.tail(config.lookback).select(usable), tuple(usable))
    return optimize_weights(
        window,
        current,
        nav,
        {s: settings.asset(s).max_weight for s in usable},
        config,
        exposure=decision.exposure_scale,
        pair_caps=decision.pair_caps,
        fixed=fixed,
    )


def holding_locks(
    day: date | None, opened: Mapping[str, date | None], min_holding_days: int
) -> frozenset[str]:
    """Held symbols still inside their minimum holding period on ``day``.

    A position opened on date ``o`` is locked while ``(day - o).days < min_holding_days``
    (calendar days, so the rule reads the same for equities and crypto). Worked example:
    ``min_holding_days`` 20, opened 2024-03-01: locked through 2024-03-20 (19 days), free
    on 2024-03-21 (20 days). A position with no known opening date is never locked.
    """
    if day is None or min_holding_days <= 0:
        return frozenset()
    return frozenset(
        s for s, o in opened.items() if o is not None and (day - o).days < min_holding_days
    )


def orders(
    day: date,
    weights: Mapping[str, float],
    held: Mapping[str, float],
    prices: Mapping[str, float],
    nav: float,
    cash: float,
    buying_power: float,
    decision: RiskDecision,
    settings: Settings,
    *,
    paper_only: bool = True,
) -> OrderPlan:
    """The orders of ``day``: towards ``weights``, checked before trading; on an L4 halt
    the liquidation of everything held."""
    if decision.halted or "LIQUIDATE" in decision.actions:
        classes = asset_classes(settings, list(held))
        sells: list[OrderRequest] = liquidation_orders(
            day, dict(held), settings.execution.strategy_tag, asset_classes=classes
        )
        return OrderPlan(orders=sells)
    return plan_orders(
        day,
        weights,
        held,
        prices,
        nav=nav,
        cash=cash,
        buying_power=buying_power,
        decision=decision,
        assets=settings.assets,
        config=settings.execution,
        strategy=settings.execution.strategy_tag,
        paper_only=paper_only,
    )
