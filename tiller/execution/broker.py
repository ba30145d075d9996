"""The broker interface every execution venue implements (simulated paper, Alpaca paper).

Quantities are in shares (ETFs) or coins (crypto) as floats rounded to the
asset's lot (1 share, 0.0001 BTC); prices and cash in USD.  Orders are
*accepted first and filled later*: :meth:`Broker.submit` returns the accepted
order, never a fill; fills are observed with :meth:`Broker.get_order`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderStatus(StrEnum):
    """Order lifecycle, named as Alpaca names it."""

    NEW = "new"
    PENDING_NEW = "pending_new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        """No further fills can happen."""
        return self in (
            OrderStatus.FILLED,
            OrderStatus.CANCELED,
            OrderStatus.EXPIRED,
            OrderStatus.REJECTED,
        )


@dataclass(frozen=True)
class OrderRequest:
    """An order to send: market order, day (ETF) or gtc (crypto) time in force.

    ``client_order_id`` is deterministic (:func:`tiller.execution.orders.client_order_id`),
    so a rerun can ask the broker whether the order already exists.
    """

    client_order_id: str
    symbol: str  # Tiller's symbol, e.g. SPY, BTC-USD
    side: OrderSide
    qty: float
    as_of: date
    time_in_force: str = "day"


@dataclass(frozen=True)
class BrokerOrder:
    """The broker's view of one order."""

    broker_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: float
    filled_qty: float
    filled_avg_price: float | None
    status: OrderStatus
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    commission: float = 0.0  # USD charged on the filled part (0 where the venue does not say)
    reject_reason: str | None = None


@dataclass(frozen=True)
class BrokerPosition:
    """A holding as the broker reports it."""

    symbol: str
    qty: float
    avg_entry_price: float


@dataclass(frozen=True)
class BrokerAccount:
    """Cash and buying power (USD)."""

    cash: float
    buying_power: float
    equity: float


class BrokerErrorKind(StrEnum):
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    SERVER = "server"
    TIMEOUT = "timeout"
    NETWORK = "network"
    DUPLICATE = "duplicate"  # client_order_id already used
    INSUFFICIENT_BUYING_POWER = "insufficient_buying_power"
    UNKNOWN_SYMBOL = "unknown_symbol"
    MARKET_CLOSED = "market_closed"
    REJECTED = "rejected"  # any other business rejection
    NOT_FOUND = "not_found"
    CONFIG = "config"  # live endpoint, missing keys: refused before any call

    @property
    def transient(self) -> bool:
        return self in (
            BrokerErrorKind.RATE_LIMIT,
            BrokerErrorKind.SERVER,
            BrokerErrorKind.TIMEOUT,
            BrokerErrorKind.NETWORK,
        )


class BrokerError(Exception):
    """A broker call failed; ``kind`` says whether a retry can help. Never carries a secret."""

    def __init__(self, broker: str, kind: BrokerErrorKind, message: str):
        super().__init__(f"{broker}: {message}")
        self.broker = broker
        self.kind = kind
        self.detail = message


def same_order(existing: BrokerOrder, order: OrderRequest) -> bool:
    """Whether the broker's ``existing`` order is ``order`` (same symbol, side and quantity):
    an earlier attempt of a retried submission that got through."""
    return (
        existing.symbol == order.symbol
        and existing.side == order.side
        and abs(existing.qty - order.qty) <= 1e-9 * max(1.0, abs(order.qty))
    )


@runtime_checkable
class Broker(Protocol):
    """An execution venue.

    ``fills_on_own_clock`` says whether orders can fill while the caller waits: a real
    broker fills on its own clock (the order life cycle polls it for a while); the
    simulated broker fills only in :meth:`advance`, so polling it would change nothing.
    """

    name: str
    fills_on_own_clock: bool

    def advance(self, as_of: date) -> None:
        """Let the venue play the sessions up to ``as_of`` that have arrived: the simulated
        broker fills its open orders from the stored bars; a real broker does nothing (it
        fills on its own clock)."""
        ...

    def account(self) -> BrokerAccount: ...

    def positions(self) -> list[BrokerPosition]: ...

    def submit(self, order: OrderRequest) -> BrokerOrder:
        """Send ``order``; returns the accepted (not filled) order.

        Raises :class:`BrokerError` (``DUPLICATE`` when the client order id exists).
        """
        ...

    def get_order(self, broker_id: str) -> BrokerOrder: ...

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id, or None if the broker never saw it."""
        ...

    def open_orders(self) -> list[BrokerOrder]: ...

    def cancel_order(self, broker_id: str) -> None: ...
