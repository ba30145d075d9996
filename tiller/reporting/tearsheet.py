"""The backtest tearsheet: one self-contained HTML page for a :class:`BacktestResult`.

Sections: headline metrics, the benchmarks (buy-and-hold SPY, 60/40 and the trend
risk-parity reference over the same window, when the service layer ran them), cumulative
return and drawdown with the worst drawdown periods and the stretches the book sat in cash
because of a risk level, monthly returns, rolling Sharpe, exposure and weights, turnover,
costs, the risk-level timeline and events, and crisis windows.  The page reuses the
daily/weekly report look and helpers (:mod:`tiller.reporting.render`): plotly.js is inlined
once, so the file opens offline.

The figures are computed by the small pure functions below, all from the result's
``daily`` frame.  Units: money in USD, returns, weights and turnover in fractions
(``0.05`` = 5%), dates are session dates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup

from tiller.backtest.result import BacktestResult, BenchmarkRun
from tiller.reporting.metrics import TRADING_DAYS, monthly_trading, trading_totals
from tiller.reporting.render import (
    LEVEL_COLOURS,
    NA,
    _Charts,
    _date_axis,
    _env,
    _missing,
    money,
    na,
    num,
    pct,
)

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


def yearly_trading(trading: pd.DataFrame) -> list[dict[str, Any]]:
    """Turnover and costs per calendar year from the monthly table.

    Parameters
    ----------
    trading : pd.DataFrame
        :func:`tiller.reporting.metrics.monthly_trading` of the run.

    Returns
    -------
    list of dict
        ``year``, ``turnover_two_way`` (the sum of the months': each session's traded /
        NAV, a partial year not scaled up), ``turnover_one_way`` (half), ``costs`` (USD)
        and the annualised ``cost_drag = costs / mean NAV x 252 / sessions``.
    """
    if trading.empty:
        return []
    return [
        {
            "year": int(year),
            **{
                k: v
                for k, v in trading_totals(months).items()
                if k in ("turnover_one_way", "turnover_two_way", "costs", "cost_drag")
            },
        }
        for year, months in trading.groupby(trading.index.str[:4])
    ]


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


DRAWDOWN_PERIODS = 5
"""Rows of the worst-drawdown-periods table."""

CASH_EXPOSURE = 0.02
"""A session with exposure (long value / NAV) below this is "in cash"."""

CASH_LEVEL = 2
"""A stretch in cash is put down to the risk ladder when the level reached this (L2 and L3
are sell-only, L4 sells everything and halts) on one of its sessions."""

LEVEL_MEANING = {
    2: "L2: sell-only, exposure x0.75",
    3: "L3: sell-only, safe havens only, exposure x0.5",
    4: "L4: everything sold and trading halted, then the wait for calm sessions and the "
    "re-entry ramp",
}


def drawdown_periods(nav: pd.Series, top: int = DRAWDOWN_PERIODS) -> list[dict[str, Any]]:
    """The ``top`` deepest drawdown periods of a NAV path, deepest first.

    A period starts at a peak (a session whose NAV is the running maximum, the last one
    before the NAV falls below it), reaches its trough (the lowest NAV before the peak is
    regained) and ends at the recovery, the first session whose NAV is back at or above
    the peak (None when the path ends below it).  ``depth = 1 - NAV(trough) / NAV(peak)``,
    so the first row's depth is the path's max drawdown.  Lengths are in sessions (steps
    of the series): ``decline`` peak -> trough, ``recovery`` trough -> recovery (None if
    not recovered), ``length`` peak -> recovery, or peak -> last session when not
    recovered; ``days`` is the same span in calendar days.

    Parameters
    ----------
    nav : pd.Series
        End-of-day NAV (USD), indexed by session date.
    top : int
        How many periods to return.

    Returns
    -------
    list of dict
        ``peak, trough, recovered`` (dates, ``recovered`` None), ``depth`` (fraction),
        ``decline, recovery, length`` (sessions), ``days``.
    """
    values = _dated(pd.Series(nav, dtype=float)).dropna()
    v = values.to_numpy(dtype=float)
    days = [d.date() for d in values.index]
    periods: list[tuple[int, int, int | None]] = []
    peak, trough, falling = 0, 0, False
    for i in range(1, len(v)):
        if v[i] >= v[peak]:
            if falling:
                periods.append((peak, trough, i))
                falling = False
            peak = i
        elif not falling:
            falling, trough = True, i
        elif v[i] < v[trough]:
            trough = i
    if falling:
        periods.append((peak, trough, None))
    rows = []
    for p, t, r in periods:
        end = r if r is not None else len(v) - 1
        rows.append(
            {
                "peak": days[p],
                "trough": days[t],
                "recovered": None if r is None else days[r],
                "depth": float(1.0 - v[t] / v[p]),
                "decline": t - p,
                "recovery": None if r is None else r - t,
                "length": end - p,
                "days": (days[end] - days[p]).days,
            }
        )
    rows.sort(key=lambda row: -row["depth"])
    return rows[:top]


def risk_cash_periods(
    daily: pd.DataFrame, max_exposure: float = CASH_EXPOSURE, min_level: int = CASH_LEVEL
) -> list[dict[str, Any]]:
    """The stretches the book sat in cash because of a risk level.

    A stretch is a run of consecutive sessions with ``exposure < max_exposure``; it is put
    down to the risk ladder when the level was at least ``min_level`` on one of its
    sessions (a halt's liquidation and the calm wait after the reset form one stretch;
    cash the strategy chose, e.g. before its first rebalance, is not listed).

    Parameters
    ----------
    daily : pd.DataFrame
        :attr:`BacktestResult.daily` (needs ``exposure`` and ``level``).

    Returns
    -------
    list of dict
        ``start, end`` (dates), ``sessions``, ``worst_level`` (int), ``reached`` (the
        first date at the worst level), ``ongoing`` (the run ends in the stretch).
    """
    if daily.empty:
        return []
    frame = _dated(daily[["exposure", "level"]])
    cash = (frame["exposure"].astype(float) < max_exposure).to_numpy()
    levels = pd.to_numeric(frame["level"], errors="coerce").fillna(0).astype(int).to_numpy()
    out = []
    i, n = 0, len(frame)
    while i < n:
        if not cash[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and cash[j + 1]:
            j += 1
        worst = int(levels[i : j + 1].max())
        if worst >= min_level:
            first = i + int(np.argmax(levels[i : j + 1] == worst))
            out.append(
                {
                    "start": frame.index[i].date(),
                    "end": frame.index[j].date(),
                    "sessions": j - i + 1,
                    "worst_level": worst,
                    "reached": frame.index[first].date(),
                    "ongoing": j == n - 1,
                }
            )
        i = j + 1
    return out


def cash_sentence(period: dict[str, Any], max_exposure: float = CASH_EXPOSURE) -> str:
    """One sentence for a :func:`risk_cash_periods` stretch."""
    level = period["worst_level"]
    meaning = LEVEL_MEANING.get(level, f"L{level}")
    until = " (to the end of the run)" if period["ongoing"] else ""
    return (
        f"From {period['start']} to {period['end']}{until}, {period['sessions']} session(s), "
        f"the book sat in cash (exposure below {max_exposure:.0%} of NAV) because of the "
        f"risk ladder: it reached {meaning} on {period['reached']}."
    )


def relative_metrics(run: BacktestResult, benchmark: BacktestResult) -> dict[str, float | None]:
    """The run against a benchmark over their common sessions.

    With ``r`` the run's and ``b`` the benchmark's daily returns (``NAV_t / NAV_{t-1} - 1``
    on the sessions both have): ``excess_return`` = the run's CAGR - the benchmark's
    (each from its own initial capital, :func:`tiller.backtest.metrics.headline`);
    ``tracking_error = std(r - b, ddof=1) * sqrt(252)``; ``beta`` = the run's beta to the
    benchmark ``cov(r, b) / var(b)``; ``correlation`` = Pearson's of ``r`` and ``b``.
    Each is None when undefined (fewer than 2 common returns, a flat benchmark).
    """
    a = _dated(run.daily["nav"].astype(float)) if len(run.daily) else pd.Series(dtype=float)
    b = (
        _dated(benchmark.daily["nav"].astype(float))
        if len(benchmark.daily)
        else pd.Series(dtype=float)
    )
    common = a.index.intersection(b.index)
    ra = a.reindex(common).pct_change().iloc[1:].to_numpy(dtype=float)
    rb = b.reindex(common).pct_change().iloc[1:].to_numpy(dtype=float)
    run_cagr, bench_cagr = run.metrics.get("cagr"), benchmark.metrics.get("cagr")
    out: dict[str, float | None] = {
        "excess_return": None
        if run_cagr is None or bench_cagr is None
        else float(run_cagr) - float(bench_cagr),
        "tracking_error": None,
        "beta": None,
        "correlation": None,
        "common_sessions": float(len(common)),
    }
    if len(ra) < 2:
        return out
    out["tracking_error"] = float(np.std(ra - rb, ddof=1) * math.sqrt(TRADING_DAYS))
    var_b, var_a = float(np.var(rb, ddof=1)), float(np.var(ra, ddof=1))
    cov = float(np.cov(ra, rb, ddof=1)[0, 1])
    if var_b > 1e-18:
        out["beta"] = cov / var_b
        if var_a > 1e-18:
            out["correlation"] = cov / math.sqrt(var_a * var_b)
    return out


_CONFIG_WORDS = {"close": "the close", "next_open": "the next session's open"}


def describe_config(config: dict[str, Any]) -> str:
    """A short description of a run's configuration (universe, cadence, weights, signals,
    fills) from :attr:`BacktestResult.config`; only those keys are read."""
    parts = []
    universe = config.get("universe")
    if isinstance(universe, list) and universe:
        shown = ", ".join(str(s) for s in universe[:6]) + (", ..." if len(universe) > 6 else "")
        parts.append(f"{len(universe)} symbol(s) ({shown})")
    if config.get("cadence"):
        parts.append(f"{config['cadence']} rebalancing")
    if config.get("method"):
        solver = f" ({config['solver']} solver)" if config.get("method") == "risk_parity" else ""
        parts.append(f"{config['method']} weights{solver}")
    if config.get("signals"):
        parts.append(f"signal rule {config['signals']}")
    if config.get("fill_price"):
        fill = _CONFIG_WORDS.get(str(config["fill_price"]), config["fill_price"])
        parts.append(f"fills at {fill}")
    if config.get("traded_price") == "adj_close":
        parts.append("dividend-adjusted prices")
    if config.get("warmup") is False:
        parts.append("no warm-up")
    return ", ".join(parts)


def profile_label(config: dict[str, Any]) -> str:
    """``profile trend-rp`` or ``default configuration`` (no profile recorded)."""
    profile = config.get("profile")
    return f"profile {profile}" if profile else "default configuration"


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


def _mark_cash(fig: go.Figure, cash: Sequence[dict[str, Any]]) -> None:
    """Shade each stretch the book sat in cash because of a risk level."""
    for period in cash:
        fig.add_vrect(
            x0=str(period["start"]),
            x1=str(period["end"]),
            fillcolor=LEVEL_COLOURS.get(f"L{period['worst_level']}", "#888"),
            opacity=0.15,
            line_width=0,
            annotation_text=f"cash (L{period['worst_level']})",
            annotation_position="top left",
        )


def _charts(
    result: BacktestResult,
    daily: pd.DataFrame,
    sharpe: pd.Series,
    trading: pd.DataFrame,
    cash: Sequence[dict[str, Any]] = (),
    benchmarks: Sequence[BenchmarkRun] = (),
) -> dict[str, Markup]:
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
        # the benchmarks come first on the page: their chart carries plotly.js
        others = [b.result for b in benchmarks if b.result is not None and len(b.result.daily)]
        if others:
            lines = [_line(f"This run ({profile_label(result.config)})", days, cum)]
            for b in benchmarks:
                if b.result is None or b.result.daily.empty:
                    continue
                bench = b.result.daily["nav"].astype(float) / b.result.initial_capital - 1.0
                lines.append(_line(b.profile, b.result.daily.index, bench))
            fig = go.Figure(lines)
            _mark_cash(fig, cash)
            add(
                "benchmarks",
                fig,
                "Cumulative return: this run and the benchmarks over the same window",
                n,
                yaxis_tickformat=".0%",
            )
        fig = go.Figure(
            _line(
                "Cumulative return",
                days,
                cum,
                customdata=nav.to_numpy(dtype=float),
                hovertemplate="%{y:.2%} (NAV $%{customdata:,.2f})<extra></extra>",
            )
        )
        _mark_cash(fig, cash)
        add(
            "returns",
            fig,
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
        months = pd.to_datetime(trading.index, format="%Y-%m").to_numpy(dtype="datetime64[D]")
        fig = go.Figure(
            [
                go.Bar(name="One-way", x=months, y=trading["turnover_one_way"].to_numpy()),
                go.Bar(
                    name="Cost drag (annualised)",
                    x=months,
                    y=trading["cost_drag"].to_numpy(),
                    visible="legendonly",
                ),
            ]
        )
        add(
            "turnover",
            fig,
            "Monthly turnover, one-way (each session's trades / NAV, halved); cost drag",
            len(trading),
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


_PATH = re.compile(r"(?<![\w.])/(?:[^\s/,;:()]+/)+")


def _no_paths(text: str) -> str:
    """``text`` with absolute folder paths cut down to ``.../`` (no local paths in a page)."""
    return _PATH.sub(".../", text)


_BENCHMARK_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("final_nav", "Final NAV", money),
    ("total_return", "Total return", pct),
    ("cagr", "Annual return (CAGR)", pct),
    ("volatility", "Annual volatility", pct),
    ("sharpe", "Sharpe", num),
    ("max_drawdown", "Max drawdown", pct),
    ("turnover_one_way", "Turnover, one-way (annualised)", pct),
    ("costs", "Costs", money),
    ("max_level", "Worst risk level", lambda v: NA if v is None else f"L{v}"),
)
_RELATIVE_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("excess_return", "Excess return: this run's CAGR - the benchmark's", pct),
    ("tracking_error", "Tracking error (annualised)", pct),
    ("beta", "Beta of this run to the benchmark", num),
    ("correlation", "Correlation of daily returns", num),
)


def _benchmark_table(
    result: BacktestResult, benchmarks: Sequence[BenchmarkRun] | None
) -> dict[str, Any] | None:
    """Columns (this run, then each benchmark that ran) and rows of formatted figures,
    plus the benchmarks that could not run and why; None without benchmarks."""
    if benchmarks is None:
        return None
    ran = [b for b in benchmarks if b.result is not None]
    columns = [
        {
            "name": "This run",
            "label": profile_label(result.config),
            "config": describe_config(result.config),
            "run_id": result.run_id,
            "cached": False,
        }
    ] + [
        {
            "name": b.profile,
            "label": profile_label(b.result.config),
            "config": describe_config(b.result.config),
            "run_id": b.result.run_id,
            "cached": b.cached,
        }
        for b in ran
        if b.result is not None
    ]
    rows = []
    for key, label, fmt in _BENCHMARK_ROWS:
        cells = [fmt(result.metrics.get(key))]
        cells += [fmt(b.result.metrics.get(key)) for b in ran if b.result is not None]
        rows.append({"label": label, "cells": cells})
    relative = [relative_metrics(result, b.result) for b in ran if b.result is not None]
    for key, label, fmt in _RELATIVE_ROWS:
        rows.append({"label": label, "cells": ["", *[fmt(r[key]) for r in relative]]})
    missing = [
        {"profile": b.profile, "reason": _no_paths(b.reason or "did not run")}
        for b in benchmarks
        if b.result is None
    ]
    return {"columns": columns, "rows": rows, "missing": missing, "ran": len(ran)}


def _period_rows(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **p,
            "depth_text": pct(p["depth"]),
            "recovered_text": "not recovered" if p["recovered"] is None else str(p["recovered"]),
            "recovery_text": NA if p["recovery"] is None else str(p["recovery"]),
        }
        for p in periods
    ]


def render_tearsheet(
    result: BacktestResult,
    crisis_windows: Sequence[tuple[str, date, date]] = DEFAULT_CRISIS_WINDOWS,
    benchmarks: Sequence[BenchmarkRun] | None = None,
) -> str:
    """One self-contained HTML page (plotly.js inline once) describing a backtest.

    Parameters
    ----------
    result : BacktestResult
        The run to describe.
    crisis_windows : sequence of (name, start, end)
        Windows (inclusive calendar days) reported in the crisis section; those without
        a session in the backtest are listed as not in range.
    benchmarks : sequence of BenchmarkRun, optional
        The reference strategies over the same window, run by the service layer
        (:func:`tiller.backtest.service.benchmark_runs`); their NAV is overlaid on the
        run's and their figures set side by side (with the run's excess return, tracking
        error and beta, :func:`relative_metrics`).  A benchmark without a run is named with
        the reason.  None: the page says benchmarks were not computed.

    Returns
    -------
    str
        The HTML document.
    """
    daily = _dated(result.daily)
    cash = risk_cash_periods(daily)
    sharpe = rolling_sharpe(daily["nav"]) if len(daily) else pd.Series(dtype=float)
    trading = (
        monthly_trading(daily["nav"], daily["traded"], daily["commission"] + daily["slippage"])
        if len(daily)
        else pd.DataFrame()
    )
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
        profile=profile_label(result.config),
        configuration=describe_config(result.config),
        charts=_charts(result, daily, sharpe, trading, cash, benchmarks or ()),
        benchmarks=_benchmark_table(result, benchmarks),
        drawdown_periods=_period_rows(drawdown_periods(daily["nav"])) if len(daily) else [],
        cash_periods=[cash_sentence(p) for p in cash],
        months=MONTHS,
        monthly=_monthly_rows(monthly_returns(daily["nav"], result.initial_capital)),
        turnover=yearly_trading(trading),
        costs=costs,
        events=_events(result.risk_events),
        events_total=len(result.risk_events),
        events_shown=EVENTS_SHOWN,
        crises=_crisis_rows(result, daily, crisis_windows),
    )
