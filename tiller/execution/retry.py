"""Bounded retries with exponential backoff for transient broker errors (429, 5xx, timeout)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

from tiller.execution.broker import (
    Broker,
    BrokerAccount,
    BrokerError,
    BrokerErrorKind,
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    same_order,
)


def with_retries[R](
    call: Callable[[], R],
    retries: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[R, int]:
    """Run ``call``; on a transient :class:`BrokerError` wait ``backoff * 2**i`` s and retry.

    Returns ``(result, attempts)``.  A permanent error, or a transient one
    after ``retries`` retries, is raised (its ``attempts`` attribute is set).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(), attempt
        except BrokerError as exc:
            exc.attempts = attempt  # type: ignore[attr-defined]
            if not exc.kind.transient or attempt > retries:
                raise
            sleep(backoff * 2 ** (attempt - 1))


class RetryingBroker:
    """Any :class:`~tiller.execution.broker.Broker` with bounded retries on every call:
    the one retry layer (the venues make one attempt per call).

    ``submit`` is safe to retry: if an earlier attempt reached the broker before
    timing out, the retry meets ``DUPLICATE`` and the existing order (found by its
    client order id, and the same symbol, side and quantity) is returned instead.
    ``last_attempts`` is the number of tries the last call took.
    """

    def __init__(
        self,
        broker: Broker,
        retries: int,
        backoff: float,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.inner = broker
        self.name = broker.name
        self.fills_on_own_clock = broker.fills_on_own_clock
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.last_attempts = 0

    def _call[T](self, call: Callable[[], T]) -> T:
        try:
            result, self.last_attempts = with_retries(call, self.retries, self.backoff, self.sleep)
        except BrokerError as exc:
            self.last_attempts = getattr(exc, "attempts", 1)
            raise
        return result

    def advance(self, as_of: date) -> None:
        self._call(lambda: self.inner.advance(as_of))

    def account(self) -> BrokerAccount:
        return self._call(self.inner.account)

    def positions(self) -> list[BrokerPosition]:
        return self._call(self.inner.positions)

    def open_orders(self) -> list[BrokerOrder]:
        return self._call(self.inner.open_orders)

    def get_order(self, broker_id: str) -> BrokerOrder:
        return self._call(lambda: self.inner.get_order(broker_id))

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self._call(lambda: self.inner.get_order_by_client_id(client_order_id))

    def cancel_order(self, broker_id: str) -> None:
        self._call(lambda: self.inner.cancel_order(broker_id))

    def submit(self, order: OrderRequest) -> BrokerOrder:
        tries = {"n": 0}

        def attempt() -> BrokerOrder:
            tries["n"] += 1
            try:
                return self.inner.submit(order)
            except BrokerError as exc:
                if exc.kind is BrokerErrorKind.DUPLICATE and tries["n"] > 1:
                    existing = self.inner.get_order_by_client_id(order.client_order_id)
                    if existing is not None and same_order(existing, order):
                        return existing  # an earlier, timed-out attempt got through
                raise

        return self._call(attempt)
