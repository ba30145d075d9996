"""A fake Yahoo Finance for yfinance, over real HTTP on 127.0.0.1.

yfinance has no host setting; :class:`tiller.data.providers.yahoo.YahooProvider`
built with ``base_url`` rewrites every ``*.yahoo.com`` URL to this server, so
one server answers for all the hosts yfinance 1.7 talks to:

* ``fc.yahoo.com/`` (cookie): 404 HTML with an ``A3`` cookie, as the real host;
* ``guce.yahoo.com/consent`` (csrf cookie strategy): a page without a consent
  form, as served to US visitors;
* ``query1|query2.finance.yahoo.com/v1/test/getcrumb``: a crumb as ``text/plain``;
* ``query2.finance.yahoo.com/v8/finance/chart/{symbol}``: the chart JSON, both
  the ``range=1d`` call yfinance makes to learn the exchange time zone and the
  ``period1``/``period2`` window (``period1`` inclusive, ``period2`` exclusive,
  epoch seconds);
* ``/v10/finance/quoteSummary/{symbol}``: only used by yfinance's time-zone
  fallback for unknown symbols (404 JSON).

Payload shapes follow real answers: a daily bar's timestamp is the session's
regular-market open in the exchange time zone (09:30 New York for US ETFs,
08:30 Chicago for ``^VIX``, 00:00 UTC for crypto); an unknown symbol is HTTP
404 ``{"chart":{"result":null,"error":{"code":"Not Found",...}}}``; a window
with no sessions is HTTP 200 with ``"indicators":{"quote":[{}],"adjclose":[{}]}``
and no ``timestamp``; a window that ends before the first bar is HTTP 400
``"Data doesn't exist for startDate = ..., endDate = ..."``.

Faults queued with ``fail_next``/``delay_next`` apply to chart requests only:
the cookie/crumb endpoints always answer, so a test controls exactly what the
data endpoint does.  yfinance re-sends a chart request once after any HTTP
status >= 400 (after switching cookie strategy), so a persistent failure needs
``times=2`` (or more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from zoneinfo import ZoneInfo

import pandas as pd

from tests.fakes.http import FakeHandler, FakeServer, Recorded

CHART_PREFIX = "/v8/finance/chart/"
CRUMB = "Xk3vPq9T0aB"

# Real error bodies, for ``fail_next``.
UNAUTHORIZED_BODY = {
    "finance": {
        "result": None,
        "error": {
            "code": "Unauthorized",
            "description": "User is unable to access this feature - "
            "https://bit.ly/yahoo-finance-api-feedback",
        },
    }
}
FORBIDDEN_BODY = {
    "finance": {
        "result": None,
        "error": {"code": "Forbidden", "description": "User is not allowed to access this"},
    }
}
TOO_MANY_REQUESTS_BODY = "Edge: Too Many Requests"
SERVER_ERROR_BODY = (
    '<!doctype html public "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">\n'
    "<html>\n<head>\n    <title>Yahoo! - Error report</title>\n</head>\n<body>\n"
    '<div id="doc">\n    <div id="bd">\n        <h1>HTTP Status 500 - Internal Server Error</h1>\n'
    "    </div>\n</div>\n</body>\n</html>\n"
)
UNAVAILABLE_BODY = (
    '<!DOCTYPE html>\n<html lang="en-us"><head><title>Yahoo</title></head><body>'
    "<h1>Will be right back...</h1><p>Thank you for your patience.</p>"
    "<p>Our engineers are working quickly to resolve the issue.</p></body></html>"
)
HTML = {"Content-Type": "text/html; charset=utf-8"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
JSON = {"Content-Type": "application/json;charset=utf-8"}


@dataclass(frozen=True)
class Profile:
    """What Yahoo says about a symbol's listing (the chart ``meta`` block)."""

    instrument_type: str
    exchange_name: str
    full_exchange_name: str
    timezone: str
    session_open: time


def profile_for(symbol: str) -> Profile:
    """The listing profile of a Yahoo symbol: index (``^VIX``), crypto (``BTC-USD``) or ETF."""
    if symbol.startswith("^"):
        return Profile("INDEX", "CXI", "Cboe Indices", "America/Chicago", time(8, 30))
    if symbol.endswith("-USD"):
        return Profile("CRYPTOCURRENCY", "CCC", "CCC", "UTC", time(0, 0))
    return Profile("ETF", "PCX", "NYSEArca", "America/New_York", time(9, 30))


@dataclass
class YahooState:
    """What the fake serves.

    Attributes
    ----------
    bars:
        Yahoo symbol (``SPY``, ``^VIX``, ``BTC-USD``) -> frame with columns
        ``date, open, high, low, close, adj_close, volume`` (one row per
        session, ``date`` a calendar date).  A symbol absent from the dict is
        unknown (HTTP 404).
    leak_after_end:
        Also send this many sessions at or after ``period2``, as Yahoo sometimes
        does (it appends the live session); a correct client drops them.
    """

    bars: dict[str, pd.DataFrame]
    leak_after_end: int = 0
    crumb: str = CRUMB


def _epoch(day: date, prof: Profile) -> int:
    return int(datetime.combine(day, prof.session_open, ZoneInfo(prof.timezone)).timestamp())


