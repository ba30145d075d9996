"""Macro series from FRED (St. Louis Fed) through the official ``fredapi`` SDK.

``Fred.get_series`` builds ``{root_url}/series/observations?series_id=...``,
reads FRED's XML and turns the ``"."`` placeholder (no observation, e.g. a
bond-market holiday in DGS10) into NaN; those rows are kept.

SDK behaviour this module works around (fredapi 0.5.2, ``fredapi/fred.py``):

* ``Fred.__fetch_data`` (line 78) calls ``urlopen(url)`` with no timeout, so
  a stalled server hangs the run forever, and it appends ``&api_key=...`` to
  the URL, so any error that quotes the URL leaks the key.
* On an HTTP error it parses the body as XML and raises
  ``ValueError(root.get('message'))`` (line 86-88): the status code is lost
  (a bad key, an unknown series and a rate limit all look alike), and a
  non-XML body (a proxy's HTML 502) escapes as ``xml.etree.ElementTree.ParseError``
  raised from inside the ``except`` block.
* Connection failures escape as ``urllib.error.URLError``; a read timeout as a
  bare ``TimeoutError``.

The provider therefore uses a ``Fred`` subclass whose ``_Fred__fetch_data``
(the name-mangled private helper ``get_series`` calls) is the same logic with
a per-instance timeout and an exception that keeps the HTTP status.  If a
future fredapi renames the helper, the override is simply not called: the
SDK's own ``ValueError`` messages are still mapped (by their text), only the
timeout is lost.
"""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pandas as pd
from fredapi import Fred

from tiller.data.base import (
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
    canonical,
    empty_frame,
)

FRED_ROOT = "https://api.stlouisfed.org"
_SERIES_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class FredHTTPError(Exception):
    """An HTTP error answered by FRED, with its status code and ``message`` attribute.

    Parameters
    ----------
    status:
        HTTP status code.
    message:
        The ``message`` attribute of FRED's ``<error>`` element, or the start
        of the body when it is not FRED XML.
    """

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class _TimeoutFred(Fred):
    """``fredapi.Fred`` whose HTTP calls time out and keep the HTTP status of errors."""

    def __init__(self, api_key: str, timeout: float):
        super().__init__(api_key=api_key)
        self.timeout = timeout

    def _Fred__fetch_data(self, url: str) -> ET.Element:
        """Fetch ``url`` (plus the key) and parse the XML answer.

        Parameters
        ----------
        url:
            The request URL without ``api_key``.

        Returns
        -------
        xml.etree.ElementTree.Element
            The root element of FRED's answer.

        Raises
        ------
        FredHTTPError
            On any HTTP error status.
        """
        url += "&api_key=" + self.api_key
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            body = exc.read()
            exc.close()
            raise FredHTTPError(status, _error_message(body, exc.reason)) from None
        return ET.fromstring(payload)


