"""A stateful fake of Alpaca's paper trading API (``paper-api.alpaca.markets/v2``).

Serves what alpaca-py 0.44's ``TradingClient`` calls and Tiller uses:

* ``GET /v2/account``, ``GET /v2/clock``, ``GET /v2/assets/{symbol}``
  (``BTC/USD`` or ``BTCUSD``);
* ``POST /v2/orders`` (market orders), ``GET /v2/orders`` (``status=open|closed|all``,
  ``limit``, ``direction``, ``symbols``, ``side``), ``GET /v2/orders/{id}``,
  ``GET /v2/orders:by_client_order_id?client_order_id=...``,
  ``DELETE /v2/orders/{id}`` (204) and ``DELETE /v2/orders`` (207 multi-status);
* ``GET /v2/positions`` and ``GET /v2/positions/{symbol}``.

Behaviour modelled on the real API:

* auth by the ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` headers; wrong or
  missing keys are HTTP 401 ``{"code":40110000,"message":"request is not authorized"}``;
* quantities and prices are JSON *strings* (``"10"``, ``"451.23"``), timestamps
  RFC 3339 UTC; crypto orders carry ``BTC/USD``, crypto positions ``BTCUSD``;
* an order is *accepted first*: ``pending_new`` (``accepted`` for a stock while
  the market is closed: Alpaca queues it for the next open, it does not refuse
  it); only the test moves it on with :meth:`AlpacaTradingState.fill`
  (``partially_filled``/``filled``, updating positions and cash),
  :meth:`~AlpacaTradingState.expire` or :meth:`~AlpacaTradingState.reject`;
* a reused ``client_order_id`` is HTTP 422
  ``{"code":40010001,"message":"client_order_id must be unique"}``;
* a buy above buying power is HTTP 403 ``{"buying_power":"...","code":40310000,
  "cost_basis":"...","message":"insufficient buying power"}`` (crypto:
  ``"insufficient balance for USD (requested: X, available: Y)"``); a sell above
  the free quantity is HTTP 403 code 40310000 ``"insufficient qty available for
  order (requested: X, available: Y)"`` (crypto: ``"insufficient balance for BTC
  (...)"``) -- short selling is not modelled;
* an unknown symbol is HTTP 422 ``{"code":42210000,"message":"asset \\"XYZ\\" not found"}``,
  an untradable one ``... "asset \\"XYZ\\" is not tradable"``; ``qty <= 0`` is 422
  code 40010001 ``"qty must be > 0"``; ``time_in_force=day`` on crypto is 422
  ``"invalid crypto time_in_force"``; only ``type=market`` is accepted;
* an unknown order id is HTTP 404 ``{"code":40410000,"message":"order not found"}``;
  canceling an order that is no longer open is HTTP 422 code 42210000
  ``order is already in "filled" state``;
* buying power is cash (multiplier 1) minus what open buy orders reserve at the
  asset's reference price; equity is cash plus positions at reference prices.

Faults (429, 5xx, delays) are queued with :meth:`FakeServer.fail_next` /
:meth:`FakeServer.delay_next`; :data:`RATE_LIMITED` is the real 429 body.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from tests.fakes.http import FakeHandler, FakeServer

UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}
RATE_LIMITED = {"code": 42910000, "message": "rate limit exceeded"}
ORDER_NOT_FOUND = {"code": 40410000, "message": "order not found"}
DUPLICATE_CID = {"code": 40010001, "message": "client_order_id must be unique"}
INTERNAL_ERROR = {"code": 50010000, "message": "internal server error occurred"}

OPEN_STATUSES = frozenset(
    {
        "new",
        "partially_filled",
        "accepted",
        "pending_new",
        "done_for_day",
        "pending_cancel",
        "pending_replace",
        "accepted_for_bidding",
        "stopped",
        "suspended",
        "calculated",
        "held",
    }
)
_CRYPTO_TILLER = re.compile(r"^([A-Z0-9]{2,10})-(USDT|USDC|USD)$")
_EPS = 1e-12


def _s(value: float) -> str:
    """A number as Alpaca writes it: a string without float noise (``"10"``, ``"0.5"``)."""
    text = f"{round(float(value), 9):.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _ts(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeAsset:
    """One tradable (or not) asset; ``price`` is the reference price for checks and valuation."""

    symbol: str  # Alpaca symbol: SPY, BRK.B, BTC/USD
    price: float
    asset_class: str = "us_equity"
    exchange: str = "ARCA"
    tradable: bool = True
    fractionable: bool = True
    name: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def crypto(self) -> bool:
        return self.asset_class == "crypto"

    @property
    def position_symbol(self) -> str:
        """The symbol positions carry: ``BTCUSD`` for ``BTC/USD``."""
        return self.symbol.replace("/", "")

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "class": self.asset_class,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "name": self.name or self.symbol,
            "status": "active",
            "tradable": self.tradable,
            "marginable": not self.crypto,
            "maintenance_margin_requirement": 100 if self.crypto else 30,
            "margin_requirement_long": "100" if self.crypto else "30",
            "margin_requirement_short": "100",
            "shortable": not self.crypto,
            "easy_to_borrow": not self.crypto,
            "fractionable": self.fractionable,
            "attributes": [],
        }
        if self.crypto:
            record.update(
                min_order_size="0.000011", min_trade_increment="0.000000001", price_increment="1"
            )
        return record


def default_assets() -> dict[str, FakeAsset]:
    """A small universe: ETFs Tiller trades, two crypto pairs and one untradable stock."""
    assets = [
        FakeAsset("SPY", 500.0, name="SPDR S&P 500 ETF Trust"),
        FakeAsset("QQQ", 430.0, exchange="NASDAQ", name="Invesco QQQ Trust"),
        FakeAsset("TLT", 95.0, exchange="NASDAQ", name="iShares 20+ Year Treasury Bond ETF"),
        FakeAsset("GLD", 190.0, name="SPDR Gold Shares"),
        FakeAsset("IEF", 95.5, exchange="NASDAQ", name="iShares 7-10 Year Treasury Bond ETF"),
        FakeAsset("BRK.B", 410.0, exchange="NYSE", name="Berkshire Hathaway Inc. Class B"),
        FakeAsset("HALT", 3.0, exchange="NASDAQ", tradable=False, name="Halted Corp"),
        FakeAsset("BTC/USD", 60_000.0, asset_class="crypto", exchange="CRYPTO", name="Bitcoin"),
        FakeAsset("ETH/USD", 3_000.0, asset_class="crypto", exchange="CRYPTO", name="Ethereum"),
    ]
    return {a.symbol: a for a in assets}


@dataclass
class AlpacaTradingState:
    """The account the fake serves, plus the test's controls.

    Attributes
    ----------
    api_key, secret_key:
        The credentials the fake accepts.
    cash:
        Account cash in USD.
    market_open:
        What ``/v2/clock`` says; a stock order sent while closed is ``accepted``
        (queued), otherwise ``pending_new``.
    assets:
        Known assets keyed by Alpaca symbol.
    orders:
        Order records keyed by order id (floats inside, strings on the wire).
    positions:
        ``{position symbol: {"qty": float, "avg": float}}`` (``BTCUSD`` for crypto).
    stall_after_submit:
        Seconds to wait *after* creating each of the next orders before answering
        (popped one per ``POST /v2/orders``): the order exists but the client may
        time out, as when Alpaca's answer is lost on the way back.
    fill_on_submit:
        Fill a market order that is not queued at the asset's price right after
        answering its ``POST`` (the answer still says ``pending_new``; the next read
        shows it filled), as Alpaca paper does in market hours.
    """

    api_key: str = "PKFAKETRADINGKEY0000"
    secret_key: str = "faketradingsecret000000000000000000000000"
    cash: float = 100_000.0
    market_open: bool = True
    assets: dict[str, FakeAsset] = field(default_factory=default_assets)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: dict[str, dict[str, float]] = field(default_factory=dict)
    account_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    stall_after_submit: list[float] = field(default_factory=list)
    fill_on_submit: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # ------------------------------------------------------------------ lookups

    def asset(self, symbol: str) -> FakeAsset | None:
        """The asset for an Alpaca (``BTC/USD``, ``BTCUSD``) or Tiller (``BTC-USD``) symbol."""
        symbol = symbol.strip().upper()
        if symbol in self.assets:
            return self.assets[symbol]
        match = _CRYPTO_TILLER.match(symbol)
        if match and f"{match.group(1)}/{match.group(2)}" in self.assets:
            return self.assets[f"{match.group(1)}/{match.group(2)}"]
        for asset in self.assets.values():
            if asset.position_symbol == symbol or asset.symbol == symbol.replace("-", "."):
                return asset
        return None

    def find_order(self, order_id_or_cid: str) -> dict[str, Any]:
        """An order by broker id or client order id (KeyError if none)."""
        with self.lock:
            if order_id_or_cid in self.orders:
                return self.orders[order_id_or_cid]
            for order in self.orders.values():
                if order["client_order_id"] == order_id_or_cid:
                    return order
        raise KeyError(f"no order {order_id_or_cid!r}")

    def reserved_cash(self) -> float:
        """USD held for the unfilled part of open buy orders."""
        total = 0.0
        for o in self.orders.values():
            if o["status"] in OPEN_STATUSES and o["side"] == "buy":
                asset = self.assets[o["symbol"]]
                total += (o["qty"] - o["filled_qty"]) * asset.price
        return total

    def held_qty(self, position_symbol: str) -> float:
        """Quantity held for the unfilled part of open sell orders."""
        total = 0.0
        for o in self.orders.values():
            if (
                o["status"] in OPEN_STATUSES
                and o["side"] == "sell"
                and self.assets[o["symbol"]].position_symbol == position_symbol
            ):
                total += o["qty"] - o["filled_qty"]
        return total

    def buying_power(self) -> float:
        return max(0.0, self.cash - self.reserved_cash())

    def equity(self) -> float:
        value = self.cash
        for symbol, pos in self.positions.items():
            asset = self.asset(symbol)
            value += pos["qty"] * (asset.price if asset else pos["avg"])
        return value

    # -------------------------------------------------------------- test knobs

    def add_asset(self, asset: FakeAsset) -> FakeAsset:
        with self.lock:
            self.assets[asset.symbol] = asset
        return asset

    def set_price(self, symbol: str, price: float) -> None:
        asset = self.asset(symbol)
        if asset is None:
            raise KeyError(symbol)
        asset.price = float(price)

    def set_position(
        self, symbol: str, qty: float, avg_entry_price: float, adjust_cash: bool = False
    ) -> None:
        """Inject (or replace) a position, e.g. a fill Tiller never saw; qty 0 removes it.

        ``adjust_cash`` also moves cash by the difference in cost, as a real fill would.
        """
        asset = self.asset(symbol)
        if asset is None:
            raise KeyError(f"unknown asset {symbol!r}")
        with self.lock:
            key = asset.position_symbol
            old = self.positions.get(key, {"qty": 0.0, "avg": 0.0})
            if adjust_cash:
                self.cash -= qty * avg_entry_price - old["qty"] * old["avg"]
            if abs(qty) < _EPS:
                self.positions.pop(key, None)
            else:
                self.positions[key] = {"qty": float(qty), "avg": float(avg_entry_price)}

    def fill(self, order_id_or_cid: str, price: float, qty: float | None = None) -> dict[str, Any]:
        """Fill ``qty`` (default: all that remains) of an open order at ``price``.

        Moves the order to ``partially_filled`` or ``filled``, updates the
        position (weighted average entry on buys) and cash.  Returns the order JSON.
        """
        with self.lock:
            order = self.find_order(order_id_or_cid)
            if order["status"] not in OPEN_STATUSES:
                raise ValueError(f"order {order['id']} is {order['status']}, not open")
            remaining = order["qty"] - order["filled_qty"]
            qty = remaining if qty is None else float(qty)
            if not 0 < qty <= remaining + _EPS:
                raise ValueError(f"fill qty {qty} outside (0, {remaining}]")
            asset = self.assets[order["symbol"]]
            now = datetime.now(UTC)
            filled_before = order["filled_qty"]
            avg_before = order["filled_avg_price"] or 0.0
            order["filled_qty"] = filled_before + qty
            order["filled_avg_price"] = (filled_before * avg_before + qty * price) / order[
                "filled_qty"
            ]
            done = order["qty"] - order["filled_qty"] <= _EPS
            order["status"] = "filled" if done else "partially_filled"
            order["updated_at"] = now
            if done:
                order["filled_at"] = now
            key = asset.position_symbol
            pos = self.positions.get(key, {"qty": 0.0, "avg": 0.0})
            if order["side"] == "buy":
                new_qty = pos["qty"] + qty
                avg = (pos["qty"] * pos["avg"] + qty * price) / new_qty
                self.positions[key] = {"qty": new_qty, "avg": avg}
                self.cash -= qty * price
            else:
                new_qty = pos["qty"] - qty
                if abs(new_qty) < _EPS:
                    self.positions.pop(key, None)
                else:
                    self.positions[key] = {"qty": new_qty, "avg": pos["avg"]}
                self.cash += qty * price
            return order_json(order, asset)

    def fill_all(self, prices: Mapping[str, float] | None = None) -> list[str]:
        """Fill every open order completely at ``prices`` (any symbol form) or the asset price.

        Returns the ids of the orders filled.
        """
        wanted = {}
        for symbol, price in (prices or {}).items():
            asset = self.asset(symbol)
            if asset is None:
                raise KeyError(f"unknown asset {symbol!r}")
            wanted[asset.symbol] = float(price)
        filled = []
        with self.lock:
            for order in list(self.orders.values()):
                if order["status"] in OPEN_STATUSES:
                    asset = self.assets[order["symbol"]]
                    self.fill(order["id"], wanted.get(asset.symbol, asset.price))
                    filled.append(order["id"])
        return filled

    def _finish(self, order_id_or_cid: str, status: str, stamp: str) -> dict[str, Any]:
        with self.lock:
            order = self.find_order(order_id_or_cid)
            if order["status"] not in OPEN_STATUSES:
                raise ValueError(f"order {order['id']} is {order['status']}, not open")
            now = datetime.now(UTC)
            order["status"] = status
            order[stamp] = now
            order["updated_at"] = now
            return order_json(order, self.assets[order["symbol"]])

    def expire(self, order_id_or_cid: str) -> dict[str, Any]:
        """End an open order as ``expired`` (a day order unfilled at the close)."""
        return self._finish(order_id_or_cid, "expired", "expired_at")

    def reject(self, order_id_or_cid: str) -> dict[str, Any]:
        """End an open order as ``rejected`` (after it was accepted)."""
        return self._finish(order_id_or_cid, "rejected", "failed_at")

    def cancel(self, order_id_or_cid: str) -> dict[str, Any]:
        """End an open order as ``canceled``."""
        return self._finish(order_id_or_cid, "canceled", "canceled_at")


def order_json(order: dict[str, Any], asset: FakeAsset) -> dict[str, Any]:
    """An order as Alpaca's API writes it (numbers as strings)."""
    intent = "buy_to_open" if order["side"] == "buy" else "sell_to_close"
    return {
        "id": order["id"],
        "client_order_id": order["client_order_id"],
        "created_at": _ts(order["created_at"]),
        "updated_at": _ts(order["updated_at"]),
        "submitted_at": _ts(order["submitted_at"]),
        "filled_at": _ts(order.get("filled_at")),
        "expired_at": _ts(order.get("expired_at")),
        "canceled_at": _ts(order.get("canceled_at")),
        "failed_at": _ts(order.get("failed_at")),
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": asset.id,
        "symbol": asset.symbol,
        "asset_class": asset.asset_class,
        "notional": None,
        "qty": _s(order["qty"]),
        "filled_qty": _s(order["filled_qty"]),
        "filled_avg_price": (
            None if order["filled_avg_price"] is None else _s(order["filled_avg_price"])
        ),
        "order_class": "",
        "order_type": "market",
        "type": "market",
        "side": order["side"],
        "position_intent": intent,
        "time_in_force": order["time_in_force"],
        "limit_price": None,
        "stop_price": None,
        "status": order["status"],
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "subtag": None,
        "source": None,
        "expires_at": _ts(order["submitted_at"] + timedelta(days=90 if asset.crypto else 1)),
    }


