"""Daily bars from Massive (formerly Polygon.io) through the ``massive`` SDK.

Two SDK behaviours shape this module (``massive/rest/base.py``, 2.9.1):

* The SDK's urllib3 ``Retry(total=retries, status_forcelist=[413, 429, 499,
  500, 502, 503, 504])`` means that with ``retries=0`` a 429 or 5xx surfaces as
  ``urllib3.exceptions.MaxRetryError("too many 429 error responses")`` with the
  body thrown away.  The pool's retry policy is therefore replaced (through the
  SDK's ``connection_pool_kw``) by ``Retry(total=0)``: still no retries, but
  every HTTP status reaches the SDK's own check.
* That check raises ``BadResponse(body)`` for any status other than 200, without
  the status.  The client's urllib3 pool manager is wrapped to remember the
  status of the last response, so 401/403/429/5xx can be told apart.

The API key travels in the ``Authorization`` header, never in URLs; messages
are still scrubbed of it, and errors are raised without chaining the SDK's
exception so no traceback can carry a URL or header.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any, NoReturn

import pandas as pd
from massive import RESTClient
from massive.exceptions import AuthError, BadResponse
from massive.rest.models import Agg
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from tiller.data.base import (
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
    canonical,
    empty_frame,
)

_SYMBOLS = {"VIX": "I:VIX", "BTC-USD": "X:BTCUSD"}
_LIMIT = 50_000  # base aggregates per request: ~198 years of daily bars, so no pagination


class MassiveProvider:
    """Daily OHLCV bars from the Massive aggregates endpoint (``/v2/aggs/ticker/...``).

    Parameters
    ----------
    api_key:
        Massive API key (sent as ``Authorization: Bearer``; never logged or
        put in an error message).
    base_url:
        API root, ``https://api.massive.com`` by default (a local fake in tests).
    timeout:
        Connect and read timeout per HTTP request, in seconds.

    Notes
    -----
    Serves ``SeriesKind.BAR`` only.  ``VIX`` maps to ``I:VIX`` (an index: no
    volume, so ``volume`` is NaN), ``BTC-USD`` to ``X:BTCUSD``; other symbols
    are used as they are.  Bars are requested with ``adjusted=true``, which
    Massive applies for **splits only**: ``close`` is split-adjusted and not
    dividend-adjusted, and ``adj_close`` is set equal to ``close``.  A bar's
    timestamp is the start of its session day (midnight New York for stocks
    and indices, midnight UTC for crypto), converted here to the session date.
    The SDK's retries are off; retrying is the fallback chain's job.  An
    unknown ticker is indistinguishable from a window without bars (HTTP 200,
    ``resultsCount`` 0) and yields an empty frame.
    """

    name = "massive"

    def __init__(
        self, api_key: str, base_url: str = "https://api.massive.com", timeout: float = 10.0
    ):
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._last = threading.local()
        self._client = RESTClient(
            api_key=api_key,
            base=self.base_url,
            retries=0,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            pagination=False,
            connection_pool_kw={"retries": Retry(total=0)},
        )
        self._record_statuses()

    def _record_statuses(self) -> None:
        pool = self._client.client  # urllib3.PoolManager
        urlopen = pool.urlopen
        last = self._last

        def recording_urlopen(method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
            response = urlopen(method, url, redirect=redirect, **kw)
            last.status = response.status
            return response

        pool.urlopen = recording_urlopen

    def supports(self, series: str, kind: SeriesKind) -> bool:
        """Whether ``series`` can be fetched (bars only; any symbol, no network call)."""
        return kind is SeriesKind.BAR and bool(series.strip())

    @staticmethod
    def symbol(series: str) -> str:
        """Massive's ticker for Tiller's series name (``VIX`` -> ``I:VIX``)."""
        return _SYMBOLS.get(series, series)

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        """Daily bars for ``request`` over ``[start, end]`` (both inclusive) in canonical shape.

        Raises
        ------
        ProviderError
            ``AUTH`` on HTTP 401/403, ``RATE_LIMIT`` on 429, ``SERVER`` on 5xx,
            ``TIMEOUT``, ``NETWORK`` (connection refused, DNS, TLS), ``NOT_FOUND``
            on HTTP 404, ``BAD_DATA`` for an unreadable or truncated answer,
            ``UNSUPPORTED`` for a non-bar request.
        """
        if not self.supports(request.series, request.kind):
            self._fail(
                request,
                ProviderErrorKind.UNSUPPORTED,
                "massive serves daily bars only; use another provider for macro series",
            )
        if request.start > request.end:
            return empty_frame(SeriesKind.BAR)
        ticker = self.symbol(request.series)
        self._last.status = None
        try:
            response = self._client.get_aggs(
                ticker,
                1,
                "day",
                request.start,
                request.end,
                adjusted=True,
                sort="asc",
                limit=_LIMIT,
                raw=True,
            )
        except BadResponse as exc:
            self._fail_http(request, getattr(self._last, "status", None), str(exc))
        except AuthError as exc:
            self._fail(request, ProviderErrorKind.AUTH, f"no API key ({exc})")
        except (HTTPError, OSError) as exc:  # MaxRetryError is an HTTPError
            self._fail_transport(request, exc)
        return self._frame(request, ticker, response.data)

    def _frame(self, request: SeriesRequest, ticker: str, data: bytes) -> pd.DataFrame:
        try:
            payload = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self._fail(request, ProviderErrorKind.BAD_DATA, f"answer is not JSON ({exc})")
        if not isinstance(payload, dict):
            self._fail(request, ProviderErrorKind.BAD_DATA, "answer is not a JSON object")
        if payload.get("next_url"):
            self._fail(
                request,
                ProviderErrorKind.BAD_DATA,
                f"answer truncated at limit={_LIMIT} (next_url present); narrow the window",
            )
        rows = payload.get("results") or []
        if not rows:
            return empty_frame(SeriesKind.BAR)
        try:
            aggs = [Agg.from_dict(row) for row in rows]
            stamps = [int(agg.timestamp) for agg in aggs]
        except (AttributeError, TypeError, ValueError) as exc:
            self._fail(request, ProviderErrorKind.BAD_DATA, f"malformed bar ({exc})")
        zone = "UTC" if ticker.startswith("X:") else "America/New_York"
        dates = pd.to_datetime(stamps, unit="ms", utc=True).tz_convert(zone).tz_localize(None)
        frame = pd.DataFrame(
            {
                "date": dates.normalize(),
                "open": [_float(a.open) for a in aggs],
                "high": [_float(a.high) for a in aggs],
                "low": [_float(a.low) for a in aggs],
                "close": [_float(a.close) for a in aggs],
                "adj_close": [_float(a.close) for a in aggs],  # split-adjusted only
                "volume": [_float(a.volume) for a in aggs],
            }
        )
        return canonical(frame, request)

    def _fail_http(self, request: SeriesRequest, status: int | None, body: str) -> NoReturn:
        reason = _api_reason(body)
        if status in (401, 403):
            kind = ProviderErrorKind.AUTH
            hint = "check the API key and plan entitlements"
        elif status == 429:
            kind, hint = ProviderErrorKind.RATE_LIMIT, "slow down or upgrade the plan"
        elif status is not None and status >= 500:
            kind, hint = ProviderErrorKind.SERVER, "retry later"
        elif status == 404:
            kind, hint = ProviderErrorKind.NOT_FOUND, "check the ticker"
        else:
            kind, hint = ProviderErrorKind.BAD_DATA, "the request was rejected"
        self._fail(request, kind, f"HTTP {status}: {reason}; {hint}")

    def _fail_transport(self, request: SeriesRequest, exc: BaseException) -> NoReturn:
        reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
        if isinstance(reason, NewConnectionError):  # also a ConnectTimeoutError subclass
            kind = ProviderErrorKind.NETWORK
            message = f"cannot connect to {self.base_url} ({type(reason).__name__})"
        elif isinstance(reason, (ReadTimeoutError, ConnectTimeoutError, TimeoutError)):
            kind = ProviderErrorKind.TIMEOUT
            message = f"no answer within {self.timeout:g} s ({type(reason).__name__})"
        else:
            kind = ProviderErrorKind.NETWORK
            message = f"transport error talking to {self.base_url} ({type(reason).__name__})"
        self._fail(request, kind, message)

    def _fail(self, request: SeriesRequest, kind: ProviderErrorKind, message: str) -> NoReturn:
        raise ProviderError(self.name, request.series, kind, self._redact(message)) from None

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        text = re.sub(r"(?i)(apikey=)[^&\s\"']+", r"\1***", text)
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _api_reason(body: str) -> str:
    """The API's own explanation from an error body (``error``/``message``), else its start."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        text = payload.get("error") or payload.get("message") or payload.get("status")
        request_id = payload.get("request_id")
        if text:
            return f"{text} (request_id {request_id})" if request_id else str(text)
    snippet = " ".join(re.sub(r"<[^>]+>", " ", body).split())
    return snippet[:200] or "empty body"
