"""Per-asset factors (SPEC stage 3), computed once over the whole history.

:func:`factor_panel` turns long daily bars into a panel indexed by
``(date, symbol)`` with one column per factor; :func:`factors_at` cuts the
panel at an ``as_of`` date into a :class:`FactorSnapshot` (each symbol's last
row on or before ``as_of``, the cross-sectional 12-1 momentum rank, and the
reason for every factor a symbol lacks).  Every factor at row *t* uses rows
``<= t`` of the same symbol only, so slicing the panel at a date gives exactly
what a run on that date would have computed: no look-ahead.

Prices
------
All factors use **adjusted** prices, consistently: ``P = adj_close`` (``close``
where ``adj_close`` is NaN), and ``open``/``high``/``low`` are scaled by the
same per-row factor ``adj_close / close``.  So split and dividend gaps do not
show up as returns or true ranges, and ``atr_{n}`` and the SMAs are in the same
units as the ``close`` column (the adjusted close), so ``close > sma_200`` and
``atr_14 / close`` are meaningful.

Windows
-------
A window ``n`` is ``n`` sessions of the window calendar (``window_calendar``, XNYS) and
means the same span of time for every asset: an asset on another calendar uses
``round(n * A_asset / A_window)`` of its own bars (:meth:`FactorConfig.bars_for`), so a
24/7 asset's ``momentum_12_1`` spans 365 - 30 days, like an ETF's 252 - 21 sessions.
The factor names keep ``n`` (``sma_200`` is 290 daily bars of BTC-USD).  Below, ``n``
stands for the scaled count.

Factors (``n`` from :class:`~tiller.settings.FactorConfig`)
-----------------------------------------------------------
``close``
    ``P_t``, the adjusted close (USD).
``momentum_{n}``
    ``P_t / P_{t-n} - 1`` (fraction; needs ``n + 1`` bars).
``volatility_{n}``
    ``std(r_{t-n+1..t}, ddof=1) * sqrt(A)`` with ``r_t = P_t / P_{t-1} - 1`` and
    ``A`` the calendar's periods per year (252 XNYS, 365 24/7); annualised
    fraction; needs ``n + 1`` bars.
``sma_{n}``
    ``mean(P_{t-n+1..t})`` (USD; needs ``n`` bars).
``rsi_{n}``
    pandas-ta ``rsi`` on ``P``: Wilder smoothing ``RMA`` (EWM, ``alpha = 1/n``,
    ``adjust=False``, started at the first price change) of gains ``U`` and
    losses ``D``; ``RSI = 100 * RMA(U) / (RMA(U) + RMA(D))`` in [0, 100].  Blank
    for the first ``n`` rows (needs ``n + 1`` bars); undefined (NaN) for a flat
    series.
``atr_{n}``
    Wilder's average true range (USD): ``TR_t = max(H_t - L_t, |H_t - P_{t-1}|,
    |L_t - P_{t-1}|)`` (``TR_0 = H_0 - L_0``), seeded with ``mean(TR_0..TR_{n-1})``
    at row ``n - 1`` and smoothed with pandas-ta ``rma`` (``ATR_t = ATR_{t-1} +
    (TR_t - ATR_{t-1}) / n``) -- the same numbers as pandas-ta ``atr`` (whose
    default is this SMA-seeded RMA).  The true range is computed here rather
    than with pandas-ta ``true_range`` because that adds machine epsilon to
    *every* bar when *any* bar of the series has ``high == low``, which would
    let a later bar change earlier values.  Needs ``n`` bars.
``momentum_12_1``
    ``(P_t / P_{t-L} - 1) - (P_t / P_{t-S} - 1)`` with ``L = momentum_long``
    (252) and ``S = momentum_skip`` (21): the 12-month return minus the last
    month's (fraction; needs ``L + 1`` bars).

:func:`factors_at` adds ``momentum_12_1_rank``: the cross-sectional percentile
rank (``pandas.Series.rank(pct=True)``, ties averaged) of ``momentum_12_1``
among the symbols that have it, in (0, 1], 1 = strongest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from tiller.settings import FactorConfig

MOMENTUM_12_1 = "momentum_12_1"
RANK = "momentum_12_1_rank"
CLOSE = "close"
PERIODS_PER_YEAR = "periods_per_year"
"""Bookkeeping column of the panel (not a factor): the symbol's annualisation."""
BOOKKEEPING: tuple[str, ...] = (PERIODS_PER_YEAR,)
MIN_HISTORY_ATTR = "min_history"
"""``panel.attrs`` key: factor -> window-calendar bars of history it needs (used for the
missing reasons; scaled to each symbol's calendar by its periods per year)."""
NEED_BY_PERIODS_ATTR = "min_history_by_periods"
"""``panel.attrs`` key: periods per year -> (factor -> bars needed on that calendar)."""
WINDOW_PERIODS_ATTR = "window_periods_per_year"
"""``panel.attrs`` key: periods per year of the window calendar (252 for XNYS)."""