def position_json(symbol: str, pos: dict[str, float], asset: FakeAsset) -> dict[str, Any]:
    """A position as Alpaca's API writes it (``BTCUSD`` for crypto; numbers as strings)."""
    qty, avg, price = pos["qty"], pos["avg"], asset.price
    cost = qty * avg
    value = qty * price
    pl = value - cost
    return {
        "asset_id": asset.id,
        "symbol": symbol,
        "exchange": asset.exchange,
        "asset_class": asset.asset_class,
        "asset_marginable": not asset.crypto,
        "qty": _s(qty),
        "avg_entry_price": _s(avg),
        "side": "long" if qty > 0 else "short",
        "market_value": _s(value),
        "cost_basis": _s(cost),
        "unrealized_pl": _s(pl),
        "unrealized_plpc": _s(pl / cost) if cost else "0",
        "unrealized_intraday_pl": _s(pl),
        "unrealized_intraday_plpc": _s(pl / cost) if cost else "0",
        "current_price": _s(price),
        "lastday_price": _s(price),
        "change_today": "0",
        "qty_available": _s(qty),
    }


class AlpacaTradingHandler(FakeHandler):
    """Routes of the fake trading API."""

    # Headers and body go out in two writes: without TCP_NODELAY every answer
    # waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        state: AlpacaTradingState = self.fake.state
        if not path.startswith("/v2/"):
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, "404 page not found"
        if (
            self.headers.get("APCA-API-KEY-ID") != state.api_key
            or self.headers.get("APCA-API-SECRET-KEY") != state.secret_key
        ):
            return 401, {}, UNAUTHORIZED
        params = {k: v[-1] for k, v in query.items()}
        with state.lock:
            if method == "GET" and path == "/v2/account":
                return 200, {}, self._account(state)
            if method == "GET" and path == "/v2/clock":
                return 200, {}, self._clock(state)
            if method == "GET" and path.startswith("/v2/assets/"):
                asset = state.asset(unquote(path.removeprefix("/v2/assets/")))
                if asset is None:
                    name = unquote(path.removeprefix("/v2/assets/"))
                    return 404, {}, {"code": 40410000, "message": f"asset not found for {name}"}
                return 200, {}, asset.to_json()
            if path == "/v2/orders" and method == "POST":
                answer = self._submit(state, body)
                created = answer[0] == 200 and state.stall_after_submit
                stall = state.stall_after_submit.pop(0) if created else 0.0
            else:
                answer, stall = None, 0.0
        if answer is not None:
            time.sleep(stall)  # outside the lock: other requests go on meanwhile
            return answer
        with state.lock:
            if path == "/v2/orders" and method == "GET":
                return self._list(state, params)
            if path == "/v2/orders" and method == "DELETE":
                return self._cancel_all(state)
            if path == "/v2/orders:by_client_order_id" and method == "GET":
                cid = params.get("client_order_id", "")
                try:
                    order = state.find_order(cid)
                except KeyError:
                    return 404, {}, ORDER_NOT_FOUND
                if order["client_order_id"] != cid:
                    return 404, {}, ORDER_NOT_FOUND
                return 200, {}, order_json(order, state.assets[order["symbol"]])
            if path.startswith("/v2/orders/"):
                order_id = path.removeprefix("/v2/orders/")
                order = state.orders.get(order_id)
                if order is None:
                    return 404, {}, ORDER_NOT_FOUND
                if method == "GET":
                    return 200, {}, order_json(order, state.assets[order["symbol"]])
                if method == "DELETE":
                    if order["status"] not in OPEN_STATUSES:
                        message = f'order is already in "{order["status"]}" state'
                        return 422, {}, {"code": 42210000, "message": message}
                    state.cancel(order_id)
                    return 204, {}, None
            if method == "GET" and path == "/v2/positions":
                rows = []
                for symbol, pos in sorted(state.positions.items()):
                    asset = state.asset(symbol)
                    if asset is not None:
                        rows.append(position_json(symbol, pos, asset))
                return 200, {}, rows
            if method == "GET" and path.startswith("/v2/positions/"):
                asset = state.asset(unquote(path.removeprefix("/v2/positions/")))
                pos = state.positions.get(asset.position_symbol) if asset else None
                if asset is None or pos is None:
                    return 404, {}, {"code": 40410000, "message": "position does not exist"}
                return 200, {}, position_json(asset.position_symbol, pos, asset)
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, "404 page not found"

    # ---------------------------------------------------------------- endpoints

    @staticmethod
    def _account(state: AlpacaTradingState) -> dict[str, Any]:
        long_value = sum(
            p["qty"] * (a.price if (a := state.asset(s)) else p["avg"])
            for s, p in state.positions.items()
        )
        bp = state.buying_power()
        equity = state.equity()
        return {
            "id": state.account_id,
            "admin_configurations": {},
            "user_configurations": None,
            "account_number": "PA3FAKE0TILLER",
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "options_approved_level": 0,
            "options_trading_level": 0,
            "currency": "USD",
            "buying_power": _s(bp),
            "regt_buying_power": _s(bp),
            "daytrading_buying_power": "0",
            "effective_buying_power": _s(bp),
            "non_marginable_buying_power": _s(bp),
            "options_buying_power": _s(bp),
            "bod_dtbp": "0",
            "cash": _s(state.cash),
            "accrued_fees": "0",
            "portfolio_value": _s(equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": "2024-01-02T14:30:00.000000Z",
            "trade_suspended_by_user": False,
            "multiplier": "1",
            "shorting_enabled": False,
            "equity": _s(equity),
            "last_equity": _s(equity),
            "long_market_value": _s(long_value),
            "short_market_value": "0",
            "position_market_value": _s(long_value),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "balance_asof": datetime.now(UTC).strftime("%Y-%m-%d"),
            "crypto_tier": 1,
            "intraday_adjustments": "0",
            "pending_reg_taf_fees": "0",
        }

    @staticmethod
    def _clock(state: AlpacaTradingState) -> dict[str, Any]:
        now = datetime.now(UTC).replace(microsecond=0)
        return {
            "timestamp": now.isoformat(),
            "is_open": state.market_open,
            "next_open": (now + timedelta(hours=2 if not state.market_open else 20)).isoformat(),
            "next_close": (now + timedelta(hours=4 if state.market_open else 8)).isoformat(),
        }

    @staticmethod
    def _submit(state: AlpacaTradingState, body: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {}, {"code": 40010000, "message": "request body format is invalid"}
        if not isinstance(data, dict):
            return 400, {}, {"code": 40010000, "message": "request body format is invalid"}
        cid = str(data.get("client_order_id") or uuid.uuid4())
        if len(cid) > 128:
            message = "client_order_id must be no more than 128 characters"
            return 422, {}, {"code": 40010001, "message": message}
        if any(o["client_order_id"] == cid for o in state.orders.values()):
            return 422, {}, DUPLICATE_CID
        symbol = str(data.get("symbol") or "")
        side = data.get("side")
        if side not in ("buy", "sell"):
            return 422, {}, {"code": 40010001, "message": "invalid order side"}
        if data.get("type", "market") != "market":
            return 422, {}, {"code": 40010001, "message": "fake supports market orders only"}
        if data.get("notional") is not None:
            return 422, {}, {"code": 40010001, "message": "fake supports qty orders only"}
        try:
            qty = float(data["qty"])
        except (KeyError, TypeError, ValueError):
            return 422, {}, {"code": 40010001, "message": "qty is required"}
        if not qty > 0:
            return 422, {}, {"code": 40010001, "message": "qty must be > 0"}
        asset = state.assets.get(symbol)
        if asset is None:
            return 422, {}, {"code": 42210000, "message": f'asset "{symbol}" not found'}
        if not asset.tradable:
            return 422, {}, {"code": 42210000, "message": f'asset "{symbol}" is not tradable'}
        tif = data.get("time_in_force")
        allowed = ("gtc", "ioc") if asset.crypto else ("day", "gtc", "opg", "cls", "ioc", "fok")
        if tif not in allowed:
            kind = "crypto" if asset.crypto else "equity"
            return 422, {}, {"code": 42210000, "message": f"invalid {kind} time_in_force"}
        if not asset.fractionable and not float(qty).is_integer():
            message = f'requested asset "{symbol}" is not fractionable'
            return 422, {}, {"code": 42210000, "message": message}
        if side == "buy":
            cost = qty * asset.price
            available = state.buying_power()
            if cost > available + _EPS:
                if asset.crypto:
                    message = (
                        f"insufficient balance for USD (requested: {_s(cost)}, "
                        f"available: {_s(available)})"
                    )
                    return 403, {}, {"code": 40310000, "message": message}
                return (
                    403,
                    {},
                    {
                        "buying_power": _s(available),
                        "code": 40310000,
                        "cost_basis": _s(cost),
                        "message": "insufficient buying power",
                    },
                )
        else:
            held = state.positions.get(asset.position_symbol, {"qty": 0.0})["qty"]
            free = held - state.held_qty(asset.position_symbol)
            if qty > free + _EPS:
                if asset.crypto:
                    base = asset.symbol.split("/")[0]
                    message = (
                        f"insufficient balance for {base} (requested: {_s(qty)}, "
                        f"available: {_s(max(free, 0.0))})"
                    )
                    return 403, {}, {"code": 40310000, "message": message}
                message = (
                    f"insufficient qty available for order (requested: {_s(qty)}, "
                    f"available: {_s(max(free, 0.0))})"
                )
                return (
                    403,
                    {},
                    {
                        "code": 40310000,
                        "existing_qty": _s(held),
                        "held_for_orders": _s(state.held_qty(asset.position_symbol)),
                        "message": message,
                        "symbol": asset.symbol,
                    },
                )
        now = datetime.now(UTC)
        queued = not asset.crypto and not state.market_open
        order = {
            "id": str(uuid.uuid4()),
            "client_order_id": cid,
            "symbol": asset.symbol,
            "side": side,
            "qty": qty,
            "filled_qty": 0.0,
            "filled_avg_price": None,
            "time_in_force": tif,
            "status": "accepted" if queued else "pending_new",
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
        }
        state.orders[order["id"]] = order
        answer = order_json(order, asset)
        if state.fill_on_submit and not queued:
            state.fill(order["id"], asset.price)
        return 200, {}, answer

    @staticmethod
    def _list(state: AlpacaTradingState, params: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        status = params.get("status", "open")
        if status not in ("open", "closed", "all"):
            return 422, {}, {"code": 40010001, "message": "invalid status"}
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            return 422, {}, {"code": 40010001, "message": "invalid limit"}
        if not 1 <= limit <= 500:
            return 422, {}, {"code": 40010001, "message": "limit must be between 1 and 500"}
        symbols = {s for s in params.get("symbols", "").split(",") if s}
        side = params.get("side")
        rows = []
        for order in state.orders.values():
            is_open = order["status"] in OPEN_STATUSES
            if (status == "open" and not is_open) or (status == "closed" and is_open):
                continue
            if symbols and order["symbol"] not in symbols:
                continue
            if side and order["side"] != side:
                continue
            rows.append(order)
        rows.sort(key=lambda o: o["submitted_at"], reverse=params.get("direction") != "asc")
        return 200, {}, [order_json(o, state.assets[o["symbol"]]) for o in rows[:limit]]

    @staticmethod
    def _cancel_all(state: AlpacaTradingState) -> tuple[int, dict[str, str], Any]:
        results = []
        for order in list(state.orders.values()):
            if order["status"] in OPEN_STATUSES:
                state.cancel(order["id"])
                results.append(
                    {
                        "id": order["id"],
                        "status": 200,
                        "body": order_json(order, state.assets[order["symbol"]]),
                    }
                )
        return 207, {}, results


class AlpacaTradingServer(FakeServer):
    """A :class:`FakeServer` running the fake trading API, with the state's knobs at hand."""

    state: AlpacaTradingState

    def __init__(self, state: AlpacaTradingState | None = None):
        super().__init__(AlpacaTradingHandler, state or AlpacaTradingState())

    def __enter__(self) -> AlpacaTradingServer:
        super().__enter__()
        return self

    def fill(self, order_id_or_cid: str, price: float, qty: float | None = None) -> dict[str, Any]:
        return self.state.fill(order_id_or_cid, price, qty)

    def fill_all(self, prices: Mapping[str, float] | None = None) -> list[str]:
        return self.state.fill_all(prices)

    def set_position(
        self, symbol: str, qty: float, avg_entry_price: float, adjust_cash: bool = False
    ) -> None:
        self.state.set_position(symbol, qty, avg_entry_price, adjust_cash)

    def order_requests(self) -> list[dict[str, Any]]:
        """Bodies of every ``POST /v2/orders`` received, decoded."""
        return [
            json.loads(r.body)
            for r in self.requests
            if r.method == "POST" and r.path == "/v2/orders"
        ]


def alpaca_trading_server(state: AlpacaTradingState | None = None) -> AlpacaTradingServer:
    """The fake trading API on an ephemeral 127.0.0.1 port (use as a context manager)."""
    return AlpacaTradingServer(state)
