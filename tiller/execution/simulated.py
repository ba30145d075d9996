"""The built-in simulated paper broker: fills from the store's daily bars.

Orders are accepted on :meth:`SimulatedBroker.submit` and filled later by
:meth:`SimulatedBroker.process`, which plays the sessions that have arrived:

* ``fill_price: next_open`` -- an order of day T fills at the open of the
  first session of the symbol's calendar *after* T (XNYS for ETFs, every day
  for crypto), ``fill_delay_sessions`` later if configured;
* ``fill_price: close`` -- at the close of T itself (the first session on or
  after T), again shifted by ``fill_delay_sessions``.

Each session fills at most ``max_volume_fraction * volume`` (rounded down to
the asset's lot; no cap when the bar has no volume); the rest stays open
(``partially_filled``) and continues at the next sessions' prices.  A fill
session whose bar is not stored yet stops the order there: it stays open
and fills when a later :meth:`~SimulatedBroker.process` finds the bar.  Only
bars up to the processing date are read, and the volatility in the slippage
uses returns up to the order date: no look-ahead.  Prices, slippage and
commission: :mod:`tiller.execution.costs`.

Orders stay open until filled or canceled (``time_in_force`` is recorded,
not enforced).  The broker's state (``sim_orders``, ``sim_positions``,
``sim_account``) is in the store, so it survives restarts; every call that
changes it is one transaction.  The SQL that reads and writes it is in
:mod:`tiller.store.simbroker`.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from tiller.calendars import NEW_YORK, sessions
from tiller.execution import costs
from tiller.execution import fills as fill_model
from tiller.execution.broker import (
    BrokerAccount,
    BrokerError,
    BrokerErrorKind,
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    OrderSide,
    OrderStatus,
)
from tiller.execution.fills import EPSILON as _EPSILON
from tiller.execution.fills import Fill
from tiller.settings import Settings
from tiller.store import Tx, simbroker
from tiller.store.repo import Store, utcnow

OPEN_STATUSES = (OrderStatus.ACCEPTED.value, OrderStatus.PARTIALLY_FILLED.value)
# Calendar days of bars loaded before an order date for the 20-return volatility
# (21 sessions of XNYS span at most ~31 days, holidays included).
_HISTORY_DAYS = 45
# The uuid5 namespace of broker ids (ids are derived from the client order id).
_ID_NAMESPACE = uuid.UUID("6d1c9a52-4f0e-4a51-9a3b-7c2f1e0b5d10")


class SimulatedBroker:
    """A paper broker that fills market orders from stored daily bars.

    Parameters
    ----------
    store:
        The store holding the bars and the broker's tables.
    settings:
        Universe (symbols, calendars, cost classes), costs and execution settings.
    initial_cash:
        USD cash of a new account; default ``settings.optimize.initial_capital``.
        Ignored once the account exists.
    """

    name = "paper"
    fills_on_own_clock = False  # fills only in advance(): nothing to wait for

    def __init__(self, store: Store, settings: Settings, initial_cash: float | None = None):
        self.store = store
        self.settings = settings
        self.initial_cash = (
            settings.optimize.initial_capital if initial_cash is None else float(initial_cash)
        )

    # ------------------------------------------------------------------ submit
    def submit(self, order: OrderRequest) -> BrokerOrder:
        """Accept ``order`` (never filled here); one committed transaction.

        Raises
        ------
        BrokerError
            ``UNKNOWN_SYMBOL`` (not in the universe table), ``DUPLICATE`` (client order id
            already used), ``INSUFFICIENT_BUYING_POWER`` (buy notional at the last close
            above the buying power), ``REJECTED`` (quantity not positive, no price to value
            a buy, or a sell of more than the position not already being sold).
        """
        self._check_request(order)
        try:
            with self.store.transaction() as tx:
                if simbroker.order_by_client_id(tx, order.client_order_id) is not None:
                    raise self._error(
                        BrokerErrorKind.DUPLICATE,
                        f"client order id {order.client_order_id} already exists",
                    )
                simbroker.ensure_account(tx, self.initial_cash)
                self._advance_clock(tx, order.as_of)
                self._check_funds(tx, order)
                row = self._new_order_row(order)
                simbroker.insert_order(tx, row)
        except simbroker.DuplicateOrder:  # a concurrent submit of the same id won the race
            raise self._error(
                BrokerErrorKind.DUPLICATE,
                f"client order id {order.client_order_id} already exists",
            ) from None
        return _to_order(row)

    def _check_request(self, order: OrderRequest) -> None:
        if order.symbol not in self.settings.assets:
            raise self._error(
                BrokerErrorKind.UNKNOWN_SYMBOL, f"{order.symbol} is not in the universe table"
            )
        if not (math.isfinite(order.qty) and order.qty > 0):
            raise self._error(
                BrokerErrorKind.REJECTED, f"quantity must be positive (got {order.qty})"
            )

    def _check_funds(self, tx: Tx, order: OrderRequest) -> None:
        """Buys: notional at the last close <= buying power; sells: no short selling."""
        if order.side is OrderSide.BUY:
            price = simbroker.last_close(tx, order.symbol, order.as_of)
            if price is None:
                raise self._error(
                    BrokerErrorKind.REJECTED,
                    f"no {order.symbol} price on or before {order.as_of} to value the order",
                )
            notional = order.qty * price
            power = self._buying_power(tx)
            if notional > power + _EPSILON:
                raise self._error(
                    BrokerErrorKind.INSUFFICIENT_BUYING_POWER,
                    f"buy {order.qty:g} {order.symbol} needs ${notional:,.2f}; "
                    f"buying power ${power:,.2f}",
                )
        else:
            held = self._position_qty(tx, order.symbol)
            selling = simbroker.open_qty(tx, order.symbol, OrderSide.SELL.value, OPEN_STATUSES)
            if order.qty > held - selling + _EPSILON:
                raise self._error(
                    BrokerErrorKind.REJECTED,
                    f"sell {order.qty:g} {order.symbol} exceeds the {held - selling:g} held "
                    "and not already being sold (no short selling)",
                )

    def _new_order_row(self, order: OrderRequest) -> dict[str, Any]:
        return {
            "broker_id": str(uuid.uuid5(_ID_NAMESPACE, order.client_order_id)),
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "qty": float(order.qty),
            "filled_qty": 0.0,
            "filled_avg_price": None,
            "status": OrderStatus.ACCEPTED.value,
            "as_of": order.as_of,
            "time_in_force": order.time_in_force,
            "submitted_at": utcnow(),
            "filled_at": None,
            "processed_through": None,
            "commission": 0.0,
            "reject_reason": None,
        }

    # ----------------------------------------------------------------- process
    def advance(self, as_of: date) -> None:
        """The :class:`~tiller.execution.broker.Broker` hook: play the sessions up to
        ``as_of`` (:meth:`process`)."""
        self.process(as_of)

    def process(self, as_of: date) -> list[BrokerOrder]:
        """Fill the open orders whose fill sessions up to ``as_of`` have stored bars.

        Orders are played in submission order; positions and cash change with
        each fill.  One transaction; calling it again for the same date fills
        nothing new.

        Returns
        -------
        list[BrokerOrder]
            The orders that received a fill in this call, as they stand afterwards.
        """
        changed: list[BrokerOrder] = []
        with self.store.transaction() as tx:
            simbroker.ensure_account(tx, self.initial_cash)
            self._advance_clock(tx, as_of)
            rows = simbroker.open_orders(tx, OPEN_STATUSES, as_of=as_of)
            bars = self._bars(tx, rows, as_of)
            refused = self._refused(tx, rows)
            for row in rows:
                fills, processed = self._fills(
                    row, bars.get(row["symbol"]), as_of, refused.get(row["symbol"], set())
                )
                if processed != row["processed_through"]:
                    row = self._apply(tx, row, fills, processed)
                if fills:
                    changed.append(_to_order(row))
        return changed

    def _bars(self, tx: Tx, rows: list[dict[str, Any]], as_of: date) -> dict[str, Any]:
        """Bars per symbol from before the oldest order date (volatility) up to ``as_of``."""
        if not rows:
            return {}
        start = min(r["as_of"] for r in rows) - timedelta(days=_HISTORY_DAYS)
        symbols = sorted({r["symbol"] for r in rows})
        frame = self.store.load_bars(symbols, start=start, end=as_of, tx=tx)
        return {
            str(symbol): group.set_index(group["date"].dt.date)
            for symbol, group in frame.groupby("symbol")
        }

    def _refused(self, tx: Tx, rows: list[dict[str, Any]]) -> dict[str, set[date]]:
        """Sessions whose bar validation refused (quarantined), per symbol: nothing fills
        on them (no real price is known), the order goes on to the next session."""
        if not rows:
            return {}
        return simbroker.quarantined_sessions(tx, sorted({r["symbol"] for r in rows}))

    def _fill_sessions(self, row: dict[str, Any], as_of: date) -> list[date]:
        """Sessions on which ``row`` may fill, not after ``as_of`` and not already processed."""
        calendar = self.settings.calendar_of(row["symbol"])
        days = [d.date() for d in sessions(calendar, row["as_of"], as_of)]
        return fill_model.fill_sessions(days, row["as_of"], row["processed_through"], self.settings)

    def _fills(
        self,
        row: dict[str, Any],
        bars: pd.DataFrame | None,
        as_of: date,
        refused: set[date] | frozenset[date] = frozenset(),
    ) -> tuple[list[Fill], date | None]:
        """The fills of ``row`` up to ``as_of`` and the last session processed.

        Stops at the first fill session without a stored bar (the order waits for it),
        except a session whose bar was refused (quarantined): nothing fills there.
        """
        remaining = row["qty"] - row["filled_qty"]
        processed: date | None = row["processed_through"]
        fills: list[Fill] = []
        if bars is None:
            return fills, processed
        vol = self._volatility(bars, row["as_of"])
        for session in self._fill_sessions(row, as_of):
            if remaining <= _EPSILON:
                break
            if session in refused and session not in bars.index:
                processed = session
                continue
            if session not in bars.index:
                break
            fill = self._fill_on(row, bars.loc[session], session, remaining, vol)
            processed = session
            if fill is not None:
                fills.append(fill)
                remaining -= fill.qty
        return fills, processed

    def _fill_on(
        self, row: dict[str, Any], bar: pd.Series, session: date, remaining: float, vol: float
    ) -> Fill | None:
        """One session's fill (:func:`tiller.execution.fills.fill_on`)."""
        return fill_model.fill_on(
            row["symbol"],
            OrderSide(row["side"]),
            session,
            float(bar["open"]),
            float(bar["close"]),
            float(bar["volume"]),
            remaining,
            vol,
            self.settings,
        )

    @staticmethod
    def _volatility(bars: pd.DataFrame, order_day: date) -> float:
        """Std of the last 20 daily returns up to and including the order date."""
        history = bars[bars.index <= order_day]
        prices = history["adj_close"].fillna(history["close"]).to_numpy(dtype=float)
        return costs.daily_volatility(prices)

    def _apply(
        self, tx: Tx, row: dict[str, Any], fills: list[Fill], processed: date | None
    ) -> dict[str, Any]:
        """Write the fills to the order, the position and the cash; return the updated row."""
        updated = dict(row, processed_through=processed)
        for fill in fills:
            updated = _add_fill(updated, fill, self._fill_time(row["symbol"], fill.session))
            self._move_position(tx, row["symbol"], OrderSide(row["side"]), fill)
            self._move_cash(tx, OrderSide(row["side"]), fill)
        simbroker.update_order(tx, updated)
        return updated

    def _fill_time(self, symbol: str, session: date) -> datetime:
        """When a fill happens: 09:30 New York (next_open) or 16:00 (close); crypto 00:00 UTC."""
        if self.settings.calendar_of(symbol) == "24/7":
            moment = (
                time(0, 0) if self.settings.execution.fill_price == "next_open" else time(23, 59)
            )
            return datetime.combine(session, moment, tzinfo=UTC)
        moment = time(9, 30) if self.settings.execution.fill_price == "next_open" else time(16, 0)
        return datetime.combine(session, moment, tzinfo=NEW_YORK).astimezone(UTC)

    def _move_position(self, tx: Tx, symbol: str, side: OrderSide, fill: Fill) -> None:
        held = simbroker.position(tx, symbol)
        qty = float(held["qty"]) if held else 0.0
        avg = float(held["avg_entry_price"]) if held else 0.0
        if side is OrderSide.BUY:
            new_qty = qty + fill.qty
            avg = (qty * avg + fill.qty * fill.price) / new_qty
        else:
            new_qty = qty - fill.qty
        if abs(new_qty) <= _EPSILON:
            simbroker.delete_position(tx, symbol)
            return
        simbroker.save_position(tx, self.store, symbol, new_qty, avg)

    def _move_cash(self, tx: Tx, side: OrderSide, fill: Fill) -> None:
        notional = fill.qty * fill.price
        delta = -notional - fill.commission if side is OrderSide.BUY else notional - fill.commission
        simbroker.set_cash(tx, simbroker.cash(tx) + delta)

    # ------------------------------------------------------------------ orders
    def get_order(self, broker_id: str) -> BrokerOrder:
        """The order with this broker id; ``BrokerError(NOT_FOUND)`` if there is none."""
        row = simbroker.order(self.store, broker_id)
        if row is None:
            raise self._error(BrokerErrorKind.NOT_FOUND, f"no order {broker_id}")
        return _to_order(row)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id, or None if it was never accepted."""
        row = simbroker.order_by_client_id(self.store, client_order_id)
        return None if row is None else _to_order(row)

    def open_orders(self) -> list[BrokerOrder]:
        """Accepted and partially filled orders, oldest first."""
        return [_to_order(row) for row in simbroker.open_orders(self.store, OPEN_STATUSES)]

    def cancel_order(self, broker_id: str) -> None:
        """Cancel an open order (a partial fill keeps its filled part).

        Canceling a canceled order does nothing.

        Raises
        ------
        BrokerError
            ``NOT_FOUND`` for an unknown id; ``REJECTED`` when the order is already
            filled (or otherwise terminal).
        """
        with self.store.transaction() as tx:
            row = simbroker.order(tx, broker_id)
            if row is None:
                raise self._error(BrokerErrorKind.NOT_FOUND, f"no order {broker_id}")
            status = OrderStatus(row["status"])
            if status is OrderStatus.CANCELED:
                return
            if status.terminal:
                raise self._error(
                    BrokerErrorKind.REJECTED, f"order {broker_id} is {status.value}: not cancelable"
                )
            simbroker.set_order_status(tx, broker_id, OrderStatus.CANCELED.value)

    # --------------------------------------------------------- account, marks
    def positions(self) -> list[BrokerPosition]:
        """Current holdings, by symbol."""
        return [
            BrokerPosition(
                symbol=r["symbol"],
                qty=float(r["qty"]),
                avg_entry_price=float(r["avg_entry_price"]),
            )
            for r in simbroker.positions(self.store)
        ]

    def account(self) -> BrokerAccount:
        """Cash, buying power and equity (positions at the last close up to the broker's clock).

        Buying power is the cash less what the open buy orders still need at their
        last close (so accepted buys cannot together spend more than the cash).
        """
        with self.store.transaction() as tx:
            simbroker.ensure_account(tx, self.initial_cash)
            cash = simbroker.cash(tx)
            clock = simbroker.clock(tx)
            power = self._buying_power(tx)
            marks = 0.0
            for position in simbroker.positions(tx, by_symbol=False):
                price = simbroker.last_close(tx, position["symbol"], clock)
                marks += float(position["qty"]) * (
                    price if price is not None else float(position["avg_entry_price"])
                )
        return BrokerAccount(cash=cash, buying_power=power, equity=cash + marks)

    def _advance_clock(self, tx: Tx, as_of: date) -> None:
        """Move the broker's clock forward to ``as_of`` (never back)."""
        clock = simbroker.clock(tx)
        if clock is None or as_of > clock:
            simbroker.set_clock(tx, as_of)

    def _buying_power(self, connection: Tx) -> float:
        """Cash less the remaining notional (at the last close) of open buy orders."""
        committed = simbroker.committed_notional(connection, OrderSide.BUY.value, OPEN_STATUSES)
        return simbroker.cash(connection) - committed

    @staticmethod
    def _position_qty(connection: Tx, symbol: str) -> float:
        """Shares of ``symbol`` held (0 when none)."""
        held = simbroker.position(connection, symbol)
        return 0.0 if held is None else float(held["qty"])

    def _error(self, kind: BrokerErrorKind, message: str) -> BrokerError:
        return BrokerError(self.name, kind, message)


def _add_fill(row: dict[str, Any], fill: Fill, at: datetime) -> dict[str, Any]:
    """``row`` after ``fill``: quantities, average price, commission, status."""
    filled = row["filled_qty"] + fill.qty
    previous = row["filled_qty"] * (row["filled_avg_price"] or 0.0)
    status = OrderStatus.FILLED if filled >= row["qty"] - _EPSILON else OrderStatus.PARTIALLY_FILLED
    return dict(
        row,
        filled_qty=filled,
        filled_avg_price=(previous + fill.qty * fill.price) / filled,
        commission=row["commission"] + fill.commission,
        status=status.value,
        filled_at=at,
    )


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for UTC columns: mark them as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _to_order(row: dict[str, Any]) -> BrokerOrder:
    return BrokerOrder(
        broker_id=row["broker_id"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=OrderSide(row["side"]),
        qty=float(row["qty"]),
        filled_qty=float(row["filled_qty"]),
        filled_avg_price=(
            None if row["filled_avg_price"] is None else float(row["filled_avg_price"])
        ),
        status=OrderStatus(row["status"]),
        submitted_at=_utc(row["submitted_at"]),
        filled_at=_utc(row["filled_at"]),
        commission=float(row["commission"]),
        reject_reason=row["reject_reason"],
    )
