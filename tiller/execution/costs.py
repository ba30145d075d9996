"""Trading costs of the simulated broker: slippage, fill price and commission (pure functions).

SPEC stage 8: "slippage = 5 bps base + volatility term + size impact over
$10k, commission per asset class"; the universe table gives the per-class
costs (ETFs 0.10% commission + 0.05% slippage, BTC 0.10% + 0.15%).  All
results are fractions of price or USD amounts.

Slippage, as a fraction of the reference price (open or close of the fill session)::

    slippage = base + volatility + impact

    base       = the cost class's slippage (``costs.<class>.slippage``: 0.0005 = 5 bps for
                 ETFs, 0.0015 = 15 bps for crypto); ``execution.base_slippage_bps / 1e4``
                 when no class slippage is given (None)
    volatility = execution.volatility_slippage * daily_vol
                 (daily_vol: standard deviation of the last 20 daily returns, a fraction;
                 NaN or negative counts as 0)
    impact     = execution.impact_bps_per_10k / 1e4
                 * max(0, |notional| - execution.impact_threshold) / 10_000
                 (|notional|: USD value of the fill at the reference price)

With the defaults an ETF fill of $25,000 when daily vol is 1% pays
``0.0005 + 0.10 * 0.01 + 0.0001 * 15_000 / 10_000 = 0.0005 + 0.001 + 0.00015 = 0.00165``.

A buy fills at ``reference * (1 + slippage)``, a sell at ``reference * (1 - slippage)``
(never below 0); the commission is ``|fill notional| * costs.<class>.commission``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tiller.execution.broker import OrderSide
from tiller.settings import ExecutionConfig

BPS = 1e4  # basis points per unit fraction
IMPACT_STEP = 10_000.0  # USD: impact_bps_per_10k applies per this much notional
VOLATILITY_WINDOW = 20  # daily returns in the volatility term


def base_slippage(asset_cost_slippage: float | None, config: ExecutionConfig) -> float:
    """The base slippage fraction: the cost class's, or ``base_slippage_bps`` when it has none."""
    if asset_cost_slippage is None:
        return config.base_slippage_bps / BPS
    return asset_cost_slippage


def slippage_fraction(
    asset_cost_slippage: float | None,
    daily_vol: float,
    notional: float,
    config: ExecutionConfig,
) -> float:
    """Slippage of one fill as a fraction of the reference price (see the module docstring).

    Parameters
    ----------
    asset_cost_slippage:
        The cost class's slippage fraction (``settings.costs[cls].slippage``), or None to
        fall back to ``config.base_slippage_bps``.
    daily_vol:
        Standard deviation of the asset's last 20 daily returns (a fraction, e.g. 0.012);
        NaN (too little history) adds no volatility term.
    notional:
        USD value of the fill at the reference price; its sign is ignored.
    config:
        The execution settings (volatility coefficient, impact threshold and rate).

    Returns
    -------
    float
        ``base + volatility_slippage * daily_vol
        + impact_bps_per_10k / 1e4 * max(0, |notional| - impact_threshold) / 10_000``.
    """
    vol = daily_vol if math.isfinite(daily_vol) and daily_vol > 0 else 0.0
    volatility = config.volatility_slippage * vol
    excess = max(0.0, abs(notional) - config.impact_threshold)
    impact = config.impact_bps_per_10k / BPS * excess / IMPACT_STEP
    return base_slippage(asset_cost_slippage, config) + volatility + impact


def fill_price(reference_price: float, side: OrderSide, slippage: float) -> float:
    """The price a market order gets: buys pay ``ref * (1 + s)``, sells get ``ref * (1 - s)``.

    A sell never fills below 0 (only reachable with an absurd slippage of 100% or more).
    """
    if side is OrderSide.BUY:
        return reference_price * (1.0 + slippage)
    return max(0.0, reference_price * (1.0 - slippage))


def commission(notional: float, cost_class_commission: float) -> float:
    """USD commission on a fill: ``|notional| * rate`` (0.0010 = 0.10% for ETFs and crypto)."""
    return abs(notional) * cost_class_commission


def daily_volatility(
    prices: Sequence[float] | np.ndarray, window: int = VOLATILITY_WINDOW
) -> float:
    """Sample standard deviation (ddof=1) of the last ``window`` simple daily returns.

    ``prices`` are consecutive session closes, oldest first, ending on the order date
    (callers pass nothing later: no look-ahead).  With fewer than two returns the
    volatility is unknown and NaN is returned (:func:`slippage_fraction` then adds no
    volatility term).
    """
    values = np.asarray(prices, dtype=float)
    values = values[np.isfinite(values)][-(window + 1) :]
    if values.size < 3:
        return math.nan
    returns = values[1:] / values[:-1] - 1.0
    return float(np.std(returns, ddof=1))