_PANEL_INDEX = ["date", "symbol"]
_NEEDED = ("symbol", "date", "high", "low", "close")


@dataclass(frozen=True, eq=False)
class FactorSnapshot:
    """Every symbol's factors as of one date.

    Attributes
    ----------
    as_of:
        The cut-off date: nothing dated later influenced any number here.
    values:
        Long frame with columns ``symbol, factor, value`` (float): each symbol's
        last panel row on or before ``as_of``, NaN factors dropped, plus the
        ``momentum_12_1_rank`` rows.  Never contains NaN.
    missing:
        Frame with columns ``symbol, factor, reason``: one row for every factor
        a symbol lacks, e.g. ``needs 253 sessions of history, has 180``.
    bar_dates:
        Symbol -> date of the row the values come from (may precede ``as_of``
        for a symbol whose data stopped, or on a day its market was closed).
    history:
        Symbol -> number of its bars on or before ``as_of``.
    periods_per_year:
        Symbol -> annualisation used for its volatilities (252 XNYS, 365 24/7).
    window_periods:
        Periods per year of the window calendar: a window of ``n`` sessions spans
        ``n / window_periods`` years for every symbol.
    """

    as_of: date
    values: pd.DataFrame
    missing: pd.DataFrame
    bar_dates: Mapping[str, date]
    history: Mapping[str, int]
    periods_per_year: Mapping[str, int]
    window_periods: int = 252

    @property
    def symbols(self) -> tuple[str, ...]:
        """All symbols with at least one bar on or before ``as_of`` (sorted)."""
        return tuple(sorted(self.bar_dates))

    @cached_property
    def _lookup(self) -> dict[tuple[str, str], float]:
        return {
            (s, f): float(v)
            for s, f, v in zip(
                self.values["symbol"], self.values["factor"], self.values["value"], strict=True
            )
        }

    @cached_property
    def _reasons(self) -> dict[tuple[str, str], str]:
        return {
            (s, f): str(r)
            for s, f, r in zip(
                self.missing["symbol"], self.missing["factor"], self.missing["reason"], strict=True
            )
        }

    def value(self, symbol: str, factor: str) -> float | None:
        """The factor's value for ``symbol``, or None when it is missing."""
        return self._lookup.get((symbol, factor))

    def missing_reason(self, symbol: str, factor: str) -> str | None:
        """Why ``symbol`` lacks ``factor`` (None when it has it or the factor is unknown)."""
        return self._reasons.get((symbol, factor))

    @cached_property
    def _by_symbol(self) -> dict[str, dict[str, float]]:
        grouped: dict[str, dict[str, float]] = {}
        for (symbol, factor), value in self._lookup.items():
            grouped.setdefault(symbol, {})[factor] = value
        return grouped

    def factors_of(self, symbol: str) -> dict[str, float]:
        """All factors ``symbol`` has, as a dict (a copy)."""
        return dict(self._by_symbol.get(symbol, {}))

    @property
    def rank(self) -> pd.Series:
        """``momentum_12_1_rank`` by symbol (only the symbols that have it)."""
        rows = self.values[self.values["factor"] == RANK]
        return pd.Series(
            rows["value"].to_numpy(dtype=float), index=rows["symbol"].to_numpy(), name=RANK
        )

    def wide(self) -> pd.DataFrame:
        """Symbols x factors (NaN where missing), for display and notebooks."""
        if self.values.empty:
            return pd.DataFrame()
        return self.values.pivot(index="symbol", columns="factor", values="value")


