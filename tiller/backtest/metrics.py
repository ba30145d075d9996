"""Headline figures of a backtest (pure).

Returns are daily simple NAV returns; annualised with 252 sessions a year.

* ``cagr = (final_nav / initial_capital) ** (1 / years) - 1``, ``years`` = (last - first
  session + 1 day) / 365.25;
* ``volatility`` = std(ddof=1) of daily returns x sqrt(252); ``sharpe`` = mean / std x
  sqrt(252) (risk-free 0); ``sortino`` = 252 x mean / (sqrt(mean(min(r, 0)^2)) x sqrt(252));
  ``max_drawdown`` = max over time of ``1 - nav / running peak of nav`` (the true peak,
  never rebased);
* ``turnover_two_way`` = ``sum over sessions of (traded USD that session, buys + sells)
  / (NAV that session) / years``, and ``turnover_one_way`` = half of it (the average of
  buys and sells): both annualised fractions of NAV, e.g. 2.0 = the book traded twice its
  value in a year (each trade measured against the NAV of its day, as in
  ``shared/reference/TREND-RP.md``, so a growing book does not inflate early trades);
* ``costs`` = commission + slippage (USD); ``cost_drag`` = costs / mean(nav) / years (a
  fraction of NAV per year); ``dividends`` = cash dividends received (USD).

The ratios follow empyrical's definitions (the daily report's :mod:`tiller.reporting.metrics`;
a test checks they agree), computed with numpy here because importing empyrical costs
seconds (scipy.stats, yfinance) that a backtest does not need to pay.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

PERIODS = 252  # sessions per year


def _clean(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def ratios(returns: np.ndarray) -> dict[str, float | None]:
    """Annualised volatility, Sharpe and Sortino of daily simple returns (module docstring)."""
    r = returns[np.isfinite(returns)]
    if r.size < 2:
        return {"volatility": None, "sharpe": None, "sortino": None}
    std = float(np.std(r, ddof=1))
    mean = float(np.mean(r))
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) * math.sqrt(PERIODS)
    has_variance = std > 1e-15
    return {
        "volatility": std * math.sqrt(PERIODS),
        "sharpe": _clean(mean / std * math.sqrt(PERIODS)) if has_variance else None,
        "sortino": _clean(mean * PERIODS / downside) if has_variance and downside > 0 else None,
    }


def headline(daily: pd.DataFrame, trades: pd.DataFrame, initial_capital: float) -> dict[str, Any]:
    """The headline metrics of a backtest's daily record and fills (module docstring)."""
    if daily.empty:
        return {"final_nav": initial_capital, "trades": 0}
    nav = daily["nav"].astype(float)
    returns = pd.concat([pd.Series([initial_capital]), nav.reset_index(drop=True)]).pct_change()
    returns = returns.iloc[1:].reset_index(drop=True)
    first, last = pd.Timestamp(daily.index[0]), pd.Timestamp(daily.index[-1])
    years = max((last - first).days + 1, 1) / 365.25
    final = float(nav.iloc[-1])
    commission = float(daily["commission"].sum())
    slippage = float(daily["slippage"].sum())
    daily_turnover = (daily["traded"] / nav.where(nav > 0)).fillna(0.0)
    two_way = float(daily_turnover.sum()) / years
    return {
        "final_nav": round(final, 2),
        "total_return": final / initial_capital - 1.0,
        "cagr": (final / initial_capital) ** (1.0 / years) - 1.0 if final > 0 else -1.0,
        **ratios(returns.to_numpy(dtype=float)),
        "max_drawdown": float((1.0 - nav / nav.cummax()).max()),
        "trades": len(trades),
        "turnover_two_way": two_way,
        "turnover_one_way": two_way / 2.0,
        "costs": round(commission + slippage, 2),
        "cost_drag": (commission + slippage) / float(nav.mean()) / years
        if nav.mean() > 0
        else None,
        "commission": round(commission, 2),
        "slippage": round(slippage, 2),
        "dividends": round(float(daily["dividends"].sum()), 2) if "dividends" in daily else 0.0,
        "max_level": int(daily["level"].max()),
        "l4_triggered": bool((daily["level"] >= 4).any()),
        "sessions": len(daily),
    }