def _num(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def _meta(symbol: str, prof: Profile, frame: pd.DataFrame, range_: str) -> dict[str, Any]:
    zone = ZoneInfo(prof.timezone)
    now = datetime.now(zone)
    offset = int(now.utcoffset().total_seconds())  # type: ignore[union-attr]
    abbrev = now.tzname() or "UTC"
    today = now.date()
    start = _epoch(today, prof)
    last = frame.iloc[-1] if len(frame) else None
    period = {"timezone": abbrev, "start": start, "end": start + 23400, "gmtoffset": offset}
    return {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": prof.exchange_name,
        "fullExchangeName": prof.full_exchange_name,
        "instrumentType": prof.instrument_type,
        "firstTradeDate": _epoch(frame["date"].iloc[0], prof) if len(frame) else None,
        "regularMarketTime": _epoch(frame["date"].iloc[-1], prof) if len(frame) else start,
        "hasPrePostMarketData": prof.instrument_type == "ETF",
        "gmtoffset": offset,
        "timezone": abbrev,
        "exchangeTimezoneName": prof.timezone,
        "regularMarketPrice": _num(last["close"]) if last is not None else None,
        "chartPreviousClose": _num(last["close"]) if last is not None else None,
        "priceHint": 2,
        "currentTradingPeriod": {
            "pre": dict(period),
            "regular": dict(period),
            "post": dict(period),
        },
        "dataGranularity": "1d",
        "range": range_,
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }


def chart_payload(symbol: str, frame: pd.DataFrame, rows: pd.DataFrame, range_: str = "") -> Any:
    """The v8 chart JSON for ``rows`` (a slice of ``frame``, the symbol's whole history)."""
    prof = profile_for(symbol)
    result: dict[str, Any] = {"meta": _meta(symbol, prof, frame, range_)}
    if len(rows):
        result["timestamp"] = [_epoch(d, prof) for d in rows["date"]]
        result["indicators"] = {
            "quote": [
                {
                    "open": [_num(v) for v in rows["open"]],
                    "high": [_num(v) for v in rows["high"]],
                    "low": [_num(v) for v in rows["low"]],
                    "close": [_num(v) for v in rows["close"]],
                    # Yahoo reports 0, not null, for an index's volume.
                    "volume": [0 if math.isnan(float(v)) else int(v) for v in rows["volume"]],
                }
            ],
            "adjclose": [{"adjclose": [_num(v) for v in rows["adj_close"]]}],
        }
    else:
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
    return {"chart": {"result": [result], "error": None}}


def not_found_chart() -> Any:
    return {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }


class YahooHandler(FakeHandler):
    """Routes the Yahoo endpoints yfinance 1.7 calls; faults hit chart requests only."""

    def _handle(self, method: str) -> None:
        parsed = urlparse(self.path)
        if parsed.path.startswith(CHART_PREFIX):
            super()._handle(method)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(parsed.query)
        self.fake.requests.append(Recorded(method, parsed.path, query, dict(self.headers), body))
        status, headers, payload = self.route(method, parsed.path, query, body)
        self.respond(status, payload, headers)

    @property
    def state(self) -> YahooState:
        state = self.fake.state
        assert isinstance(state, YahooState)
        return state

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if path in ("", "/"):  # fc.yahoo.com
            cookie = (
                "A3=d=AQABBFakeCookie&S=AQAAAFake; Expires=Fri, 1 Jan 2100 00:00:00 GMT; "
                "Max-Age=31557600; Domain=.yahoo.com; Path=/; SameSite=None; Secure; HttpOnly"
            )
            return 404, {**HTML, "Set-Cookie": cookie}, "<html><body>Not Found</body></html>"
        if path == "/consent":  # guce.yahoo.com: no consent form outside the EU
            return 200, HTML, "<html><body>Yahoo</body></html>"
        if path == "/v1/test/getcrumb":
            return 200, TEXT, self.state.crumb
        if path.startswith(CHART_PREFIX):
            return self._chart(unquote(path[len(CHART_PREFIX) :]), query)
        if path.startswith("/v10/finance/quoteSummary/"):
            symbol = unquote(path.rsplit("/", 1)[-1])
            return (
                404,
                JSON,
                {
                    "quoteSummary": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": f"Quote not found for symbol: {symbol}",
                        },
                    }
                },
            )
        return (
            404,
            JSON,
            {
                "finance": {
                    "result": None,
                    "error": {"code": "Not Found", "description": "HTTP 404 Not Found"},
                }
            },
        )

    def _chart(self, symbol: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        frame = self.state.bars.get(symbol)
        if frame is None:
            return 404, JSON, not_found_chart()
        frame = frame.sort_values("date").reset_index(drop=True)
        frame["date"] = [pd.Timestamp(d).date() for d in frame["date"]]
        prof = profile_for(symbol)
        stamps = pd.Series([_epoch(d, prof) for d in frame["date"]], dtype="int64")
        if "range" in query:  # the time-zone probe: Yahoo answers with the latest session
            rows = frame.iloc[-1:]
            return 200, JSON, chart_payload(symbol, frame, rows, range_=query["range"][0])
        p1 = int(query["period1"][0])
        p2 = int(query["period2"][0])
        inside = (stamps >= p1) & (stamps < p2)
        rows = frame[inside]
        if self.state.leak_after_end:
            rows = pd.concat([rows, frame[stamps >= p2].head(self.state.leak_after_end)])
        if not len(rows) and len(frame) and p2 <= int(stamps.iloc[0]):
            reason = f"Data doesn't exist for startDate = {p1}, endDate = {p2}"
            return (
                400,
                JSON,
                {
                    "chart": {
                        "result": None,
                        "error": {
                            "code": "Bad Request",
                            "description": reason,
                        },
                    }
                },
            )
        return 200, JSON, chart_payload(symbol, frame, rows)


def yahoo_server(bars: dict[str, pd.DataFrame], leak_after_end: int = 0) -> FakeServer:
    """A (not yet started) fake Yahoo serving ``bars``; use it as a context manager."""
    return FakeServer(YahooHandler, state=YahooState(bars=bars, leak_after_end=leak_after_end))


def chart_requests(server: FakeServer) -> list[Recorded]:
    """The chart requests the server received, in order."""
    return [r for r in server.requests if r.path.startswith(CHART_PREFIX)]