def min_history(config: FactorConfig, calendar: str | None = None) -> dict[str, int]:
    """Bars of history each factor needs before its first value (see the module docstring).

    Parameters
    ----------
    config:
        The factor windows.
    calendar:
        The asset's calendar (default: the window calendar); windows are scaled to it.

    Returns
    -------
    dict
        Factor name -> minimum number of the symbol's bars (including the current one).
    """
    cal = calendar or config.window_calendar

    def bars(n: int) -> int:
        return config.bars_for(n, cal)

    need: dict[str, int] = {CLOSE: 1}
    for n in config.momentum_windows:
        need[f"momentum_{n}"] = bars(n) + 1
    for n in config.volatility_windows:
        need[f"volatility_{n}"] = bars(n) + 1
    for n in config.sma_windows:
        need[f"sma_{n}"] = bars(n)
    need[f"rsi_{config.rsi_window}"] = bars(config.rsi_window) + 1
    need[f"atr_{config.atr_window}"] = bars(config.atr_window)
    need[MOMENTUM_12_1] = bars(config.momentum_long) + 1
    return need


def factor_panel(
    bars: pd.DataFrame, config: FactorConfig, calendar_of: Mapping[str, str]
) -> pd.DataFrame:
    """Compute every factor for every symbol over its whole history.

    Parameters
    ----------
    bars:
        Long daily bars: columns ``symbol, date`` (datetime64, session date),
        ``open, high, low, close`` (USD), ``adj_close`` (USD, split- and
        dividend-adjusted; NaN or absent -> ``close``) and ``volume`` (unused).
        One row per (symbol, date); any order.
    config:
        Windows in sessions of each symbol's calendar and the annualisation
        ``periods_per_year`` per calendar name.
    calendar_of:
        Symbol -> calendar name (``"XNYS"``, ``"24/7"``); every symbol in
        ``bars`` must be present and its calendar in ``config.periods_per_year``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(date, symbol)``, sorted; float columns ``close`` (the
        adjusted close used), ``momentum_{n}``, ``volatility_{n}``, ``sma_{n}``,
        ``rsi_{n}``, ``atr_{n}``, ``momentum_12_1`` (NaN until a symbol has the
        history a factor needs) and the bookkeeping column ``periods_per_year``
        (int).  ``panel.attrs["min_history"]`` maps each factor to the bars it
        needs.

    Raises
    ------
    ValueError
        A needed column is missing, a (symbol, date) pair is duplicated, or a
        symbol has no known calendar.
    """
    absent = [c for c in _NEEDED if c not in bars.columns]
    if absent:
        raise ValueError(
            f"bars lack column(s) {', '.join(absent)}; expected symbol, date, open, high, low, "
            "close, adj_close, volume"
        )
    need = min_history(config)
    factor_names = list(need)
    columns = [*factor_names, PERIODS_PER_YEAR]
    if bars.empty:
        empty = pd.DataFrame(
            {c: pd.Series(dtype=float) for c in factor_names}
            | {PERIODS_PER_YEAR: pd.Series(dtype=int)},
            index=pd.MultiIndex.from_arrays(
                [pd.DatetimeIndex([]), pd.Index([], dtype=object)], names=_PANEL_INDEX
            ),
        )
        empty.attrs[MIN_HISTORY_ATTR] = need
        return empty
    duplicated = bars.duplicated(subset=["symbol", "date"])
    if duplicated.any():
        row = bars.loc[duplicated].iloc[0]
        raise ValueError(f"bars have more than one row for {row['symbol']} on {row['date']}")

    import pandas_ta as ta  # slow import (~1.5 s, numba): only when factors are computed

    frames = []
    for symbol, group in bars.groupby("symbol", sort=True):
        symbol = str(symbol)
        calendar = calendar_of.get(symbol)
        if calendar is None:
            raise ValueError(
                f"no calendar for {symbol}: pass calendar_of[{symbol!r}] "
                f"(one of {', '.join(config.periods_per_year)})"
            )
        if calendar not in config.periods_per_year:
            raise ValueError(
                f"{symbol}: calendar {calendar!r} has no periods_per_year in the factor "
                f"config (known: {', '.join(config.periods_per_year)})"
            )
        group = group.sort_values("date")
        periods = config.periods_per_year[calendar]
        frame = _symbol_factors(group, config, calendar, ta)
        frame[PERIODS_PER_YEAR] = periods
        frame.insert(0, "symbol", symbol)
        frame.insert(0, "date", pd.DatetimeIndex(group["date"]).as_unit("ns"))
        frames.append(frame)
    panel = pd.concat(frames, ignore_index=True).set_index(_PANEL_INDEX).sort_index()
    panel = panel[columns]
    panel.attrs[MIN_HISTORY_ATTR] = need
    panel.attrs[WINDOW_PERIODS_ATTR] = config.periods_per_year[config.window_calendar]
    panel.attrs[NEED_BY_PERIODS_ATTR] = {
        p: min_history(config, c) for c, p in config.periods_per_year.items()
    }
    return panel


