"""Daily bars from Yahoo Finance through yfinance.

yfinance keeps process-wide state that this module has to manage:

* ``YfData`` is a singleton: the session passed to the last ``Ticker`` is the
  one every request uses, and its cookie/crumb are shared.  Fetches are
  therefore serialised with a module lock, and each fetch hands yfinance this
  provider's session again.
* ``YfData.cache_get`` is an in-memory ``lru_cache`` keyed on URL and
  parameters (``yfinance/data.py``).  ``history()`` reads windows that ended
  more than 30 minutes ago through it and the time-zone probe always does, so
  a cached HTTP 500 would be answered again for the life of the process.  It is
  cleared before every fetch.
* The ticker -> time-zone and cookie caches are SQLite files under
  ``~/.cache/py-yfinance``; they are moved to a private temporary directory
  (removed at exit) the first time a provider is built, so runs and CI jobs
  never share state.
* Errors are logged and swallowed into an empty frame unless
  ``yf.config.debug.hide_exceptions`` is False (``history(raise_errors=True)``
  is deprecated in 1.x and does not reach the time-zone probe); it is set to
  False for the duration of each fetch.
* yfinance never raises on an HTTP status other than 429, and its exceptions
  do not carry the status, so the session records the status of every chart
  response and :meth:`YahooProvider.fetch` classifies failures from it.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import pandas as pd
import requests
import yfinance as yf
from yfinance.data import YfData
from yfinance.exceptions import YFPricesMissingError, YFRateLimitError, YFTzMissingError

from tiller.data.base import (
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
    canonical,
    empty_frame,
)

_CHART_PATH = "/v8/finance/chart/"
_NO_DATA_IN_WINDOW = "Data doesn't exist for startDate"
_MAINTENANCE = "Will be right back"  # yfinance/scrapers/history.py checks for it too
_SYMBOLS = {"VIX": "^VIX"}

_LOCK = threading.RLock()
_cache_dir: str | None = None


def _isolate_caches() -> None:
    """Point yfinance's on-disk caches at a private temporary directory (once per process)."""
    global _cache_dir
    with _LOCK:
        if _cache_dir is None:
            _cache_dir = tempfile.mkdtemp(prefix="tiller-yfinance-")
            yf.set_tz_cache_location(_cache_dir)
            atexit.register(shutil.rmtree, _cache_dir, True)


