"""The paper book in the store: its state, NAV and position snapshots, orders written
ahead and their outcomes, fills, rejections and reconciliations.

Reads take the store; writes take a transaction (:data:`tiller.store.Tx`) so the orders
stage lands its output with its checkpoint, except :func:`write_ahead`, which commits
on its own before anything is sent.  Money in USD, quantities in shares or coins.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from tiller.store.repo import (
    AUDIT_EVENTS,
    BOOK_STATE,
    FILLS,
    NAV_SNAPSHOTS,
    ORDER_REJECTIONS,
    ORDERS,
    POSITION_SNAPSHOTS,
    RECONCILIATIONS,
    Store,
    utcnow,
)


def load_state(store: Store, portfolio: str) -> dict[str, Any] | None:
    """The persisted book of ``portfolio`` (cash, positions, P&L, fees, peak) as saved by
    :func:`save_state`; None before the first trade."""
    raw = store.select(select(BOOK_STATE.c.state).where(BOOK_STATE.c.portfolio == portfolio))
    return None if raw.empty else dict(json.loads(raw.iloc[0, 0]))


def save_state(
    tx: Connection, store: Store, portfolio: str, as_of: date, state: dict[str, Any]
) -> None:
    """Insert or replace the one book row of ``portfolio``."""
    store.upsert(
        tx,
        BOOK_STATE,
        [
            {
                "portfolio": portfolio,
                "as_of": as_of,
                "state": json.dumps(state, sort_keys=True),
                "updated_at": utcnow(),
            }
        ],
        ("portfolio",),
    )


def previous_nav(store: Store, portfolio: str, before: date) -> float | None:
    """The NAV (USD) of the last snapshot dated before ``before``, or None."""
    found = store.select(
        select(NAV_SNAPSHOTS.c.nav)
        .where(NAV_SNAPSHOTS.c.portfolio == portfolio, NAV_SNAPSHOTS.c.as_of < before)
        .order_by(NAV_SNAPSHOTS.c.as_of.desc())
        .limit(1)
    )
    return None if found.empty else float(found.iloc[0, 0])


def save_snapshot(
    tx: Connection,
    store: Store,
    portfolio: str,
    as_of: date,
    nav_row: dict[str, Any],
    position_rows: Sequence[dict[str, Any]],
) -> None:
    """Replace the day's NAV snapshot and position snapshots of ``portfolio``."""
    store.replace_for_as_of(tx, NAV_SNAPSHOTS, as_of)
    store.replace_for_as_of(tx, POSITION_SNAPSHOTS, as_of)
    store.insert(tx, NAV_SNAPSHOTS, [{"as_of": as_of, "portfolio": portfolio, **nav_row}])
    store.insert(
        tx,
        POSITION_SNAPSHOTS,
        [{"as_of": as_of, "portfolio": portfolio, **row} for row in position_rows],
    )


# ------------------------------------------------------------------- orders
def unsettled_orders(store: Store, broker: str, final: Sequence[str]) -> list[dict[str, Any]]:
    """The orders of ``broker`` whose status is not in ``final`` (one dict per row)."""
    query = select(ORDERS).where(ORDERS.c.status.not_in(list(final)), ORDERS.c.broker == broker)
    return [dict(r) for r in store.select(query).to_dict("records")]


def order(store: Store, client_order_id: str) -> dict[str, Any] | None:
    """The order row with this client order id, or None."""
    frame = store.select(select(ORDERS).where(ORDERS.c.client_order_id == client_order_id))
    return None if frame.empty else dict(frame.to_dict("records")[0])


def planned(store: Store, as_of: date) -> list[dict[str, Any]]:
    """The orders of ``as_of`` still ``planned`` (written ahead, not known to be sent)."""
    query = select(ORDERS).where(ORDERS.c.as_of == as_of, ORDERS.c.status == "planned")
    return [dict(r) for r in store.select(query).to_dict("records")]


def any_orders(store: Store, as_of: date) -> bool:
    """Whether any order was written for ``as_of``."""
    found = store.select(select(ORDERS.c.client_order_id).where(ORDERS.c.as_of == as_of).limit(1))
    return not found.empty


def write_ahead(
    store: Store, rows: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]
) -> None:
    """Record planned orders and their audit events, committed before anything is sent."""
    with store.transaction() as tx:
        store.insert(tx, ORDERS, rows)
        store.insert(tx, AUDIT_EVENTS, events)


def save_orders(tx: Connection, store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update order rows (by client order id)."""
    for row in rows:
        store.upsert(tx, ORDERS, [row], ("client_order_id",))


def save_fills(tx: Connection, store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Insert fill rows (each fill is recorded once, when first seen)."""
    store.insert(tx, FILLS, rows)


def replace_rejections(
    tx: Connection, store: Store, as_of: date, rows: Sequence[dict[str, Any]]
) -> None:
    """Replace the day's rejected (not sent) orders."""
    store.replace_for_as_of(tx, ORDER_REJECTIONS, as_of)
    store.insert(tx, ORDER_REJECTIONS, rows)


def save_reconciliations(tx: Connection, store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Insert the differences found between the book and the broker."""
    store.insert(tx, RECONCILIATIONS, rows)


def quarantined_today(store: Store, as_of: date) -> dict[str, str]:
    """``{symbol: reason}`` of the symbols whose ``as_of`` bar validation refused."""
    frame = store.quarantined(as_of)
    if frame.empty:
        return {}
    today = frame[pd.to_datetime(frame["date"]).dt.date == as_of]
    return {str(r.symbol): str(r.reason) for r in today.itertuples()}


def last_closes(store: Store, symbols: Sequence[str], as_of: date) -> dict[str, float]:
    """The last close (USD) on or before ``as_of`` of each symbol, within two weeks."""
    if not symbols:
        return {}
    bars = store.load_bars(list(symbols), as_of - timedelta(days=14), as_of)
    last = bars.groupby("symbol").last()
    return {str(s): float(c) for s, c in last["close"].items()}


class Journal:
    """The store as the order life cycle's journal
    (:class:`tiller.execution.lifecycle.OrderJournal`)."""

    def __init__(self, store: Store):
        self.store = store

    def unsettled_orders(self, broker: str, final: Sequence[str]) -> list[dict[str, Any]]:
        return unsettled_orders(self.store, broker, final)

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        return order(self.store, client_order_id)

    def planned(self, as_of: date) -> list[dict[str, Any]]:
        return planned(self.store, as_of)

    def any_orders(self, as_of: date) -> bool:
        return any_orders(self.store, as_of)

    def write_ahead(self, rows: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> None:
        write_ahead(self.store, rows, events)

    def prices(self, symbols: Sequence[str], as_of: date) -> dict[str, float]:
        return last_closes(self.store, symbols, as_of)

    def quarantined_today(self, as_of: date) -> dict[str, str]:
        return quarantined_today(self.store, as_of)
