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
from typing import Any

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


TRADING_COLUMNS = (
    "sessions",
    "traded",
    "costs",
    "mean_nav",
    "turnover_one_way",
    "turnover_two_way",
    "cost_drag",
)


def monthly_trading(nav: pd.Series, traded: pd.Series, costs: pd.Series) -> pd.DataFrame:
    """Turnover and trading costs per calendar month.

    Parameters
    ----------
    nav : pd.Series
        End-of-session NAV (USD) by date; the sessions that count.
    traded : pd.Series
        USD bought plus sold by date (several entries on one date are summed; a date
        without a NAV is left out).
    costs : pd.Series
        Trading costs (USD) by date, as ``traded``.

    Returns
    -------
    pd.DataFrame
        Index: ``"YYYY-MM"``; columns :data:`TRADING_COLUMNS`: ``sessions`` (with a
        NAV), ``traded`` and ``costs`` (USD), ``mean_nav`` (USD),
        ``turnover_two_way = sum_d traded_d / nav_d`` over the month's sessions (each
        day's trades against that day's NAV), ``turnover_one_way`` half of it, and the
        annualised ``cost_drag = costs / mean_nav x 252 / sessions``.  Worked example:
        21 sessions at a $100,000 NAV, $30,000 traded in the month and $25 of costs:
        two-way 30%, one-way 15%, cost drag 25 / 100,000 x 12 = 0.3% a year.
    """
    values = pd.Series(nav, dtype=float).sort_index()
    values.index = pd.DatetimeIndex(values.index).normalize()
    values = values[np.isfinite(values.to_numpy()) & (values.to_numpy() > 0)]
    if values.empty:
        return pd.DataFrame(columns=list(TRADING_COLUMNS), dtype=float)

    def per_session(series: pd.Series) -> pd.Series:
        frame = pd.Series(series, dtype=float)
        frame.index = pd.DatetimeIndex(frame.index).normalize()
        return frame.groupby(level=0).sum().reindex(values.index, fill_value=0.0)

    frame = pd.DataFrame(
        {"nav": values, "traded": per_session(traded), "costs": per_session(costs)}
    )
    frame["share"] = frame["traded"] / frame["nav"]
    months = frame.groupby(frame.index.strftime("%Y-%m"))
    out = pd.DataFrame(
        {
            "sessions": months["nav"].count(),
            "traded": months["traded"].sum(),
            "costs": months["costs"].sum(),
            "mean_nav": months["nav"].mean(),
            "turnover_two_way": months["share"].sum(),
        }
    )
    out["turnover_one_way"] = out["turnover_two_way"] / 2.0
    out["cost_drag"] = out["costs"] / out["mean_nav"] * TRADING_DAYS / out["sessions"]
    out.index.name = "month"
    return out[list(TRADING_COLUMNS)]


def trading_totals(table: pd.DataFrame) -> dict[str, float]:
    """A span of :func:`monthly_trading` rows as one figure each.

    Returns
    -------
    dict
        ``sessions``, ``traded`` and ``costs`` (USD) summed, ``mean_nav`` over all the
        sessions (USD), ``turnover_two_way`` summed (not scaled to a period),
        ``turnover_one_way`` half of it, and the annualised
        ``cost_drag = costs / mean_nav x 252 / sessions``.
    """
    sessions = float(table["sessions"].sum())
    mean_nav = float((table["mean_nav"] * table["sessions"]).sum()) / sessions
    costs = float(table["costs"].sum())
    two_way = float(table["turnover_two_way"].sum())
    return {
        "sessions": sessions,
        "traded": float(table["traded"].sum()),
        "costs": costs,
        "mean_nav": mean_nav,
        "turnover_two_way": two_way,
        "turnover_one_way": two_way / 2.0,
        "cost_drag": costs / mean_nav * TRADING_DAYS / sessions,
    }


TRADING_MONTHS = 12
"""Months a report lists in its trading section (the most recent ones)."""


def trading_section(table: pd.DataFrame, months: int = TRADING_MONTHS) -> dict[str, Any]:
    """The trading section of the daily report and the weekly review.

    Parameters
    ----------
    table : pd.DataFrame
        :func:`monthly_trading` of the record.
    months : int
        How many of the most recent months to list.

    Returns
    -------
    dict
        ``months``: rows (``month`` and :data:`TRADING_COLUMNS`), oldest first;
        ``since_inception``: ``sessions``, ``traded``, ``costs`` (USD), the average
        month's ``turnover_one_way`` and ``turnover_two_way`` (per 21 sessions:
        ``sum(two_way) x 21 / sessions``, halved for one-way) and the annualised
        ``cost_drag = costs / mean NAV x 252 / sessions`` (mean NAV over all sessions),
        these three None before :data:`MIN_ANNUALISED_SESSIONS` sessions; ``notes``.
    """
    notes: list[str] = []
    if table.empty:
        notes.append("No sessions recorded yet: no turnover or costs to show.")
        return {"months": [], "since_inception": None, "notes": notes}
    totals = trading_totals(table)
    sessions = int(totals["sessions"])
    two_way: float | None = totals["turnover_two_way"] * TRADING_DAYS / 12 / sessions
    drag: float | None = totals["cost_drag"]
    if sessions < MIN_ANNUALISED_SESSIONS:
        two_way = drag = None
        notes.append(
            f"The average month and the annual cost drag are shown from "
            f"{MIN_ANNUALISED_SESSIONS} sessions ({sessions} so far)."
        )
    rows = [
        {"month": str(month), **{c: float(row[c]) for c in TRADING_COLUMNS}}
        | {"sessions": int(row["sessions"])}
        for month, row in table.tail(months).iterrows()
    ]
    if len(table) > months:
        notes.append(f"The last {months} of {len(table)} months are listed.")
    return {
        "months": rows,
        "since_inception": {
            "sessions": sessions,
            "traded": totals["traded"],
            "costs": totals["costs"],
            "turnover_one_way": None if two_way is None else two_way / 2.0,
            "turnover_two_way": two_way,
            "cost_drag": drag,
        },
        "notes": notes,
    }