@dataclass
class _ChartTrace(threading.local):
    """What the session saw on chart requests during the current fetch (per thread)."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.statuses = []
        self.bodies = []

    @property
    def last_status(self) -> int | None:
        return self.statuses[-1] if self.statuses else None

    @property
    def last_body(self) -> str:
        return self.bodies[-1] if self.bodies else ""


class _Hooks:
    """Per-request behaviour shared by both session types.

    Rewrites ``*.yahoo.com`` URLs to ``base`` (tests), caps every timeout at
    ``timeout`` seconds (yfinance hard-codes 30 s for the cookie/crumb calls and
    10 s for the time-zone probe) and records the status of chart responses.
    """

    def __init__(self, timeout: float, base: SplitResult | None):
        self.timeout = timeout
        self.base = base
        self.trace = _ChartTrace()

    def rewrite(self, url: str) -> str:
        if self.base is None:
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "yahoo.com" and not host.endswith(".yahoo.com"):
            return url
        path = self.base.path.rstrip("/") + (parts.path or "/")
        return urlunsplit((self.base.scheme, self.base.netloc, path, parts.query, ""))

    def cap(self, timeout: Any) -> Any:
        if isinstance(timeout, (int, float)):
            return min(float(timeout), self.timeout)
        if isinstance(timeout, tuple):
            return tuple(
                self.timeout if t is None else min(float(t), self.timeout) for t in timeout
            )
        return self.timeout

    def send(self, send: Any, method: Any, url: Any, kwargs: dict[str, Any]) -> Any:
        url = self.rewrite(str(url))
        kwargs["timeout"] = self.cap(kwargs.get("timeout"))
        response = send(method, url, **kwargs)
        if _CHART_PATH in url:
            self.trace.statuses.append(int(response.status_code))
            self.trace.bodies.append(str(response.text)[:300])
        return response


class _RequestsSession(requests.Session):
    """A plain ``requests`` session with :class:`_Hooks` (used against a local fake)."""

    def __init__(self, hooks: _Hooks):
        super().__init__()
        self.hooks_ = hooks

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("pass request options by keyword")
        return self.hooks_.send(super().request, method, url, kwargs)


def _browser_session(hooks: _Hooks) -> Any:
    """A curl_cffi session impersonating Chrome (what yfinance uses by default), with hooks.

    Falls back to ``requests`` when curl_cffi is unavailable, as yfinance does.
    """
    try:
        from curl_cffi import requests as curl_requests
    except ImportError:  # pragma: no cover - curl_cffi ships with yfinance
        session = _RequestsSession(hooks)
        session.headers["User-Agent"] = (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
        )
        return session

    class _CurlSession(curl_requests.Session):
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError("pass request options by keyword")
            return hooks.send(super().request, method, url, kwargs)

    return _CurlSession(impersonate="chrome")


def _optional_exception(module: str, name: str) -> tuple[type[BaseException], ...]:
    try:
        mod = __import__(module, fromlist=[name])
    except ImportError:  # pragma: no cover
        return ()
    exc = getattr(mod, name, None)
    return (exc,) if isinstance(exc, type) and issubclass(exc, BaseException) else ()


_TIMEOUTS: tuple[type[BaseException], ...] = (
    requests.exceptions.Timeout,
    TimeoutError,
    *_optional_exception("curl_cffi.requests.exceptions", "Timeout"),
)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    ConnectionError,
    *_optional_exception("curl_cffi.requests.exceptions", "ConnectionError"),
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


class YahooProvider:
    """Daily OHLCV bars from Yahoo Finance via yfinance (``Ticker.history``).

    Parameters
    ----------
    base_url:
        Send every Yahoo request (``query1``/``query2.finance.yahoo.com``,
        ``fc.yahoo.com``, ``guce.yahoo.com``...) to this URL instead, through a
        plain ``requests`` session; used with a local fake server.  ``None``
        (default) talks to Yahoo with yfinance's usual Chrome-impersonating
        curl_cffi session.
    timeout:
        Upper bound in seconds on every HTTP request yfinance makes (connect
        and read), including the cookie, crumb and time-zone calls for which
        yfinance would otherwise wait 10-30 s.

    Notes
    -----
    Serves ``SeriesKind.BAR`` only.  ``VIX`` maps to ``^VIX``; other symbols
    (``SPY``, ``BTC-USD``) are Yahoo's own.  Prices come with
    ``auto_adjust=False``: ``close`` is the traded close and ``adj_close``
    Yahoo's split- and dividend-adjusted close.  An index's volume (``^VIX``)
    is NaN.  yfinance's own retries are off; retrying is the fallback chain's
    job (yfinance still re-sends a request once after an HTTP error, having
    switched cookie strategy).
    """

    name = "yfinance"

    def __init__(self, base_url: str | None = None, timeout: float = 10.0):
        _isolate_caches()
        self.base_url = base_url
        self.timeout = float(timeout)
        self._hooks = _Hooks(self.timeout, urlsplit(base_url) if base_url else None)
        self._session: Any = (
            _RequestsSession(self._hooks) if base_url else _browser_session(self._hooks)
        )

    def supports(self, series: str, kind: SeriesKind) -> bool:
        """Whether ``series`` can be fetched (bars only; any symbol, no network call)."""
        return kind is SeriesKind.BAR and bool(series.strip())

    @staticmethod
    def symbol(series: str) -> str:
        """Yahoo's ticker for Tiller's series name (``VIX`` -> ``^VIX``)."""
        return _SYMBOLS.get(series, series)

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        """Daily bars for ``request`` over ``[start, end]`` (both inclusive) in canonical shape.

        Raises
        ------
        ProviderError
            ``AUTH`` on HTTP 401/403, ``RATE_LIMIT`` on 429, ``SERVER`` on 5xx,
            ``TIMEOUT``, ``NETWORK`` (connection refused, DNS), ``NOT_FOUND``
            for a symbol Yahoo does not know, ``BAD_DATA`` for an unreadable
            answer, ``UNSUPPORTED`` for a non-bar request.  A known symbol with
            no sessions in the window is an empty frame, not an error.
        """
        if not self.supports(request.series, request.kind):
            raise ProviderError(
                self.name,
                request.series,
                ProviderErrorKind.UNSUPPORTED,
                "yfinance serves daily bars only; use another provider for macro series",
            )
        symbol = self.symbol(request.series)
        with _LOCK:
            config = yf.config
            saved = (config.debug.hide_exceptions, config.network.retries)
            config.debug.hide_exceptions = False
            config.network.retries = 0
            YfData.cache_get.cache_clear()
            self._hooks.trace.reset()
            try:
                ticker = yf.Ticker(symbol, session=self._session)
                raw = ticker.history(
                    start=request.start,
                    end=request.end + timedelta(days=1),  # yfinance's end is exclusive
                    interval="1d",
                    auto_adjust=False,
                    actions=False,
                    repair=False,
                    keepna=False,
                    timeout=self.timeout,
                )
            except Exception as exc:
                self._raise_for(exc, request, symbol)
                return empty_frame(SeriesKind.BAR)
            finally:
                config.debug.hide_exceptions, config.network.retries = saved
        return self._canonical(raw, request, symbol)

    def _canonical(self, raw: pd.DataFrame, request: SeriesRequest, symbol: str) -> pd.DataFrame:
        if raw is None or raw.empty:
            return empty_frame(SeriesKind.BAR)
        missing = {"Open", "High", "Low", "Close", "Adj Close", "Volume"} - set(raw.columns)
        if missing:
            raise ProviderError(
                self.name,
                request.series,
                ProviderErrorKind.BAD_DATA,
                f"yfinance returned no {sorted(missing)} column(s) for {symbol}",
            )
        frame = pd.DataFrame(
            {
                "date": raw.index,
                "open": raw["Open"].to_numpy(),
                "high": raw["High"].to_numpy(),
                "low": raw["Low"].to_numpy(),
                "close": raw["Close"].to_numpy(),
                "adj_close": raw["Adj Close"].to_numpy(),
                "volume": raw["Volume"].to_numpy(),
            }
        )
        if symbol.startswith("^"):  # an index has no volume; yfinance reports 0
            frame["volume"] = math.nan
        return canonical(frame, request)

    def _raise_for(self, exc: BaseException, request: SeriesRequest, symbol: str) -> None:
        """Raise the :class:`ProviderError` for ``exc``; return when it means "no rows"."""
        trace = self._hooks.trace
        status = trace.last_status
        kind: ProviderErrorKind
        chain = _chain(exc)
        if isinstance(exc, YFRateLimitError):
            kind, message = ProviderErrorKind.RATE_LIMIT, "HTTP 429 Too Many Requests"
        elif any(isinstance(e, _TIMEOUTS) for e in chain):
            kind = ProviderErrorKind.TIMEOUT
            message = f"no answer within {self.timeout:g} s ({type(exc).__name__})"
        elif any(isinstance(e, _CONNECTION_ERRORS) for e in chain):
            kind = ProviderErrorKind.NETWORK
            message = f"cannot reach Yahoo ({type(exc).__name__}); check network/DNS/proxy"
        elif status is not None and status >= 400:
            if status == 400 and _NO_DATA_IN_WINDOW in trace.last_body:
                return  # the window ends before the symbol's first session
            if status in (401, 403):
                kind = ProviderErrorKind.AUTH
                message = f"HTTP {status}: Yahoo refused the request (cookie/crumb or IP blocked)"
            elif status == 429:
                kind, message = ProviderErrorKind.RATE_LIMIT, "HTTP 429 Too Many Requests"
            elif status == 404:
                kind = ProviderErrorKind.NOT_FOUND
                message = f"HTTP 404: Yahoo has no symbol {symbol!r} (unknown or delisted)"
            elif status >= 500:
                kind, message = ProviderErrorKind.SERVER, f"HTTP {status} from Yahoo; retry later"
            else:
                kind, message = ProviderErrorKind.BAD_DATA, f"HTTP {status} from Yahoo: {exc}"
        elif _MAINTENANCE in trace.last_body:
            kind, message = ProviderErrorKind.SERVER, "Yahoo shows its maintenance page"
        elif isinstance(exc, YFPricesMissingError):
            return  # HTTP 200 without rows: no sessions in the window
        elif isinstance(exc, YFTzMissingError):
            kind = ProviderErrorKind.NOT_FOUND
            message = f"Yahoo has no time zone for {symbol!r} (unknown or delisted)"
        else:
            kind = ProviderErrorKind.BAD_DATA
            message = f"unreadable answer from Yahoo ({type(exc).__name__}: {exc})"
        raise ProviderError(self.name, request.series, kind, message) from exc
