"""Daily bars from Alpaca's market-data API through the official ``alpaca-py`` SDK.

Stocks and ETFs come from ``GET /v2/stocks/bars`` (:class:`StockHistoricalDataClient`),
crypto pairs from ``GET /v1beta3/crypto/us/bars`` (:class:`CryptoHistoricalDataClient`).
Indices (``VIX``, ``^GSPC``...) are not on Alpaca, so :meth:`AlpacaDataProvider.supports`
answers ``False`` for them and the fallback chain asks another provider.

SDK behaviour this module relies on or works around (alpaca-py 0.44.0):

* ``RESTClient._one_request`` (``alpaca/common/rest.py``) calls
  ``Session.request`` without a timeout, so a stalled server hangs forever.
  The provider swaps the client's session for one that applies ``timeout``.
* ``RESTClient._request`` retries HTTP 429/504 ``DEFAULT_RETRY_ATTEMPTS = 3``
  times with ``DEFAULT_RETRY_WAIT_SECONDS = 3`` s sleeps
  (``alpaca/common/constants.py``); the data clients do not expose
  ``retry_attempts``/``retry_wait_seconds`` in their constructors, so the
  provider sets ``_retry``/``_retry_wait`` on the clients directly
  (default: one retry after 3 s; the fallback chain does the rest).
* Every other HTTP error surfaces as :class:`alpaca.common.exceptions.APIError`
  whose text is the raw response body; ``APIError.message`` JSON-decodes it
  and raises on a non-JSON body (e.g. a proxy's HTML 502), so the body is
  decoded defensively here.
* ``_get_marketdata`` follows ``next_page_token`` until it is ``null``.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, CryptoFeed, DataFeed
from alpaca.data.historical.crypto import CryptoHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models import BarSet
from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from tiller.data.base import (
    BAR_COLUMNS,
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
    canonical,
    empty_frame,
)

NEW_YORK = ZoneInfo("America/New_York")

#: Quote currencies that mark a Tiller symbol ``BASE-QUOTE`` as a crypto pair.
CRYPTO_QUOTES: frozenset[str] = frozenset({"USD", "USDT", "USDC"})

_CRYPTO_RE = re.compile(r"^([A-Z0-9]{2,10})-([A-Z]{3,4})$")
_STOCK_RE = re.compile(r"^[A-Z]{1,6}([.-][A-Z]{1,2})?$")
#: Symbols that look like stocks but are indices Alpaca does not carry.
_INDICES: frozenset[str] = frozenset({"VIX", "VIX3M", "VVIX", "SPX", "NDX", "RUT", "DJI"})


class _TimeoutSession(requests.Session):
    """A ``requests.Session`` that applies a default timeout to every request.

    Parameters
    ----------
    timeout:
        Connect and read timeout, in seconds, used when the caller passes none
        (alpaca-py never does).
    """

    def __init__(self, timeout: float):
        super().__init__()
        self.default_timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send the request with ``timeout`` defaulted to :attr:`default_timeout` seconds."""
        # timeout is the 7th positional parameter after ``url`` in Session.request.
        if len(args) < 7 and kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


