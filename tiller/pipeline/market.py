"""A universe's daily bars as aligned arrays: the input every stage function reads.

The daily flow builds a :class:`Market` from its window of stored bars, the backtest
from the whole history; both then call the same stage functions on it.  Arrays are
``(dates, symbols)``: one row per date on which any symbol has a bar (``grid``), one
column per symbol (``symbols``), NaN where a symbol has no bar that day.

Derived once (cached), with the values the former per-date code computed:

* ``price``: the adjusted close, else the close (:func:`tiller.portfolio.returns.price_matrix`);
* ``mark``: the last close on or before each date (carried forward);
* ``returns``: daily simple returns on exchange sessions
  (:func:`tiller.portfolio.returns.session_returns`);
* ``dividends``: the cash dividends the adjusted close implies
  (:func:`tiller.execution.dividends.implied_dividends`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property

import numpy as np
import pandas as pd

from tiller.portfolio.returns import session_returns


def dividend_adjusted(bars: pd.DataFrame) -> pd.DataFrame:
    """Long bars restated in dividend-adjusted terms (``backtest.traded_price: adj_close``).

    Per row, with ``k = adj_close / close`` (1 where ``adj_close`` is missing):
    ``open``, ``high``, ``low`` and ``close`` are multiplied by ``k`` (so ``close`` becomes
    ``adj_close``) and ``volume`` divided by it (the traded dollar value is unchanged).
    Then ``close == adj_close`` everywhere, so no separate cash dividend is implied: the
    adjusted series already holds them.
    """
    factor = (bars["adj_close"] / bars["close"]).where(bars["adj_close"].notna(), 1.0)
    out = bars.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = bars[column] * factor
    out["adj_close"] = out["close"]
    out["volume"] = bars["volume"] / factor
    return out


@dataclass(frozen=True, eq=False)
class Market:
    """Bars of a universe and the volatility index, aligned on one date grid.

    Attributes
    ----------
    symbols:
        The universe symbols that have at least one bar, in universe order.
    calendars:
        Symbol -> exchange calendar (``XNYS``, ``24/7``).
    frames:
        Wide frames (index: ``grid`` as timestamps; columns: ``symbols``) of ``open``,
        ``high``, ``low``, ``close``, ``adj_close`` and ``volume``.
    vix:
        The volatility index: ``date`` (timestamp) and ``close``, sorted.
    """

    symbols: tuple[str, ...]
    calendars: Mapping[str, str]
    frames: Mapping[str, pd.DataFrame]
    vix: pd.DataFrame

    @classmethod
    def from_bars(
        cls,
        bars: pd.DataFrame,
        vix: pd.DataFrame,
        symbols: Sequence[str],
        calendars: Mapping[str, str],
    ) -> Market:
        """Pivot long bars (``symbol, date, open, high, low, close, adj_close, volume``)."""
        present = set(bars["symbol"].unique()) if len(bars) else set()
        kept = tuple(s for s in symbols if s in present)
        wide = bars.pivot(
            index="date",
            columns="symbol",
            values=["open", "high", "low", "close", "adj_close", "volume"],
        ).sort_index()
        frames = {
            column: wide[column].reindex(columns=list(kept))
            for column in ("open", "high", "low", "close", "adj_close", "volume")
        }
        vix_frame = vix[["date", "close"]].dropna(subset=["close"]).copy()
        vix_frame["date"] = pd.to_datetime(vix_frame["date"])
        vix_frame = vix_frame.sort_values("date").reset_index(drop=True)
        return cls(kept, {s: calendars[s] for s in kept}, frames, vix_frame)

    # ------------------------------------------------------------------ the grid
    @cached_property
    def grid(self) -> pd.DatetimeIndex:
        """Every date on which any symbol has a bar, ascending."""
        return pd.DatetimeIndex(self.frames["close"].index)

    @cached_property
    def grid_days(self) -> np.ndarray:
        """``grid`` as ``datetime64[D]`` (for ``searchsorted`` by day)."""
        return self.grid.values.astype("datetime64[D]")

    def row(self, day: date) -> int:
        """The grid row of the last date on or before ``day`` (-1 before the first)."""
        return int(np.searchsorted(self.grid_days, np.datetime64(day, "D"), side="right")) - 1

    def column(self, symbol: str) -> int:
        return self.symbols.index(symbol)

    # ------------------------------------------------------------- derived arrays
    def values(self, field: str) -> np.ndarray:
        """``(grid, symbols)`` float array of ``open``/``high``/``low``/``close``/
        ``adj_close``/``volume``."""
        return self._values[field]

    @cached_property
    def _values(self) -> dict[str, np.ndarray]:
        return {k: v.to_numpy(dtype=float) for k, v in self.frames.items()}

    @cached_property
    def price(self) -> pd.DataFrame:
        """The traded price: the adjusted close, else the close (wide, on ``grid``)."""
        return self.frames["adj_close"].where(
            self.frames["adj_close"].notna(), self.frames["close"]
        )

    @cached_property
    def mark(self) -> np.ndarray:
        """The last close on or before each grid date (carried forward)."""
        return self.frames["close"].ffill().to_numpy(dtype=float)

    @cached_property
    def returns(self) -> pd.DataFrame:
        """Daily simple returns on exchange sessions (rows: sessions; see
        :func:`~tiller.portfolio.returns.session_returns`)."""
        return session_returns(self.price, self.calendars)

    @cached_property
    def returns_values(self) -> np.ndarray:
        return self.returns.to_numpy(dtype=float)

    @cached_property
    def returns_days(self) -> np.ndarray:
        return self.returns.index.values.astype("datetime64[D]")

    def returns_rows(self, day: date) -> int:
        """Number of session-return rows dated on or before ``day``."""
        return int(np.searchsorted(self.returns_days, np.datetime64(day, "D"), side="right"))

    @cached_property
    def dividends(self) -> np.ndarray:
        """Cash dividends per share (USD) on their ex-dates, ``(grid, symbols)``."""
        from tiller.execution.dividends import implied_dividends

        return implied_dividends(self.frames["close"], self.frames["adj_close"]).to_numpy(
            dtype=float
        )

    @cached_property
    def bar_rows(self) -> dict[str, np.ndarray]:
        """Symbol -> the grid rows on which it has a bar, ascending."""
        close = self.values("close")
        return {s: np.flatnonzero(~np.isnan(close[:, j])) for j, s in enumerate(self.symbols)}

    @cached_property
    def vix_days(self) -> np.ndarray:
        return self.vix["date"].values.astype("datetime64[D]")

    @cached_property
    def vix_close(self) -> np.ndarray:
        return self.vix["close"].to_numpy(dtype=float)

    def vix_on(self, day: date) -> float | None:
        """The last VIX close on or before ``day`` (None before the first)."""
        i = int(np.searchsorted(self.vix_days, np.datetime64(day, "D"), side="right")) - 1
        return float(self.vix_close[i]) if i >= 0 else None
