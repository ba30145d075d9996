"""How a simulated market order fills on one session (pure; shared by the paper broker and
the backtest so both fill the same way).

* The reference price is the session's open (``fill_price: next_open``) or close
  (``fill_price: close``).
* One session fills at most ``max_volume_fraction * volume`` units, rounded down to the
  asset's lot (no cap when the bar has no volume figure, or with ``max_volume_fraction``
  None); the rest waits for later sessions.
* The fill price and commission come from :mod:`tiller.execution.costs`.

Worked example (defaults, ETF): buy 100 shares, open $400.00, 20-day daily vol 1%:
notional at the reference ``100 * 400 = $40,000``; slippage
``0.0005 + 0.10 * 0.01 + 0.0001 * (40,000 - 10,000) / 10,000 = 0.0018``; price
``400 * 1.0018 = $400.72``; commission ``100 * 400.72 * 0.001 = $40.072``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from tiller.execution import costs
from tiller.execution.broker import OrderSide
from tiller.settings import Settings

EPSILON = 1e-9


@dataclass(frozen=True)
class Fill:
    """One session's fill of an order."""

    session: date
    qty: float
    price: float  # USD per unit, slippage included
    commission: float  # USD
    slippage: float  # fraction of the reference price
    reference: float = math.nan  # USD, the open or close the price starts from


def lot(symbol: str, settings: Settings) -> float:
    """Trading unit: ``crypto_lot`` for crypto, 1 share for ETFs (0 = any fraction)."""
    if settings.asset(symbol).asset_class == "crypto":
        return settings.execution.crypto_lot
    return 0.0 if settings.execution.fractional else 1.0


def volume_cap(symbol: str, volume: float, settings: Settings) -> float:
    """Most units one session can fill: ``max_volume_fraction * volume``, lot-rounded down
    (no cap when the bar has no volume figure or ``max_volume_fraction`` is None)."""
    fraction = settings.execution.max_volume_fraction
    if fraction is None or not math.isfinite(volume):
        return math.inf
    cap = fraction * volume
    unit = lot(symbol, settings)
    return math.floor(cap / unit + EPSILON) * unit if unit > 0 else cap


def fill_sessions(
    calendar_sessions: Sequence[date], order_day: date, done: date | None, settings: Settings
) -> list[date]:
    """Sessions an order of ``order_day`` may fill on, given the symbol's sessions from
    ``order_day`` on: after the order day for ``next_open``, from it for ``close``; the
    first ``fill_delay_sessions`` skipped; none on or before ``done`` (already processed)."""
    days = list(calendar_sessions)
    if settings.execution.fill_price == "next_open":
        days = [d for d in days if d > order_day]
    delayed = days[settings.execution.fill_delay_sessions :]
    return [d for d in delayed if done is None or d > done]


def fill_on(
    symbol: str,
    side: OrderSide,
    session: date,
    open_price: float,
    close_price: float,
    volume: float,
    remaining: float,
    daily_vol: float,
    settings: Settings,
) -> Fill | None:
    """One session's fill: the volume-capped quantity at the reference price plus slippage.

    Parameters
    ----------
    symbol, side:
        The order's asset and direction.
    session:
        The fill session.
    open_price, close_price, volume:
        The session's bar (USD, units).
    remaining:
        Units still to fill (> 0).
    daily_vol:
        Standard deviation of the last 20 daily returns up to the order date (fraction;
        NaN adds no volatility term).
    settings:
        Universe (cost class), costs and execution settings.

    Returns
    -------
    Fill or None
        None when nothing can fill (volume cap rounds to zero, no reference price).
    """
    reference = open_price if settings.execution.fill_price == "next_open" else close_price
    qty = min(remaining, volume_cap(symbol, volume, settings))
    if qty <= EPSILON or not math.isfinite(reference):
        return None
    cost = settings.costs[settings.asset(symbol).cost_class]
    slippage = costs.slippage_fraction(
        cost.slippage, daily_vol, qty * reference, settings.execution
    )
    price = costs.fill_price(reference, side, slippage)
    fee = costs.commission(qty * price, cost.commission)
    return Fill(session, qty, price, fee, slippage, reference)


def delisting_fill(
    symbol: str, qty: float, last_close: float, day: date, daily_vol: float, settings: Settings
) -> Fill:
    """The forced sale of a position whose data ended (delisted): all ``qty`` at the last
    close seen, less the usual slippage, with the usual commission (no volume cap: there
    is no later bar to spread it over)."""
    cost = settings.costs[settings.asset(symbol).cost_class]
    slippage = costs.slippage_fraction(
        cost.slippage, daily_vol, qty * last_close, settings.execution
    )
    price = costs.fill_price(last_close, OrderSide.SELL, slippage)
    return Fill(
        day, qty, price, costs.commission(qty * price, cost.commission), slippage, last_close
    )
