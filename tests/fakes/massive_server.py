"""A fake Massive (formerly Polygon.io) REST API, over real HTTP on 127.0.0.1.

Serves ``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}``
(daily bars only) the way the real API answers the ``massive`` SDK:

* authentication by ``Authorization: Bearer <key>`` (or ``?apiKey=``); a wrong
  key is HTTP 401 ``{"status":"ERROR","request_id":...,"error":"Unknown API Key"}``,
  no key is 401 ``"API Key was not provided"``;
* a ticker outside the plan (``not_entitled``) is HTTP 403
  ``{"status":"NOT_AUTHORIZED",...,"message":"You are not entitled to this data..."}``;
* ``from``/``to`` are inclusive session dates (``YYYY-MM-DD`` or ms epoch);
* a bar's ``t`` is the start of its session day in ms: midnight New York for
  stocks and indices, midnight UTC for crypto (``X:``); index bars
  (``I:VIX``) carry no ``v``/``vw``/``n``;
* a ticker or window without bars is HTTP 200 with ``"resultsCount":0`` and no
  ``results`` key (the API does not distinguish an unknown ticker).

The 5xx bodies (:data:`SERVER_ERROR_BODY`, :data:`UNAVAILABLE_BODY`) are
representative of the API's JSON error shape and of its gateway's HTML page.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pandas as pd

from tests.fakes.http import FakeHandler, FakeServer

AGGS_PREFIX = "/v2/aggs/ticker/"
_ids = itertools.count(1)


def request_id() -> str:
    """A request id shaped like the API's (32 hex digits)."""
    return hashlib.md5(str(next(_ids)).encode()).hexdigest()


def unknown_key_body() -> dict[str, Any]:
    return {"status": "ERROR", "request_id": request_id(), "error": "Unknown API Key"}


def not_authorized_body() -> dict[str, Any]:
    return {
        "status": "NOT_AUTHORIZED",
        "request_id": request_id(),
        "message": "You are not entitled to this data. Please upgrade your plan at "
        "https://polygon.io/pricing",
    }


def rate_limit_body() -> dict[str, Any]:
    return {
        "status": "ERROR",
        "request_id": request_id(),
        "error": "You've exceeded the maximum requests per minute, please wait or upgrade "
        "your subscription to continue. https://polygon.io/pricing",
    }


SERVER_ERROR_BODY: dict[str, Any] = {
    "status": "ERROR",
    "request_id": "b2ed8e1c4a7f4e5d9c3b1a0f6e2d8c4b",
    "error": "Internal server error",
}
UNAVAILABLE_BODY = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"
)
HTML = {"Content-Type": "text/html"}


@dataclass
class MassiveState:
    """What the fake serves.

    Attributes
    ----------
    bars:
        Massive ticker (``SPY``, ``I:VIX``, ``X:BTCUSD``) -> frame with columns
        ``date, open, high, low, close, volume`` (``adj_close`` ignored).
    api_key:
        The only key accepted.
    not_entitled:
        Tickers the key's plan does not cover (HTTP 403).
    leak_after_end:
        Also send this many bars after ``to``; a correct client drops them.
    """

    bars: dict[str, pd.DataFrame]
    api_key: str
    not_entitled: set[str] = field(default_factory=set)
    leak_after_end: int = 0


def _bar_zone(ticker: str) -> ZoneInfo:
    return ZoneInfo("UTC" if ticker.startswith("X:") else "America/New_York")


def _day(value: str, zone: ZoneInfo) -> date:
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, zone).date()
    return date.fromisoformat(value)


def _ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), zone).timestamp() * 1000)


def _result(ticker: str, row: Any, zone: ZoneInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "o": float(row.open),
        "h": float(row.high),
        "l": float(row.low),
        "c": float(row.close),
        "t": _ms(row.date, zone),
    }
    if not ticker.startswith("I:"):
        volume = float(row.volume)
        out["v"] = 0.0 if math.isnan(volume) else volume
        out["vw"] = round((float(row.high) + float(row.low) + float(row.close)) / 3, 4)
        out["n"] = 1000
    return out


class MassiveHandler(FakeHandler):
    """Routes the aggregates endpoint; anything else is the API's 404."""

    @property
    def state(self) -> MassiveState:
        state = self.fake.state
        assert isinstance(state, MassiveState)
        return state

    def _key(self, query: dict[str, list[str]]) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        return query.get("apiKey", [None])[0]

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        key = self._key(query)
        if not key:
            return (
                401,
                {},
                {
                    "status": "ERROR",
                    "request_id": request_id(),
                    "error": "API Key was not provided",
                },
            )
        if key != self.state.api_key:
            return 401, {}, unknown_key_body()
        parts = [unquote(p) for p in path.split("/")]
        # ["", "v2", "aggs", "ticker", T, "range", mult, timespan, from, to]
        if not path.startswith(AGGS_PREFIX) or len(parts) != 10 or parts[5] != "range":
            return (
                404,
                {},
                {"status": "NOT_FOUND", "request_id": request_id(), "message": "Not found"},
            )
        ticker, multiplier, timespan, from_, to = parts[4], parts[6], parts[7], parts[8], parts[9]
        if ticker in self.state.not_entitled:
            return 403, {}, not_authorized_body()
        if multiplier != "1" or timespan != "day":
            return (
                400,
                {},
                {
                    "status": "ERROR",
                    "request_id": request_id(),
                    "error": "the fake serves 1/day aggregates only",
                },
            )
        zone = _bar_zone(ticker)
        lo, hi = _day(from_, zone), _day(to, zone)
        frame = self.state.bars.get(ticker)
        adjusted = query.get("adjusted", ["true"])[0] == "true"
        payload: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": 0,
            "resultsCount": 0,
            "adjusted": adjusted,
        }
        if frame is not None and len(frame):
            frame = frame.sort_values("date").reset_index(drop=True)
            frame["date"] = [pd.Timestamp(d).date() for d in frame["date"]]
            inside = frame[(frame["date"] >= lo) & (frame["date"] <= hi)]
            if self.state.leak_after_end:
                later = frame[frame["date"] > hi].head(self.state.leak_after_end)
                inside = pd.concat([inside, later])
            if query.get("sort", ["asc"])[0] == "desc":
                inside = inside.iloc[::-1]
            limit = int(query.get("limit", ["5000"])[0])
            inside = inside.head(limit)
            if len(inside):
                results = [_result(ticker, row, zone) for row in inside.itertuples()]
                payload.update(queryCount=len(results), resultsCount=len(results), results=results)
        payload.update(status="OK", request_id=request_id())
        return 200, {}, payload


def massive_server(
    bars: dict[str, pd.DataFrame],
    api_key: str,
    not_entitled: set[str] | None = None,
    leak_after_end: int = 0,
) -> FakeServer:
    """A (not yet started) fake Massive API serving ``bars`` to ``api_key``."""
    state = MassiveState(
        bars=bars,
        api_key=api_key,
        not_entitled=set(not_entitled or ()),
        leak_after_end=leak_after_end,
    )
    return FakeServer(MassiveHandler, state=state)