def _symbol_factors(
    group: pd.DataFrame, config: FactorConfig, calendar: str, ta: Any
) -> pd.DataFrame:
    """Factors of one symbol's bars (rows in date order), on a RangeIndex; windows scaled
    to the symbol's calendar, columns named by the window-calendar sessions."""
    periods_per_year = config.periods_per_year[calendar]

    def bars(n: int) -> int:
        return config.bars_for(n, calendar)

    raw_close = pd.Series(group["close"].to_numpy(dtype=float))
    if "adj_close" in group.columns:
        price = pd.Series(group["adj_close"].to_numpy(dtype=float)).fillna(raw_close)
    else:
        price = raw_close.copy()
    scale = price / raw_close  # adjustment factor of the row (1 when unadjusted)
    high = pd.Series(group["high"].to_numpy(dtype=float)) * scale
    low = pd.Series(group["low"].to_numpy(dtype=float)) * scale
    n_rows = len(price)

    out: dict[str, pd.Series] = {CLOSE: price}
    for w in config.momentum_windows:
        out[f"momentum_{w}"] = price / price.shift(bars(w)) - 1.0
    returns = price / price.shift(1) - 1.0
    for w in config.volatility_windows:
        n = bars(w)
        out[f"volatility_{w}"] = returns.rolling(n, min_periods=n).std(ddof=1) * math.sqrt(
            periods_per_year
        )
    for w in config.sma_windows:
        n = bars(w)
        out[f"sma_{w}"] = price.rolling(n, min_periods=n).mean()

    n = bars(config.rsi_window)
    rsi = ta.rsi(price, length=n) if n_rows > n else None
    rsi = _blank(rsi, n_rows)
    rsi.iloc[:n] = np.nan  # fewer than n price changes: not an RSI yet
    out[f"rsi_{config.rsi_window}"] = rsi

    n = bars(config.atr_window)
    previous = price.shift(1)
    true_range = pd.concat(
        [high - low, (high - previous).abs(), (low - previous).abs()], axis=1
    ).max(axis=1, skipna=False)
    if n_rows:
        true_range.iloc[0] = high.iloc[0] - low.iloc[0]
    atr = None
    if n_rows >= n:
        seeded = true_range.copy()
        seed = seeded.iloc[:n].mean()
        seeded.iloc[: n - 1] = np.nan
        seeded.iloc[n - 1] = seed
        atr = ta.rma(seeded, length=n)
    out[f"atr_{config.atr_window}"] = _blank(atr, n_rows)

    long, skip = bars(config.momentum_long), bars(config.momentum_skip)
    out[MOMENTUM_12_1] = (price / price.shift(long) - 1.0) - (price / price.shift(skip) - 1.0)
    frame = pd.DataFrame({k: v.to_numpy(dtype=float) for k, v in out.items()})
    return frame


def _blank(series: pd.Series | None, n_rows: int) -> pd.Series:
    """``series`` as a float Series on a RangeIndex, or all-NaN when pandas-ta returned None."""
    if series is None:
        return pd.Series(np.full(n_rows, np.nan))
    return pd.Series(series.to_numpy(dtype=float))


_NAME_NEED = (
    (re.compile(r"^momentum_(\d+)$"), 1),
    (re.compile(r"^volatility_(\d+)$"), 1),
    (re.compile(r"^sma_(\d+)$"), 0),
    (re.compile(r"^rsi_(\d+)$"), 1),
    (re.compile(r"^atr_(\d+)$"), 0),
)


