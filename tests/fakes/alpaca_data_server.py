"""A fake of Alpaca's historical market-data API (daily bars only).

Serves ``GET /v2/stocks/bars`` and ``GET /v1beta3/crypto/us/bars`` the way
``data.alpaca.markets`` does, as far as alpaca-py 0.44 and Tiller use them:

* auth by the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers; missing
  or wrong credentials are HTTP 403 ``{"message":"forbidden"}`` (the market
  data FAQ: "403 if the request was not authenticated or the provided
  credentials were incorrect"); the crypto endpoint also works without keys;
* ``feed=sip`` without a SIP subscription is HTTP 403
  ``{"message":"subscription does not permit querying recent SIP data"}``;
* a malformed stock symbol (digits, lower case...) is HTTP 400
  ``{"message":"invalid symbol: X"}``; a well-formed but unknown symbol is
  HTTP 200 with no bars for it (``{"bars":{},"next_page_token":null}``);
* bars are ``{"c","h","l","n","o","t","v","vw"}`` records keyed by symbol,
  ``t`` in RFC 3339 UTC: a daily stock bar at midnight New York
  (``2024-01-02T05:00:00Z``), a daily crypto bar at midnight US Central
  (``2024-01-02T06:00:00Z``);
* ``start``/``end`` are inclusive RFC 3339 bounds on ``t``; results are sorted
  by symbol then time and paged by ``limit`` with an opaque base64
  ``next_page_token`` (``null`` on the last page).

Test knobs on :class:`AlpacaDataState`: ``page_size`` caps every page below
the SDK's ``limit=10000`` so pagination is exercised, ``leak`` ignores
``end`` (a misbehaving upstream) so a test can prove the provider clips, and
``adj_factor`` (a column of the stock frames) turns split-adjusted prices into
fully adjusted ones for ``adjustment=all``.  Splits are not modelled:
``adjustment=raw`` and ``split`` answer the same prices.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from tests.fakes.http import FakeHandler, FakeServer

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
_STOCK_SYMBOL = re.compile(r"^[A-Z]{1,6}([./][A-Z]{1,2})?$")
_CRYPTO_SYMBOL = re.compile(r"^[A-Z0-9]{1,10}/[A-Z0-9]{1,10}$")

FORBIDDEN = {"message": "forbidden"}
TOO_MANY_REQUESTS = {"message": "too many requests"}


@dataclass
class AlpacaDataState:
    """What the fake serves.

    Attributes
    ----------
    stocks, crypto:
        Frames keyed by Alpaca symbol (``SPY``, ``BTC/USD``) with columns
        ``date, open, high, low, close, volume`` and, for stocks, an optional
        ``adj_factor`` (fully adjusted price / split-adjusted price, default 1).
    api_key, secret_key:
        The credentials the fake accepts.
    sip_allowed:
        Whether ``feed=sip`` is allowed.
    page_size:
        Server-side cap on bars per page (the real API caps at 10000).
    leak:
        Ignore ``end`` and return every bar from ``start`` on.
    """

    stocks: dict[str, pd.DataFrame] = field(default_factory=dict)
    crypto: dict[str, pd.DataFrame] = field(default_factory=dict)
    api_key: str = "PKFAKEKEYID0000000000"
    secret_key: str = "fakesecretkey0000000000000000000000000000"
    sip_allowed: bool = False
    page_size: int = 10_000
    leak: bool = False


def bar_timestamp(day: Any, crypto: bool) -> str:
    """Alpaca's ``t`` for the daily bar of ``day``: midnight New York (stocks) or Chicago."""
    zone = CHICAGO if crypto else NEW_YORK
    local = datetime.combine(pd.Timestamp(day).date(), time(0, 0), tzinfo=zone)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp or a bare date (taken as UTC midnight)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(value: float) -> float | int:
    """JSON number as Alpaca writes it: integral floats without a fraction."""
    return int(value) if float(value).is_integer() else float(value)