class AlpacaDataProvider:
    """Daily OHLCV bars for US stocks/ETFs and crypto pairs from Alpaca.

    Adjustment choice: stocks are fetched twice over the same window, once
    with ``adjustment=split`` (``open``, ``high``, ``low``, ``close`` and
    ``volume`` are split-adjusted but not dividend-adjusted, like Yahoo's
    ``Close``) and once with ``adjustment=all`` (its close becomes
    ``adj_close``, split- and dividend-adjusted, like Yahoo's ``Adj Close``).
    Crypto has no corporate actions, so crypto is one request and
    ``adj_close`` equals ``close``.

    Session dates: Alpaca stamps a daily stock bar at midnight New York time
    (``2024-01-02T05:00:00Z``) and a daily crypto bar at midnight US Central
    time (``2024-01-02T06:00:00Z``); both are converted to America/New_York and
    the calendar date taken, which is the session date in both cases.

    Symbols: a Tiller symbol ``BASE-QUOTE`` with a USD/USDT/USDC quote is a
    crypto pair sent as ``BASE/QUOTE`` (``BTC-USD`` -> ``BTC/USD``); any other
    symbol is a stock, with a class-share dash sent as a dot
    (``BRK-B`` -> ``BRK.B``). ``VIX`` and other indices are not supported.

    Parameters
    ----------
    api_key, secret_key:
        Alpaca API key id and secret (sent as ``APCA-API-KEY-ID`` and
        ``APCA-API-SECRET-KEY`` headers, never echoed in errors).
    base_url:
        Override of ``https://data.alpaca.markets`` (tests point it at a
        local fake server); the SDK appends ``/v2/...`` or ``/v1beta3/...``.
    feed:
        Stock data feed: ``"iex"`` (free plan) or ``"sip"`` (paid plan).
    timeout:
        Connect and read timeout per HTTP request, in seconds.
    retries:
        How many times the SDK retries an HTTP 429 or 504 before giving up.
    retry_wait:
        Seconds the SDK sleeps between those retries.
    """

    name = "alpaca"

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        base_url: str | None = None,
        feed: str = "iex",
        timeout: float = 10.0,
        *,
        retries: int = 1,
        retry_wait: float = 3.0,
    ):
        if not api_key or not secret_key:
            raise ValueError("AlpacaDataProvider needs both an API key id and a secret key")
        self._secrets = (api_key, secret_key)
        self.feed = DataFeed(feed)
        self.timeout = timeout
        url = base_url.rstrip("/") if base_url else None
        self._stocks = StockHistoricalDataClient(api_key, secret_key, url_override=url)
        self._crypto = CryptoHistoricalDataClient(api_key, secret_key, url_override=url)
        for client in (self._stocks, self._crypto):
            client._session = _TimeoutSession(timeout)
            client._retry = max(0, retries)
            # time.sleep accepts floats; the SDK only annotates this as int.
            client._retry_wait = retry_wait  # type: ignore[assignment]

    # ------------------------------------------------------------------ symbols

    @staticmethod
    def crypto_symbol(series: str) -> str | None:
        """Alpaca's pair (``BTC/USD``) for a Tiller crypto symbol (``BTC-USD``), else None."""
        match = _CRYPTO_RE.match(series)
        if match and match.group(2) in CRYPTO_QUOTES:
            return f"{match.group(1)}/{match.group(2)}"
        return None

    @staticmethod
    def stock_symbol(series: str) -> str | None:
        """Alpaca's ticker for a Tiller stock symbol (``BRK-B`` -> ``BRK.B``), else None."""
        if series in _INDICES or not _STOCK_RE.match(series):
            return None
        return series.replace("-", ".")

    def supports(self, series: str, kind: SeriesKind) -> bool:
        """Whether ``series`` is a stock/ETF or crypto pair and ``kind`` is bars (no network)."""
        if kind is not SeriesKind.BAR:
            return False
        return self.crypto_symbol(series) is not None or self.stock_symbol(series) is not None

    # -------------------------------------------------------------------- fetch

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        """Return daily bars for ``request`` in the canonical shape.

        Parameters
        ----------
        request:
            Series, kind (must be :attr:`SeriesKind.BAR`) and inclusive window.

        Returns
        -------
        pandas.DataFrame
            Columns ``date, open, high, low, close, adj_close, volume``; prices
            in USD, volume in shares (stocks) or coins (crypto); empty when
            Alpaca has no bars in the window (including unknown tickers, for
            which Alpaca answers 200 with no bars).

        Raises
        ------
        ProviderError
            ``UNSUPPORTED`` for indices or macro series, ``AUTH`` on 401/403,
            ``RATE_LIMIT`` on 429, ``SERVER`` on 5xx, ``TIMEOUT``, ``NETWORK``,
            ``NOT_FOUND`` when Alpaca rejects the symbol, ``BAD_DATA`` for a
            malformed payload or any other rejected request.
        """
        if not self.supports(request.series, request.kind):
            raise ProviderError(
                self.name,
                request.series,
                ProviderErrorKind.UNSUPPORTED,
                "Alpaca serves daily bars for US stocks/ETFs and crypto pairs only "
                "(no indices such as VIX, no macro series); use another provider",
            )
        if request.start > request.end:
            return empty_frame(request.kind)
        start, end = _window(request.start, request.end)
        pair = self.crypto_symbol(request.series)
        try:
            if pair is not None:
                crypto_req = CryptoBarsRequest(
                    symbol_or_symbols=pair, timeframe=TimeFrame.Day, start=start, end=end
                )
                frame = _bars_frame(self._crypto.get_crypto_bars(crypto_req, CryptoFeed.US), pair)
                frame["adj_close"] = frame["close"]
            else:
                ticker = self.stock_symbol(request.series)
                assert ticker is not None  # supports() checked it
                frame = self._stock_frame(ticker, start, end)
        except Exception as exc:
            raise self._error(request.series, exc) from None
        return canonical(frame, request)

    def _stock_frame(self, ticker: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Split-adjusted OHLCV joined with the fully adjusted close as ``adj_close``."""

        def bars(adjustment: Adjustment) -> pd.DataFrame:
            stock_req = StockBarsRequest(
                symbol_or_symbols=ticker,
                timeframe=TimeFrame.Day,
                start=start,
                end=end,
                adjustment=adjustment,
                feed=self.feed,
            )
            return _bars_frame(self._stocks.get_stock_bars(stock_req), ticker)

        split = bars(Adjustment.SPLIT)
        if split.empty:
            return split
        full = bars(Adjustment.ALL)[["date", "close"]].rename(columns={"close": "adj_close"})
        full = full.drop_duplicates("date", keep="last")
        return split.merge(full, on="date", how="left")

    # ------------------------------------------------------------------- errors

    def _clean(self, text: str) -> str:
        """``text`` with the key id and secret masked, shortened to 300 characters."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]

    def _error(self, series: str, exc: Exception) -> ProviderError:
        """Map an SDK/transport exception to a :class:`ProviderError` without secrets."""
        kind: ProviderErrorKind
        if isinstance(exc, APIError):
            status = exc.status_code
            detail = self._clean(_api_message(exc))
            if status in (401, 403):
                kind, hint = (
                    ProviderErrorKind.AUTH,
                    (
                        "check the Alpaca API key id/secret and that the data plan covers "
                        f"the '{self.feed.value}' feed"
                    ),
                )
            elif status == 429:
                kind, hint = ProviderErrorKind.RATE_LIMIT, "rate limited; retry later"
            elif status is not None and status >= 500:
                kind, hint = ProviderErrorKind.SERVER, "Alpaca server error; retry later"
            elif "invalid symbol" in detail.lower():
                kind, hint = ProviderErrorKind.NOT_FOUND, "Alpaca does not know this ticker"
            elif status == 404:
                kind, hint = ProviderErrorKind.BAD_DATA, "no such endpoint; check the base URL"
            else:
                kind, hint = ProviderErrorKind.BAD_DATA, "Alpaca rejected the request"
            message = f"HTTP {status}: {detail} ({hint})"
        elif isinstance(exc, requests.Timeout):
            kind = ProviderErrorKind.TIMEOUT
            message = f"no answer from Alpaca within {self.timeout:g} s; retry later"
        elif isinstance(exc, requests.ConnectionError):
            kind = ProviderErrorKind.NETWORK
            message = (
                f"cannot reach Alpaca ({type(exc).__name__}); check the network "
                f"and the base URL: {self._clean(str(exc))}"
            )
        elif isinstance(exc, (ValueError, KeyError, TypeError)):
            # Before RequestException: requests' JSONDecodeError is both.
            kind = ProviderErrorKind.BAD_DATA
            message = f"malformed Alpaca payload ({type(exc).__name__}): {self._clean(str(exc))}"
        elif isinstance(exc, requests.RequestException):
            kind = ProviderErrorKind.NETWORK
            message = f"HTTP transport error ({type(exc).__name__}): {self._clean(str(exc))}"
        else:
            kind = ProviderErrorKind.BAD_DATA
            message = f"unexpected {type(exc).__name__}: {self._clean(str(exc))}"
        return ProviderError(self.name, series, kind, message)


def _window(start: date, end: date) -> tuple[datetime, datetime]:
    """The request window as aware datetimes: New York midnight of ``start`` to end of ``end``.

    Covers a stock bar stamped 00:00 New York and a crypto bar stamped 00:00
    Chicago (01:00 New York) on every date of ``[start, end]`` and nothing
    from the day after ``end``.
    """
    lo = datetime.combine(start, time(0, 0), tzinfo=NEW_YORK)
    hi = datetime.combine(end + timedelta(days=1), time(0, 0), tzinfo=NEW_YORK)
    return lo, hi - timedelta(seconds=1)


def _bars_frame(barset: Any, symbol: str) -> pd.DataFrame:
    """One symbol's bars from an SDK :class:`BarSet` with New York session dates."""
    if not isinstance(barset, BarSet):
        raise ValueError(f"expected a BarSet, got {type(barset).__name__}")
    bars = barset.data.get(symbol, [])
    if not bars:
        return pd.DataFrame(columns=[c for c in BAR_COLUMNS if c != "adj_close"])
    frame = pd.DataFrame(
        {
            "timestamp": [b.timestamp for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        }
    )
    local = pd.to_datetime(frame.pop("timestamp"), utc=True).dt.tz_convert(NEW_YORK)
    frame.insert(0, "date", local.dt.tz_localize(None).dt.normalize())
    return frame


def _api_message(exc: APIError) -> str:
    """The ``message`` of an Alpaca error body, or the raw body when it is not JSON."""
    body = str(exc)
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.strip() or "(empty body)"
    if isinstance(decoded, dict) and "message" in decoded:
        return str(decoded["message"])
    return body