def _need_from_name(factor: str) -> int | None:
    """Fallback when ``panel.attrs`` was lost: the history a factor needs, from its name."""
    if factor == CLOSE:
        return 1
    for pattern, extra in _NAME_NEED:
        match = pattern.match(factor)
        if match:
            return int(match.group(1)) + extra
    return None


def factors_at(panel: pd.DataFrame, as_of: date, exclude: Collection[str] = ()) -> FactorSnapshot:
    """Cut the panel at ``as_of``: each symbol's last row on or before it, ranked.

    Parameters
    ----------
    panel:
        The output of :func:`factor_panel` (or any date slice of it).
    as_of:
        The run date; rows dated after it are ignored entirely.
    exclude:
        Symbols left out of the snapshot and the ranking (e.g. delisted: their data ended).

    Returns
    -------
    FactorSnapshot
        ``values`` without NaN (plus ``momentum_12_1_rank``, the percentile rank
        of ``momentum_12_1`` across the symbols that have it), and one
        ``missing`` row with a reason for every factor a symbol lacks.
    """
    cut = pd.Timestamp(as_of)
    need = dict(panel.attrs.get(MIN_HISTORY_ATTR, {}))
    index = panel.index
    if not isinstance(index, pd.MultiIndex) or list(index.names) != _PANEL_INDEX:
        raise ValueError("the panel must be indexed by (date, symbol), as factor_panel returns it")
    if not index.is_monotonic_increasing:
        panel = panel.sort_index()
        index = panel.index
    assert isinstance(index, pd.MultiIndex)
    # Rows dated <= as_of are a prefix of the (date, symbol)-sorted panel.
    n = int(index.get_level_values(0).searchsorted(cut, side="right"))
    codes = np.asarray(index.codes[1][:n])
    levels = index.levels[1]
    counts_by_code = np.bincount(codes, minlength=len(levels))
    present_codes, first_from_end = np.unique(codes[::-1], return_index=True)
    last_rows = n - 1 - first_from_end  # each symbol's last row on or before as_of
    by_name = sorted(
        (name, row)
        for name, row in zip([str(levels[c]) for c in present_codes], last_rows, strict=True)
        if name not in exclude
    )
    symbols = [name for name, _ in by_name]
    rows = panel.iloc[[int(row) for _, row in by_name]]
    factor_names = [c for c in panel.columns if c not in BOOKKEEPING]
    block = rows[factor_names].to_numpy(dtype=float)
    row_dates = rows.index.get_level_values(0)
    bar_dates = {s: pd.Timestamp(d).date() for s, d in zip(symbols, row_dates, strict=True)}
    counts = {str(levels[c]): int(counts_by_code[c]) for c in present_codes if counts_by_code[c]}
    periods = (
        {s: int(p) for s, p in zip(symbols, rows[PERIODS_PER_YEAR], strict=True)}
        if PERIODS_PER_YEAR in rows.columns
        else {}
    )

    by_periods = panel.attrs.get(NEED_BY_PERIODS_ATTR, {})

    def need_of(symbol: str) -> Mapping[str, int]:
        return by_periods.get(periods.get(symbol), need)

    ranks: dict[str, float] = {}
    if MOMENTUM_12_1 in factor_names:
        m121 = pd.Series(block[:, factor_names.index(MOMENTUM_12_1)], index=symbols).dropna()
        ranks = {str(s): float(r) for s, r in m121.rank(pct=True).items()}

    out_symbols: list[str] = []
    out_factors: list[str] = []
    out_values: list[float] = []
    reasons: list[tuple[str, str, str]] = []
    for i, symbol in enumerate(symbols):
        for j, factor in enumerate(factor_names):
            value = block[i, j]
            if np.isnan(value):
                reasons.append(
                    (symbol, factor, _reason(factor, need_of(symbol), counts, bar_dates, symbol))
                )
            else:
                out_symbols.append(symbol)
                out_factors.append(factor)
                out_values.append(float(value))
        if symbol in ranks:
            out_symbols.append(symbol)
            out_factors.append(RANK)
            out_values.append(ranks[symbol])
        elif MOMENTUM_12_1 in factor_names:
            why = _reason(MOMENTUM_12_1, need_of(symbol), counts, bar_dates, symbol)
            reasons.append((symbol, RANK, f"no {MOMENTUM_12_1} to rank ({why})"))
    values = pd.DataFrame(
        {
            "symbol": pd.Series(out_symbols, dtype=object),
            "factor": pd.Series(out_factors, dtype=object),
            "value": pd.Series(out_values, dtype=float),
        }
    )
    missing = pd.DataFrame(reasons, columns=["symbol", "factor", "reason"], dtype=object)
    return FactorSnapshot(
        as_of=cut.date(),
        values=values,
        missing=missing,
        bar_dates=bar_dates,
        history=counts,
        periods_per_year=periods,
        window_periods=int(panel.attrs.get(WINDOW_PERIODS_ATTR, 252)),
    )