class AlpacaDataHandler(FakeHandler):
    """Routes of the fake market-data API."""

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        state: AlpacaDataState = self.fake.state
        if method != "GET":
            return 405, {"Content-Type": "text/plain"}, "Method Not Allowed"
        if path == "/v2/stocks/bars":
            return self._bars(state, query, crypto=False)
        if path == "/v1beta3/crypto/us/bars":
            return self._bars(state, query, crypto=True)
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, "404 page not found"

    def _authorised(self, state: AlpacaDataState, crypto: bool) -> bool:
        key = self.headers.get("APCA-API-KEY-ID")
        secret = self.headers.get("APCA-API-SECRET-KEY")
        if crypto and key is None and secret is None:
            return True  # crypto data is public
        return key == state.api_key and secret == state.secret_key

    def _bars(
        self, state: AlpacaDataState, query: dict[str, list[str]], crypto: bool
    ) -> tuple[int, dict[str, str], Any]:
        if not self._authorised(state, crypto):
            return 403, {}, FORBIDDEN
        params = {k: v[-1] for k, v in query.items()}
        symbols = [s for s in params.get("symbols", "").split(",") if s]
        if not symbols:
            return 400, {}, {"message": "missing symbols"}
        pattern = _CRYPTO_SYMBOL if crypto else _STOCK_SYMBOL
        for symbol in symbols:
            if not pattern.match(symbol):
                return 400, {}, {"message": f"invalid symbol: {symbol}"}
        if params.get("timeframe") != "1Day":
            return 400, {}, {"message": "invalid timeframe"}
        feed = params.get("feed", "sip")
        if not crypto:
            if feed not in ("iex", "sip", "delayed_sip", "otc", "boats", "overnight"):
                return 400, {}, {"message": "invalid feed"}
            if feed == "sip" and not state.sip_allowed:
                return 403, {}, {"message": "subscription does not permit querying recent SIP data"}
        adjustment = params.get("adjustment", "raw")
        if adjustment not in ("raw", "split", "dividend", "all"):
            return 400, {}, {"message": "invalid adjustment"}
        try:
            start = _parse_time(params["start"]) if "start" in params else None
            end = _parse_time(params["end"]) if "end" in params else None
            limit = int(params.get("limit", "1000"))
        except ValueError as exc:
            return 400, {}, {"message": str(exc)}
        if not 1 <= limit <= 10_000:
            return 400, {}, {"message": "invalid limit: exceeds the maximum 10000"}

        items: list[tuple[str, dict[str, Any]]] = []
        book = state.crypto if crypto else state.stocks
        for symbol in sorted(set(symbols)):
            frame = book.get(symbol)
            if frame is None:
                continue
            for row in frame.sort_values("date").itertuples(index=False):
                t = bar_timestamp(row.date, crypto)
                when = _parse_time(t)
                if start is not None and when < start:
                    continue
                if end is not None and when > end and not state.leak:
                    continue
                items.append((symbol, self._record(row, t, adjustment, crypto)))

        offset = 0
        if params.get("page_token"):
            try:
                offset = int(base64.b64decode(params["page_token"]).decode().split("|")[-1])
            except (ValueError, UnicodeDecodeError):
                return 400, {}, {"message": "invalid page token"}
        size = min(limit, state.page_size)
        page = items[offset : offset + size]
        bars: dict[str, list[dict[str, Any]]] = {}
        for symbol, record in page:
            bars.setdefault(symbol, []).append(record)
        next_token = None
        if offset + size < len(items):
            last_symbol = page[-1][0]
            raw = f"{last_symbol}|D|{page[-1][1]['t']}|{offset + size}"
            next_token = base64.b64encode(raw.encode()).decode()
        return 200, {}, {"bars": bars, "next_page_token": next_token}

    @staticmethod
    def _record(row: Any, t: str, adjustment: str, crypto: bool) -> dict[str, Any]:
        factor = 1.0
        if adjustment in ("all", "dividend") and hasattr(row, "adj_factor"):
            factor = float(row.adj_factor)
        o, h, low, c = (float(x) * factor for x in (row.open, row.high, row.low, row.close))
        volume = float(row.volume)
        return {
            "c": _number(round(c, 6)),
            "h": _number(round(h, 6)),
            "l": _number(round(low, 6)),
            "n": max(1, int(volume // 100)) if not math.isnan(volume) else 0,
            "o": _number(round(o, 6)),
            "t": t,
            "v": float(volume) if crypto else int(volume),
            "vw": round((h + low + c) / 3, 6),
        }


def alpaca_data_server(state: AlpacaDataState | None = None) -> FakeServer:
    """A :class:`FakeServer` running the fake market-data API (use as a context manager)."""
    return FakeServer(AlpacaDataHandler, state or AlpacaDataState())
