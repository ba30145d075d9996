"""What a backtest produces: the daily record, the trades, the risk events and the metrics.

Money is in USD, weights and returns in fractions (``0.05`` = 5%), dates are session
dates (``datetime.date``).  Everything here is plain data: the engine fills it, the store
persists it, the tearsheet and the reports read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

DAILY_COLUMNS = (
    "nav",  # USD, end of day at the closes
    "cash",  # USD
    "long_value",  # USD, sum of qty x close
    "exposure",  # long_value / nav
    "peak_nav",  # USD, running maximum of nav
    "drawdown",  # 1 - nav / peak_nav (>= 0)
    "level",  # risk level 0-4 of the day's risk check
    "regime",  # NORMAL / ELEVATED / HIGH_VOL / EXTREME, or "" when no VIX yet
    "traded",  # USD notional filled that day (sum of |qty x price|)
    "turnover",  # traded / nav
    "commission",  # USD paid that day
    "slippage",  # USD cost of slippage that day (sum of |fill - reference| x qty)
    "rebalanced",  # True when targets were (re)computed that day
    "dividends",  # USD of cash dividends credited that day
)
"""Columns of :attr:`BacktestResult.daily` (index: session date, ascending)."""

TRADE_COLUMNS = (
    "date",  # fill session
    "order_date",  # session the order was decided on
    "symbol",
    "side",  # "buy" / "sell"
    "qty",  # units filled (> 0)
    "price",  # USD per unit, slippage included
    "reference_price",  # USD, the open or close the fill is priced from
    "notional",  # qty x price, USD (> 0)
    "commission",  # USD
    "slippage",  # USD, |price - reference_price| x qty
    "client_order_id",
)
"""Columns of :attr:`BacktestResult.trades` (one row per fill)."""

EVENT_COLUMNS = ("date", "kind", "symbol", "reason")
"""Columns of :attr:`BacktestResult.risk_events` (risk decisions with their reasons)."""


@dataclass(frozen=True)
class BacktestResult:
    """One backtest run.

    Attributes
    ----------
    run_id:
        Identifier of the run (``bt-...``), the key it is persisted under.
    label:
        Human name (``"backtest"``, a stress scenario name, a profile name).
    start, end:
        First and last session replayed.
    cadence:
        Rebalance cadence: ``daily``, ``weekly``, ``monthly`` or ``once``.
    initial_capital:
        USD at the start.
    daily:
        One row per session, columns :data:`DAILY_COLUMNS`.
    weights:
        End-of-day weights (fractions of NAV), index session date, one column per symbol
        ever held, plus ``CASH``.
    trades:
        Fills, columns :data:`TRADE_COLUMNS`.
    risk_events:
        Risk decisions as they start, columns :data:`EVENT_COLUMNS`: the level on the
        days it changes, any other decision on the first day of a run of days it holds.
    metrics:
        Headline figures, see :func:`tiller.backtest.metrics.headline`.
    timings:
        Seconds spent per stage (``factors``, ``signals``, ``risk``, ``optimize``,
        ``orders``, ``fills``, ...), for the benchmark.
    config:
        The settings that matter, as plain data (cadence, universe, costs, ...).
    """

    run_id: str
    label: str
    start: date
    end: date
    cadence: str
    initial_capital: float
    daily: pd.DataFrame
    weights: pd.DataFrame
    trades: pd.DataFrame
    risk_events: pd.DataFrame
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkRun:
    """A reference strategy run over a backtest's window, for its tearsheet.

    Attributes
    ----------
    profile:
        The configuration profile it ran under (``buy-and-hold-spy``, ``sixty-forty``,
        ``trend-rp``).
    result:
        The run; None when it could not run (``reason`` says why, e.g. missing data).
    reason:
        Why there is no run, or None.
    cached:
        True when the run was read back from the store instead of replayed.
    """

    profile: str
    result: BacktestResult | None = None
    reason: str | None = None
    cached: bool = False
