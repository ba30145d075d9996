"""The one interface every data provider implements.

A provider answers one question: *give me this series between these two
dates*.  It returns a DataFrame in a canonical shape (see :data:`BAR_COLUMNS`
and :data:`MACRO_COLUMNS`) or raises :class:`ProviderError` with a kind that
tells the fallback chain whether trying again later makes sense.

Canonical shapes
----------------
Bars (``SeriesKind.BAR``): one row per session, columns
``date, open, high, low, close, adj_close, volume``; ``date`` is a
timezone-naive ``datetime64[ns]`` at midnight (the session date), prices in
the instrument's quote currency (USD), ``adj_close`` split- and
dividend-adjusted where the source provides it (else equal to ``close``),
``volume`` in shares/units (NaN for an index such as VIX).

Macro (``SeriesKind.MACRO``): one row per observation, columns
``date, value``; ``value`` is float and NaN where the source has no
observation (FRED holiday placeholders).

Rows are sorted by date, unique, and never later than ``request.end``.
An empty frame (with the canonical columns) means "the source has no rows in
that window"; it is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Protocol, runtime_checkable

import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("date", "open", "high", "low", "close", "adj_close", "volume")
MACRO_COLUMNS: tuple[str, ...] = ("date", "value")


class SeriesKind(StrEnum):
    """What a series is: daily OHLCV bars, or a macro-economic observation series."""

    BAR = "bar"
    MACRO = "macro"


@dataclass(frozen=True)
class SeriesRequest:
    """A request for one series over an inclusive date window.

    Attributes
    ----------
    series:
        Tiller's canonical name: a universe symbol (``SPY``, ``BTC-USD``),
        ``VIX`` for the CBOE volatility index, or a FRED series id (``DGS10``).
        Providers map it to their own ticker (``^VIX``, ``X:BTCUSD``...).
    kind:
        Bars or macro observations.
    start, end:
        Inclusive session dates. ``end`` is the run's ``as_of``: a provider
        must never return a row after it.
    """

    series: str
    kind: SeriesKind
    start: date
    end: date


class ProviderErrorKind(StrEnum):
    """Why a fetch failed; drives retry and circuit-breaker decisions."""

    AUTH = "auth"  # 401/403, missing or wrong key: retrying will not help
    RATE_LIMIT = "rate_limit"  # 429
    SERVER = "server"  # 5xx
    TIMEOUT = "timeout"
    NETWORK = "network"  # connection refused, DNS, TLS
    NOT_FOUND = "not_found"  # unknown ticker / series
    BAD_DATA = "bad_data"  # the payload or file is malformed
    UNSUPPORTED = "unsupported"  # the provider cannot serve this series at all

    @property
    def transient(self) -> bool:
        """True when the same call may succeed later (rate limit, 5xx, timeout, network)."""
        return self in (
            ProviderErrorKind.RATE_LIMIT,
            ProviderErrorKind.SERVER,
            ProviderErrorKind.TIMEOUT,
            ProviderErrorKind.NETWORK,
        )


class ProviderError(Exception):
    """A provider could not serve a request.

    The message must say what failed and what to do about it; it must never
    contain an API key or secret.
    """

    def __init__(self, provider: str, series: str, kind: ProviderErrorKind, message: str):
        super().__init__(f"{provider}: {series}: {message}")
        self.provider = provider
        self.series = series
        self.kind = kind
        self.detail = message


@runtime_checkable
class DataProvider(Protocol):
    """A source of bars and/or macro series (synthetic, CSV, yfinance, massive, alpaca, fred)."""

    name: str

    def supports(self, series: str, kind: SeriesKind) -> bool:
        """Whether this provider can serve ``series`` of ``kind`` at all (no network call)."""
        ...

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        """Return the canonical frame for ``request`` or raise :class:`ProviderError`."""
        ...


def empty_frame(kind: SeriesKind) -> pd.DataFrame:
    """An empty frame with the canonical columns and dtypes for ``kind``."""
    columns = BAR_COLUMNS if kind is SeriesKind.BAR else MACRO_COLUMNS
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    frame["date"] = pd.Series(dtype="datetime64[ns]")
    return frame


def canonical(frame: pd.DataFrame, request: SeriesRequest) -> pd.DataFrame:
    """Coerce a provider's frame to the canonical shape and clip it to the request window.

    Sorts by date, drops duplicate dates (keeping the last, i.e. the most
    recent revision), normalises dates to midnight and removes every row
    outside ``[request.start, request.end]`` so no provider can leak data from
    after ``as_of``.
    """
    columns = BAR_COLUMNS if request.kind is SeriesKind.BAR else MACRO_COLUMNS
    if frame.empty:
        return empty_frame(request.kind)
    out = frame.loc[:, list(columns)].copy()
    out["date"] = (
        pd.to_datetime(out["date"]).dt.tz_localize(None).dt.normalize().astype("datetime64[ns]")
    )
    for column in columns[1:]:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    lo, hi = pd.Timestamp(request.start), pd.Timestamp(request.end)
    out = out[(out["date"] >= lo) & (out["date"] <= hi)]
    out = out.drop_duplicates("date", keep="last").sort_values("date").reset_index(drop=True)
    return out