def _error_message(body: bytes, reason: Any) -> str:
    """FRED's ``<error message="...">`` text, else the body's start, else the reason."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        text = body.decode("utf-8", "replace").strip()
        return text[:200] or str(reason)
    return root.get("message") or str(reason)


class FredProvider:
    """Observations of any FRED series (``DGS10``, ``CPIAUCSL``, ``VIXCLS``...).

    Parameters
    ----------
    api_key:
        FRED API key (32 lower-case alphanumerics); it travels in the query
        string and is masked out of every error message.
    base_url:
        Override of ``https://api.stlouisfed.org`` (tests point it at a local
        fake server); ``/fred`` is appended as fredapi's ``root_url``.
    timeout:
        Connect and read timeout per HTTP request, in seconds.
    """

    name = "fred"

    def __init__(self, api_key: str, base_url: str | None = None, timeout: float = 10.0):
        if not api_key:
            raise ValueError("FredProvider needs a FRED API key")
        self._api_key = api_key
        self.timeout = timeout
        self._fred = _TimeoutFred(api_key, timeout)
        self._fred.root_url = (base_url or FRED_ROOT).rstrip("/") + "/fred"

    def supports(self, series: str, kind: SeriesKind) -> bool:
        """Whether ``series`` looks like a FRED series id and ``kind`` is macro (no network)."""
        return kind is SeriesKind.MACRO and bool(_SERIES_ID.match(series))

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        """Return the observations of ``request.series`` in ``[start, end]``.

        Parameters
        ----------
        request:
            FRED series id, kind (must be :attr:`SeriesKind.MACRO`) and the
            inclusive observation window.

        Returns
        -------
        pandas.DataFrame
            Columns ``date, value``; ``value`` in the series' own units
            (percent for DGS10, index points for CPIAUCSL...), NaN where FRED
            has the ``"."`` placeholder; empty when FRED has no observation in
            the window.

        Raises
        ------
        ProviderError
            ``UNSUPPORTED`` for bars or a malformed id, ``AUTH`` when FRED
            rejects the key, ``NOT_FOUND`` for an unknown series,
            ``RATE_LIMIT`` on 429, ``SERVER`` on 5xx, ``TIMEOUT``, ``NETWORK``,
            ``BAD_DATA`` for a malformed answer or another rejected request.
        """
        if not self.supports(request.series, request.kind):
            raise ProviderError(
                self.name,
                request.series,
                ProviderErrorKind.UNSUPPORTED,
                "FRED serves macro series by id (e.g. DGS10), not bars; use a bar provider",
            )
        if request.start > request.end:
            return empty_frame(request.kind)
        try:
            series = self._fred.get_series(
                request.series,
                observation_start=request.start,
                observation_end=request.end,
            )
        except Exception as exc:
            raise self._error(request.series, exc) from None
        if series is None or len(series) == 0:
            return empty_frame(request.kind)
        frame = pd.DataFrame(
            {"date": pd.to_datetime(series.index), "value": series.to_numpy(dtype="float64")}
        )
        return canonical(frame, request)

    # ------------------------------------------------------------------- errors

    def _clean(self, text: str) -> str:
        """``text`` with the API key masked, shortened to 300 characters."""
        return text.replace(self._api_key, "***")[:300]

    def _error(self, series: str, exc: Exception) -> ProviderError:
        """Map an SDK/transport exception to a :class:`ProviderError` without the key."""
        kind: ProviderErrorKind
        if isinstance(exc, FredHTTPError):
            kind, message = self._http_kind(exc.status, exc.message)
        elif isinstance(exc, (TimeoutError, socket.timeout)) or (
            isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)
        ):
            kind = ProviderErrorKind.TIMEOUT
            message = f"no answer from FRED within {self.timeout:g} s; retry later"
        elif isinstance(exc, urllib.error.URLError):
            kind = ProviderErrorKind.NETWORK
            message = (
                f"cannot reach FRED ({self._clean(str(exc.reason))}); "
                "check the network and the base URL"
            )
        elif isinstance(exc, (ConnectionError, OSError)):
            kind = ProviderErrorKind.NETWORK
            message = f"connection to FRED failed ({type(exc).__name__}: {self._clean(str(exc))})"
        elif isinstance(exc, ET.ParseError):
            kind = ProviderErrorKind.BAD_DATA
            message = f"FRED answered something that is not XML: {self._clean(str(exc))}"
        elif isinstance(exc, ValueError):
            # fredapi's own error path (if the override is ever bypassed) or a bad value.
            kind, message = self._message_kind(self._clean(str(exc)))
        else:
            kind = ProviderErrorKind.BAD_DATA
            message = f"unexpected {type(exc).__name__}: {self._clean(str(exc))}"
        return ProviderError(self.name, series, kind, message)

    def _http_kind(self, status: int, text: str) -> tuple[ProviderErrorKind, str]:
        """Kind and message for an HTTP error ``status`` whose FRED message is ``text``."""
        detail = f"HTTP {status}: {self._clean(text)}"
        if status in (401, 403) or "api_key" in text:
            return ProviderErrorKind.AUTH, f"{detail} (check the FRED API key)"
        if status == 429:
            return ProviderErrorKind.RATE_LIMIT, f"{detail} (rate limited; retry later)"
        if status >= 500:
            return ProviderErrorKind.SERVER, f"{detail} (FRED server error; retry later)"
        if status == 404 or "does not exist" in text:
            return ProviderErrorKind.NOT_FOUND, f"{detail} (check the FRED series id)"
        return ProviderErrorKind.BAD_DATA, f"{detail} (FRED rejected the request)"

    @staticmethod
    def _message_kind(text: str) -> tuple[ProviderErrorKind, str]:
        """Kind for a ``ValueError`` raised by fredapi, judged by its message."""
        lowered = text.lower()
        if "api_key" in lowered:
            return ProviderErrorKind.AUTH, f"{text} (check the FRED API key)"
        if "does not exist" in lowered:
            return ProviderErrorKind.NOT_FOUND, f"{text} (check the FRED series id)"
        if "too many requests" in lowered or "rate limit" in lowered:
            return ProviderErrorKind.RATE_LIMIT, f"{text} (rate limited; retry later)"
        return ProviderErrorKind.BAD_DATA, f"malformed FRED answer: {text}"
