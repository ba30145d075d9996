"""The backtest tearsheet: one self-contained HTML page for a :class:`BacktestResult`.

Sections: headline metrics, cumulative return and drawdown, monthly returns, rolling
Sharpe, exposure and weights, turnover, costs, the risk-level timeline and events, and
crisis windows.  The page reuses the daily/weekly report look and helpers
(:mod:`tiller.reporting.render`): plotly.js is inlined once, so the file opens offline.

The figures are computed by the small pure functions below, all from the result's
``daily`` frame.  Units: money in USD, returns, weights and turnover in fractions
(``0.05`` = 5%), dates are session dates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup

from tiller.backtest.result import BacktestResult
from tiller.reporting.metrics import TRADING_DAYS
from tiller.reporting.render import NA, _Charts, _date_axis, _env, _missing, money, na, num, pct

DEFAULT_CRISIS_WINDOWS: tuple[tuple[str, date, date], ...] = (
    ("2008 financial crisis", date(2008, 1, 1), date(2009, 12, 31)),
    ("2020 COVID crash", date(2020, 2, 1), date(2020, 6, 30)),
    ("2022 rate shock", date(2022, 1, 1), date(2022, 12, 31)),
)
"""``(name, first day, last day)`` of the crisis windows reported by default (inclusive)."""

ROLLING_WINDOW = 126
"""Sessions (daily returns) per rolling-Sharpe window, about six months."""

EVENTS_SHOWN = 200
"""Most recent risk events listed in the table."""

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# metric key -> (label, formatter); keys absent from ``result.metrics`` are not shown.
_HEADLINE: dict[str, tuple[str, Any]] = {
    "final_nav": ("Final NAV", money),
    "total_return": ("Total return", pct),
    "cagr": ("Annual return (CAGR)", pct),
    "volatility": ("Annual volatility", pct),
    "sharpe": ("Sharpe", num),
    "sortino": ("Sortino", num),
    "max_drawdown": ("Max drawdown", pct),
    "trades": ("Trades", lambda v: num(v, 0)),
    "turnover_one_way": ("Turnover, one-way (annualised)", pct),
    "turnover_two_way": ("Turnover, two-way: buys + sells (annualised)", pct),
    "costs": ("Costs", money),
    "commission": ("Commission", money),
    "slippage": ("Slippage", money),
    "max_level": ("Worst risk level", lambda v: NA if v is None else f"L{v}"),
    "l4_triggered": ("L4 triggered", lambda v: NA if v is None else ("yes" if v else "no")),
}


# --------------------------------------------------------------------------- figures


def _dated(frame: pd.DataFrame | pd.Series) -> Any:
    """A copy indexed by ``Timestamp`` (session dates may arrive as ``datetime.date``)."""
    out = frame.copy()
    out.index = pd.to_datetime(out.index)
    return out.sort_index()


def monthly_returns(nav: pd.Series, initial_capital: float) -> pd.DataFrame:
    """Monthly and yearly returns from the daily NAV.

    ``r_month = NAV(last session of month) / NAV(last session of previous month) - 1``,
    the first month measured from ``initial_capital``; the ``Year`` column is likewise
    ``NAV(year end) / NAV(previous year end) - 1`` (from ``initial_capital`` for the first
    year), which equals the compounded months ``prod(1 + r_month) - 1``.

    Parameters
    ----------
    nav : pd.Series
        End-of-day NAV in USD, indexed by session date.
    initial_capital : float
        USD before the first session.

    Returns
    -------
    pd.DataFrame
        Index: calendar year (int); columns ``Jan`` .. ``Dec`` and ``Year``; fractions,
        NaN for months without a session.
    """
    columns = [*MONTHS, "Year"]
    values = _dated(pd.Series(nav, dtype=float)).dropna()
    if values.empty:
        return pd.DataFrame(columns=columns, dtype=float)

    def period_returns(freq: str) -> pd.Series:
        ends = values.groupby(values.index.to_period(freq)).last()
        starts = ends.shift(1)
        starts.iloc[0] = initial_capital
        return ends / starts - 1.0

    months = period_returns("M")
    table = pd.DataFrame(
        {"year": months.index.year, "month": months.index.month, "r": months.to_numpy()}
    ).pivot(index="year", columns="month", values="r")
    table = table.reindex(columns=range(1, 13))
    table.columns = list(MONTHS)
    years = period_returns("Y")
    table["Year"] = pd.Series(years.to_numpy(), index=years.index.year)
    table.index.name = None
    return table


def window_stats(
    daily: pd.DataFrame, start: date, end: date, initial_capital: float | None = None
) -> dict[str, Any] | None:
    """Return, drawdown and worst risk level of the sessions within ``[start, end]``.

    The window is measured from a base NAV: the close of the last session before
    ``start``, else ``initial_capital`` (the backtest starts inside the window), else the
    first NAV in the window.  ``return = NAV(last session in window) / base - 1``;
    ``max_drawdown = max(1 - NAV / running peak)`` over the path ``base, NAV...`` (a
    positive fraction).

    Parameters
    ----------
    daily : pd.DataFrame
        :attr:`BacktestResult.daily` (needs ``nav`` in USD and ``level`` 0-4).
    start, end : date
        First and last calendar day of the window (inclusive).
    initial_capital : float, optional
        USD before the first session, the base when no session precedes the window.

    Returns
    -------
    dict or None
        ``first``/``last`` (dates of the sessions covered), ``sessions`` (count),
        ``return`` and ``max_drawdown`` (fractions), ``worst_level`` (int 0-4, None if
        unknown); None when no session falls in the window.
    """
    frame = _dated(daily)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    inside = frame[(frame.index >= lo) & (frame.index <= hi)]
    if inside.empty:
        return None
    nav = inside["nav"].astype(float)
    before = frame.loc[frame.index < lo, "nav"]
    if len(before):
        base = float(before.iloc[-1])
    elif initial_capital is not None:
        base = float(initial_capital)
    else:
        base = float(nav.iloc[0])
    path = np.concatenate([[base], nav.to_numpy()])
    drawdown = 1.0 - path / np.maximum.accumulate(path)
    levels = pd.to_numeric(inside["level"], errors="coerce").dropna()
    return {
        "first": inside.index[0].date(),
        "last": inside.index[-1].date(),
        "sessions": len(inside),
        "return": float(nav.iloc[-1]) / base - 1.0,
        "max_drawdown": float(drawdown.max()),
        "worst_level": int(levels.max()) if len(levels) else None,
    }


def annual_turnover(daily: pd.DataFrame) -> pd.Series:
    """Two-way turnover (buys + sells) per calendar year: ``sum(traded / nav)`` over the
    year's sessions (each day's trades against that day's NAV, as the headline figure);
    one-way turnover is half of it.

    Parameters
    ----------
    daily : pd.DataFrame
        :attr:`BacktestResult.daily` (needs ``traded`` and ``nav``, USD).

    Returns
    -------
    pd.Series
        Index: year (int); values: fractions (``2.0`` = traded twice the NAV in the year).
        A partial year is not scaled up.
    """
    frame = _dated(daily[["traded", "nav"]].astype(float))
    share = (frame["traded"] / frame["nav"].where(frame["nav"] > 0)).fillna(0.0)
    out = share.groupby(frame.index.year).sum()
    out.index.name = None
    return out.astype(float)


def rolling_sharpe(nav: pd.Series, window: int = ROLLING_WINDOW) -> pd.Series:
    """Rolling annualised Sharpe ratio of the daily returns, risk-free rate 0.

    ``r_t = nav_t / nav_{t-1} - 1``; over each ``window`` consecutive returns,
    ``sharpe = mean(r) / std(r, ddof=1) * sqrt(252)``.

    Parameters
    ----------
    nav : pd.Series
        End-of-day NAV in USD, indexed by session date.
    window : int
        Returns per window.

    Returns
    -------
    pd.Series
        Indexed by the last session of each window; windows with zero variance are
        left out, so the series is empty when there are fewer than ``window`` returns.
    """
    returns = _dated(pd.Series(nav, dtype=float)).pct_change().iloc[1:]
    rolling = returns.rolling(window, min_periods=window)
    std = rolling.std(ddof=1)
    out = rolling.mean() / std.where(std > 1e-15) * math.sqrt(TRADING_DAYS)
    return out.replace([np.inf, -np.inf], np.nan).dropna()


# --------------------------------------------------------------------------- page


def _headline(result: BacktestResult) -> list[tuple[str, str]]:
    rows = [
        ("Run id", result.run_id),
        ("Label", result.label),
        ("Start", str(result.start)),
        ("End", str(result.end)),
        ("Cadence", result.cadence),
        ("Initial capital", money(result.initial_capital)),
    ]
    for key, (label, fmt) in _HEADLINE.items():
        if key in result.metrics:
            rows.append((label, fmt(result.metrics[key])))
    return rows


WEIGHT_SERIES = 12
"""The weights chart stacks the largest holdings (by mean weight) and one "Other" band."""


def _line(name: str, x: Any, y: Any, **kwargs: Any) -> go.Scatter:
    # numpy arrays: plotly stores them as typed arrays instead of validating each point
    return go.Scatter(
        x=np.asarray(x, dtype="datetime64[D]"),
        y=np.asarray(y, dtype=float),
        mode="lines",
        name=name,
        **kwargs,
    )


def _largest(weights: pd.DataFrame, keep: int) -> pd.DataFrame:
    """The ``keep`` columns with the largest mean weight (CASH always kept), the rest
    summed into ``Other``."""
    if len(weights.columns) <= keep + 1:
        return weights
    assets = weights.drop(columns=["CASH"], errors="ignore")
    top = list(assets.mean().sort_values(ascending=False, kind="stable").index[:keep])
    out = weights[[*top, *(["CASH"] if "CASH" in weights else [])]].copy()
    out[f"Other ({len(assets.columns) - keep})"] = assets.drop(columns=top).sum(axis=1)
    return out


def _charts(result: BacktestResult, daily: pd.DataFrame, sharpe: pd.Series) -> dict[str, Markup]:
    charts = _Charts()
    out: dict[str, Markup] = {}
    days = daily.index.date
    n = len(daily)

    def add(name: str, fig: go.Figure, title: str, points: int, **layout: Any) -> None:
        fig.update_layout(title=title, **layout)
        _date_axis(fig, points)
        out[name] = charts.html(name, fig)

    if n < 2:
        sentence = "Fewer than two sessions: nothing to chart."
        for name in ("returns", "drawdown", "exposure", "weights", "turnover", "costs", "risk"):
            out[name] = _missing(sentence)
    else:
        nav = daily["nav"].astype(float)
        cum = nav / result.initial_capital - 1.0
        add(
            "returns",
            go.Figure(
                _line(
                    "Cumulative return",
                    days,
                    cum,
                    customdata=nav.to_numpy(dtype=float),
                    hovertemplate="%{y:.2%} (NAV $%{customdata:,.2f})<extra></extra>",
                )
            ),
            "Cumulative return (NAV / initial capital - 1)",
            n,
            yaxis_tickformat=".0%",
        )
        underwater = -daily["drawdown"].astype(float)
        add(
            "drawdown",
            go.Figure(_line("Drawdown", days, underwater, fill="tozeroy", line_color="#c33")),
            "Drawdown from peak (underwater)",
            n,
            yaxis_tickformat=".0%",
        )
        add(
            "exposure",
            go.Figure(_line("Exposure", days, daily["exposure"].astype(float))),
            "Exposure (long value / NAV)",
            n,
            yaxis_tickformat=".0%",
        )
        weights = _largest(_dated(result.weights).fillna(0.0), WEIGHT_SERIES)
        if len(weights) >= 2 and len(weights.columns):
            fig = go.Figure(
                [
                    _line(str(col), weights.index.date, weights[col], stackgroup="w")
                    for col in weights.columns
                ]
            )
            add("weights", fig, "Weights (fraction of NAV)", len(weights), yaxis_tickformat=".0%")
        else:
            out["weights"] = _missing("No weights recorded.")
        add(
            "turnover",
            go.Figure(
                go.Bar(
                    x=np.asarray(days, dtype="datetime64[D]"),
                    y=daily["turnover"].to_numpy(dtype=float),
                )
            ),
            "Daily two-way turnover (buys + sells traded / NAV)",
            n,
            yaxis_tickformat=".1%",
        )
        fig = go.Figure(
            [
                _line(col.capitalize(), days, daily[col].astype(float).cumsum(), stackgroup="c")
                for col in ("commission", "slippage")
            ]
        )
        add("costs", fig, "Cumulative costs (USD)", n)
        fig = go.Figure(_line("Risk level", days, daily["level"], line_shape="hv"))
        ticks = {"tickvals": [0, 1, 2, 3, 4], "ticktext": ["L0", "L1", "L2", "L3", "L4"]}
        add("risk", fig, "Risk-level timeline", n, yaxis={**ticks, "range": [-0.2, 4.2]})

    if len(sharpe) >= 2:
        fig = go.Figure(_line("Rolling Sharpe", sharpe.index.date, sharpe))
        add("sharpe", fig, f"Rolling {ROLLING_WINDOW}-session Sharpe (annualised)", len(sharpe))
    elif n - 1 < ROLLING_WINDOW:
        out["sharpe"] = _missing(
            f"Only {max(n - 1, 0)} daily return(s), fewer than the {ROLLING_WINDOW}-session "
            "window: no rolling Sharpe."
        )
    else:
        out["sharpe"] = _missing("Returns without variance: the rolling Sharpe is undefined.")
    return out


def _monthly_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    def cell(v: Any) -> float | None:
        return float(v) if pd.notna(v) else None

    return [{"year": int(year), "cells": [cell(v) for v in row]} for year, row in table.iterrows()]


def _crisis_rows(
    result: BacktestResult, daily: pd.DataFrame, windows: Sequence[tuple[str, date, date]]
) -> list[dict[str, Any]]:
    rows = []
    for name, start, end in windows:
        stats = window_stats(daily, start, end, result.initial_capital) if len(daily) else None
        rows.append({"name": name, "start": start, "end": end, "stats": stats})
    return rows


def _events(events: pd.DataFrame) -> list[dict[str, str]]:
    if events.empty:
        return []
    recent = events.sort_values("date", kind="stable").tail(EVENTS_SHOWN).iloc[::-1]
    return [
        {key: na(row[key]) for key in ("date", "kind", "symbol", "reason")}
        for row in recent.to_dict("records")
    ]


def render_tearsheet(
    result: BacktestResult,
    crisis_windows: Sequence[tuple[str, date, date]] = DEFAULT_CRISIS_WINDOWS,
) -> str:
    """One self-contained HTML page (plotly.js inline once) describing a backtest.

    Parameters
    ----------
    result : BacktestResult
        The run to describe.
    crisis_windows : sequence of (name, start, end)
        Windows (inclusive calendar days) reported in the crisis section; those without
        a session in the backtest are listed as not in range.

    Returns
    -------
    str
        The HTML document.
    """
    daily = _dated(result.daily)
    sharpe = rolling_sharpe(daily["nav"]) if len(daily) else pd.Series(dtype=float)
    turnover = annual_turnover(daily) if len(daily) else pd.Series(dtype=float)
    commission = float(daily["commission"].sum()) if len(daily) else 0.0
    slippage = float(daily["slippage"].sum()) if len(daily) else 0.0
    costs = {
        "commission": commission,
        "slippage": slippage,
        "total": commission + slippage,
        "of_capital": (commission + slippage) / result.initial_capital,
        "traded": float(daily["traded"].sum()) if len(daily) else 0.0,
        "fills": len(result.trades),
    }
    template = _env().get_template("tearsheet.html.j2")
    return template.render(
        result=result,
        headline=_headline(result),
        charts=_charts(result, daily, sharpe),
        months=MONTHS,
        monthly=_monthly_rows(monthly_returns(daily["nav"], result.initial_capital)),
        turnover=[(int(y), float(v) / 2.0, float(v)) for y, v in turnover.items()],
        costs=costs,
        events=_events(result.risk_events),
        events_total=len(result.risk_events),
        events_shown=EVENTS_SHOWN,
        crises=_crisis_rows(result, daily, crisis_windows),
    )