def _reason(
    factor: str,
    need: Mapping[str, int],
    counts: Mapping[str, int],
    bar_dates: Mapping[str, date],
    symbol: str,
) -> str:
    required = need.get(factor) or _need_from_name(factor)
    has = counts.get(symbol, 0)
    if required is not None and has < required:
        return f"needs {required} sessions of history, has {has}"
    return (
        f"undefined on {bar_dates[symbol].isoformat()} with {has} sessions of history "
        "(a missing or non-positive price in its window, or flat prices)"
    )


@dataclass(frozen=True, eq=False)
class FactorArrays:
    """Every factor of every symbol as of each of ``days``, as ``(days, symbols)`` arrays:
    the values :func:`factors_at` gives on each day, computed for all days at once.

    Attributes
    ----------
    days:
        The cut-off dates (``datetime64[D]``).
    symbols:
        The columns.
    values:
        Factor name -> array; NaN where the symbol's last row on or before the day lacks
        the factor, or the symbol has no row yet.
    rank:
        ``momentum_12_1_rank`` among the symbols present that have ``momentum_12_1``.
    present:
        The symbol has a row on or before the day (and is not excluded).
    history:
        The number of the symbol's rows on or before the day.
    """

    days: np.ndarray
    symbols: tuple[str, ...]
    values: Mapping[str, np.ndarray]
    rank: np.ndarray
    present: np.ndarray
    history: np.ndarray


def factor_arrays(
    panel: pd.DataFrame,
    days: Sequence[date],
    symbols: Sequence[str],
    excluded: np.ndarray | None = None,
) -> FactorArrays:
    """:func:`factors_at` for every day at once (each symbol's last row on or before the
    day, the 12-1 rank across the symbols present), as arrays.

    ``excluded`` (``(days, symbols)`` bool) leaves a symbol out of a day's snapshot and
    ranking, as ``factors_at(..., exclude=...)`` does (delisted symbols).
    """
    wanted = np.array(days, dtype="datetime64[D]")
    factor_names = [c for c in panel.columns if c not in BOOKKEEPING]
    out = {f: np.full((len(wanted), len(symbols)), np.nan) for f in factor_names}
    history = np.zeros((len(wanted), len(symbols)), dtype=int)
    if not panel.index.is_monotonic_increasing:
        panel = panel.sort_index()
    by_symbol = panel.reset_index(level=0).groupby(level=0, sort=False)
    groups = {str(s): g for s, g in by_symbol}
    for j, symbol in enumerate(symbols):
        group = groups.get(symbol)
        if group is None:
            continue
        row_days = group["date"].to_numpy().astype("datetime64[D]")
        count = np.searchsorted(row_days, wanted, side="right")
        history[:, j] = count
        has = count > 0
        rows = np.where(has, count - 1, 0)
        for factor in factor_names:
            column = group[factor].to_numpy(dtype=float)
            out[factor][:, j] = np.where(has, column[rows], np.nan)
    present = history > 0
    if excluded is not None:
        present &= ~excluded
        for factor in factor_names:
            out[factor][~present] = np.nan
    m121 = out.get(MOMENTUM_12_1)
    rank = np.full((len(wanted), len(symbols)), np.nan)
    if m121 is not None:
        rank = pd.DataFrame(np.where(present, m121, np.nan)).rank(axis=1, pct=True).to_numpy()
    return FactorArrays(wanted, tuple(symbols), out, rank, present, history)
