"""Performance metrics that never return NaN.

Return-based metrics (``sharpe``, ``sortino``, ``max_drawdown``, ``annual_return``,
``annual_volatility``) take **daily simple returns** (fractions, e.g. 0.01 = +1%)
and delegate to empyrical-reloaded with 252 periods a year and a zero risk-free
rate.  Trade-based metrics (``win_rate``, ``profit_factor``, ``average_win``,
``average_loss``) take the **realised P&L (USD) of each closed trade**.
``best_day`` / ``worst_day`` take **daily values** (returns or USD P&L: whatever
series is passed in; the reports pass daily USD P&L).

Every function returns ``float | None``: ``None`` whenever the metric is
undefined (fewer than 2 returns, zero variance, no trades, no losing trades for
the profit factor, ...), never NaN or infinity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

TRADING_DAYS = 252
"""Periods per year used to annualise daily figures."""

MIN_ANNUALISED_SESSIONS = 60
"""Fewest daily returns before a report shows an annualised figure (Sharpe, Sortino, CAGR,
volatility): over a few sessions one bad day annualises into nonsense (Sharpe -18.49,
CAGR -69% after 3 sessions).  :func:`annualised` applies it."""

ANNUALISED = ("sharpe", "sortino", "annual_return", "annual_volatility")


def _finite(value: object) -> float | None:
    """``float(value)`` when it is a finite number, else None."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def clean_returns(returns: Iterable[float] | pd.Series) -> pd.Series:
    """A float Series with NaN and infinities dropped (index kept when given a Series)."""
    series = (
        returns.astype(float)
        if isinstance(returns, pd.Series)
        else pd.Series(list(returns), dtype=float)
    )
    return series[np.isfinite(series.to_numpy())]


def returns_from_nav(nav: pd.Series) -> pd.Series:
    """Daily simple returns ``nav[t] / nav[t-1] - 1`` (one fewer point than ``nav``)."""
    values = pd.Series(nav, dtype=float).sort_index()
    values = values[np.isfinite(values.to_numpy()) & (values.to_numpy() > 0)]
    return values.pct_change().iloc[1:]


def _has_variance(series: pd.Series) -> bool:
    return len(series) >= 2 and float(series.std(ddof=1)) > 1e-15


def sharpe(returns: Iterable[float] | pd.Series) -> float | None:
    """Annualised Sharpe ratio ``mean / std(ddof=1) * sqrt(252)``; None if < 2 returns or flat."""
    series = clean_returns(returns)
    if not _has_variance(series):
        return None
    import empyrical  # ~0.9 s (scipy.stats): imported when a metric is defined

    return _finite(empyrical.sharpe_ratio(series, period="daily"))


def sortino(returns: Iterable[float] | pd.Series) -> float | None:
    """Annualised Sortino ratio; None if < 2 returns, flat, or no downside returns."""
    series = clean_returns(returns)
    if not _has_variance(series) or not (series < 0).any():
        return None
    import empyrical

    return _finite(empyrical.sortino_ratio(series, period="daily"))


def max_drawdown(returns: Iterable[float] | pd.Series) -> float | None:
    """Largest peak-to-trough fall as a **positive** fraction (0.12 = 12%); None if no returns."""
    series = clean_returns(returns)
    if series.empty:
        return None
    import empyrical

    value = _finite(empyrical.max_drawdown(series))
    return None if value is None else abs(value)


def annual_return(returns: Iterable[float] | pd.Series) -> float | None:
    """Compound annual growth rate (CAGR) of the returns; None if < 2 returns."""
    series = clean_returns(returns)
    if len(series) < 2:
        return None
    import empyrical

    return _finite(empyrical.annual_return(series, period="daily"))


def annual_volatility(returns: Iterable[float] | pd.Series) -> float | None:
    """``std(ddof=1) * sqrt(252)`` of the returns; None if < 2 returns."""
    series = clean_returns(returns)
    if len(series) < 2:
        return None
    import empyrical

    return _finite(empyrical.annual_volatility(series, period="daily"))


def annualised(
    returns: Iterable[float] | pd.Series, min_sessions: int = MIN_ANNUALISED_SESSIONS
) -> dict[str, float | None]:
    """:func:`sharpe`, :func:`sortino`, :func:`annual_return` (CAGR) and
    :func:`annual_volatility` of daily ``returns``, each None while there are fewer than
    ``min_sessions`` returns (see :data:`MIN_ANNUALISED_SESSIONS`)."""
    series = clean_returns(returns)
    if len(series) < min_sessions:
        return dict.fromkeys(ANNUALISED)
    return {
        "sharpe": sharpe(series),
        "sortino": sortino(series),
        "annual_return": annual_return(series),
        "annual_volatility": annual_volatility(series),
    }


def _pnls(trade_pnls: Sequence[float]) -> list[float]:
    return [v for v in (_finite(p) for p in trade_pnls) if v is not None]


def win_rate(trade_pnls: Sequence[float]) -> float | None:
    """Fraction of closed trades with P&L > 0 (break-even counts as not a win); None if none."""
    pnls = _pnls(trade_pnls)
    if not pnls:
        return None
    return sum(1 for p in pnls if p > 0) / len(pnls)


def profit_factor(trade_pnls: Sequence[float]) -> float | None:
    """Gross profit / gross loss (USD) of closed trades; None if no trades or no losses."""
    pnls = _pnls(trade_pnls)
    gross_loss = -sum(p for p in pnls if p < 0)
    if not pnls or gross_loss <= 0:
        return None
    return sum(p for p in pnls if p > 0) / gross_loss


def average_win(trade_pnls: Sequence[float]) -> float | None:
    """Mean P&L (USD) of winning trades; None if there are none."""
    wins = [p for p in _pnls(trade_pnls) if p > 0]
    return sum(wins) / len(wins) if wins else None


def average_loss(trade_pnls: Sequence[float]) -> float | None:
    """Mean P&L (USD, negative) of losing trades; None if there are none."""
    losses = [p for p in _pnls(trade_pnls) if p < 0]
    return sum(losses) / len(losses) if losses else None


def best_day(daily_values: Iterable[float] | pd.Series) -> float | None:
    """Largest daily value (return or USD P&L, as passed); None if empty."""
    series = clean_returns(daily_values)
    return None if series.empty else float(series.max())


def worst_day(daily_values: Iterable[float] | pd.Series) -> float | None:
    """Smallest daily value (return or USD P&L, as passed); None if empty."""
    series = clean_returns(daily_values)
    return None if series.empty else float(series.min())


def drawdown_series(nav: pd.Series) -> pd.Series:
    """``1 - nav / running_peak`` per date (positive fractions, 0 at new highs)."""
    values = pd.Series(nav, dtype=float).sort_index()
    values = values[np.isfinite(values.to_numpy()) & (values.to_numpy() > 0)]
    return 1.0 - values / values.cummax()
