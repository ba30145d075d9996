"""The simulated paper broker's state in the store: its orders, positions and cash.

The tables (``sim_orders``, ``sim_positions``, ``sim_account``; :mod:`models.simbroker`)
are the broker's *own* books, read and written only by
:class:`~tiller.execution.simulated.SimulatedBroker` through these functions.  Reads take
the store (a connection of their own) or a transaction; writes take a transaction
(:data:`tiller.store.Tx`), so the broker keeps each call that changes its state in one
transaction.  Money in USD, quantities in shares or coins, timestamps in UTC.

Order statuses and sides are the plain values of
:class:`~tiller.execution.broker.OrderStatus` and :class:`~tiller.execution.broker.OrderSide`;
which statuses count as open is the caller's to say.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.exc import IntegrityError

from models.simbroker import SimAccount, SimOrder, SimPosition
from tiller.store.repo import BARS, QUARANTINE, Store, utcnow

ORDERS: Table = SimOrder.__table__  # type: ignore[attr-defined]
POSITIONS: Table = SimPosition.__table__  # type: ignore[attr-defined]
ACCOUNT: Table = SimAccount.__table__  # type: ignore[attr-defined]

ACCOUNT_ID = "paper"
"""The id of the account's single row."""


class DuplicateOrder(Exception):
    """An order with the same client order id (or broker id) is already stored."""


@contextmanager
def _reading(source: Store | Connection) -> Iterator[Connection]:
    """A connection to read with: ``source`` itself, or a new one of the store's."""
    if isinstance(source, Store):
        with source.engine.connect() as connection:
            yield connection
    else:
        yield source


# ------------------------------------------------------------------- orders
def order(source: Store | Connection, broker_id: str) -> dict[str, Any] | None:
    """Read the ``sim_orders`` row with this broker id.

    Returns
    -------
    dict or None
        The row (quantities in shares, prices and commission in USD); None if there is none.
    """
    with _reading(source) as connection:
        row = connection.execute(select(ORDERS).where(ORDERS.c.broker_id == broker_id))
        found = row.mappings().first()
    return None if found is None else dict(found)


def order_by_client_id(source: Store | Connection, client_order_id: str) -> dict[str, Any] | None:
    """Read the ``sim_orders`` row with this client order id.

    Returns
    -------
    dict or None
        The row (quantities in shares, prices and commission in USD); None if there is none.
    """
    query = select(ORDERS).where(ORDERS.c.client_order_id == client_order_id)
    with _reading(source) as connection:
        found = connection.execute(query).mappings().first()
    return None if found is None else dict(found)


def open_orders(
    source: Store | Connection, statuses: Sequence[str], as_of: date | None = None
) -> list[dict[str, Any]]:
    """Read the ``sim_orders`` rows whose status is in ``statuses``.

    Parameters
    ----------
    statuses:
        The status values that count as open.
    as_of:
        If given, only orders placed for this session date or earlier.

    Returns
    -------
    list of dict
        The rows (quantities in shares, prices in USD), oldest submission first (ties by
        broker id).
    """
    query = select(ORDERS).where(ORDERS.c.status.in_(statuses))
    if as_of is not None:
        query = query.where(ORDERS.c.as_of <= as_of)
    query = query.order_by(ORDERS.c.submitted_at, ORDERS.c.broker_id)
    with _reading(source) as connection:
        return [dict(r) for r in connection.execute(query).mappings()]


def open_qty(source: Store | Connection, symbol: str, side: str, statuses: Sequence[str]) -> float:
    """Read the shares of ``symbol`` still to fill on ``side`` orders whose status is in
    ``statuses``.

    Returns
    -------
    float
        The sum of ``qty - filled_qty`` over those orders, in shares (0 when there are none).
    """
    query = select(ORDERS.c.qty, ORDERS.c.filled_qty).where(
        ORDERS.c.symbol == symbol,
        ORDERS.c.side == side,
        ORDERS.c.status.in_(statuses),
    )
    with _reading(source) as connection:
        return sum(float(q) - float(f) for q, f in connection.execute(query))


def committed_notional(source: Store | Connection, side: str, statuses: Sequence[str]) -> float:
    """Read what the ``side`` orders whose status is in ``statuses`` still need, in USD.

    Each order's unfilled shares are valued at the close of its symbol's newest stored bar
    on or before the order's date (0 when there is no such bar); one query.

    Returns
    -------
    float
        The sum in USD (0 when there are no such orders).
    """
    last_close = (
        select(BARS.c.close)
        .where(BARS.c.symbol == ORDERS.c.symbol, BARS.c.date <= ORDERS.c.as_of)
        .order_by(BARS.c.date.desc())
        .limit(1)
        .scalar_subquery()
    )
    remaining = (ORDERS.c.qty - ORDERS.c.filled_qty) * func.coalesce(last_close, 0.0)
    query = select(func.coalesce(func.sum(remaining), 0.0)).where(
        ORDERS.c.side == side, ORDERS.c.status.in_(statuses)
    )
    with _reading(source) as connection:
        return float(connection.execute(query).scalar() or 0.0)


def insert_order(tx: Connection, row: dict[str, Any]) -> None:
    """Write a new ``sim_orders`` row (every column given in ``row``).

    Raises
    ------
    DuplicateOrder
        The client order id (or broker id) is already stored, e.g. by a concurrent submit;
        the transaction must then be rolled back.
    """
    try:
        tx.execute(ORDERS.insert().values(**row))
    except IntegrityError as error:
        raise DuplicateOrder(f"client order id {row['client_order_id']} already exists") from error


def update_order(tx: Connection, row: dict[str, Any]) -> None:
    """Write ``row``'s columns (fills, status, commission in USD...) to the ``sim_orders``
    row with ``row["broker_id"]``."""
    changes = {k: v for k, v in row.items() if k != "broker_id"}
    tx.execute(ORDERS.update().where(ORDERS.c.broker_id == row["broker_id"]).values(changes))


def set_order_status(tx: Connection, broker_id: str, status: str) -> None:
    """Write ``status`` to the ``sim_orders`` row with this broker id."""
    tx.execute(ORDERS.update().where(ORDERS.c.broker_id == broker_id).values(status=status))


# ---------------------------------------------------------------- positions
def positions(source: Store | Connection, by_symbol: bool = True) -> list[dict[str, Any]]:
    """Read the ``sim_positions`` rows (``symbol``, ``qty`` in shares, ``avg_entry_price``
    in USD, ``updated_at``).

    Parameters
    ----------
    by_symbol:
        Sort by symbol; otherwise the rows come in the database's own order.
    """
    query = select(POSITIONS)
    if by_symbol:
        query = query.order_by(POSITIONS.c.symbol)
    with _reading(source) as connection:
        return [dict(r) for r in connection.execute(query).mappings()]


def position(source: Store | Connection, symbol: str) -> dict[str, Any] | None:
    """Read the ``sim_positions`` row of ``symbol`` (``qty`` in shares, ``avg_entry_price``
    in USD); None when nothing is held."""
    query = select(POSITIONS).where(POSITIONS.c.symbol == symbol)
    with _reading(source) as connection:
        found = connection.execute(query).mappings().first()
    return None if found is None else dict(found)


def save_position(
    tx: Connection, store: Store, symbol: str, qty: float, avg_entry_price: float
) -> None:
    """Write the ``sim_positions`` row of ``symbol`` (inserted or replaced): ``qty`` in
    shares, ``avg_entry_price`` in USD, ``updated_at`` now."""
    values = {
        "symbol": symbol,
        "qty": qty,
        "avg_entry_price": avg_entry_price,
        "updated_at": utcnow(),
    }
    store.upsert(tx, POSITIONS, [values], ("symbol",))


def delete_position(tx: Connection, symbol: str) -> None:
    """Delete the ``sim_positions`` row of ``symbol`` (a closed position)."""
    tx.execute(POSITIONS.delete().where(POSITIONS.c.symbol == symbol))


# ------------------------------------------------------------------ account
def ensure_account(tx: Connection, initial_cash: float) -> None:
    """Write the ``sim_account`` row with ``initial_cash`` (USD) and no clock, unless it
    exists already."""
    exists = tx.execute(select(ACCOUNT.c.id).where(ACCOUNT.c.id == ACCOUNT_ID)).first()
    if exists is None:
        tx.execute(
            ACCOUNT.insert().values(
                id=ACCOUNT_ID, cash=initial_cash, as_of=None, updated_at=utcnow()
            )
        )


def cash(source: Store | Connection) -> float:
    """Read the account's cash, in USD (the account row must exist)."""
    query = select(ACCOUNT.c.cash).where(ACCOUNT.c.id == ACCOUNT_ID)
    with _reading(source) as connection:
        return float(connection.execute(query).scalar_one())


def set_cash(tx: Connection, amount: float) -> None:
    """Write the account's cash (``amount`` in USD) and its ``updated_at`` (now)."""
    tx.execute(
        ACCOUNT.update().where(ACCOUNT.c.id == ACCOUNT_ID).values(cash=amount, updated_at=utcnow())
    )


def clock(source: Store | Connection) -> date | None:
    """Read the broker's clock: the latest session date it has seen (None before any, or
    when the account row does not exist)."""
    query = select(ACCOUNT.c.as_of).where(ACCOUNT.c.id == ACCOUNT_ID)
    with _reading(source) as connection:
        value: date | None = connection.execute(query).scalar_one_or_none()
    return value


def set_clock(tx: Connection, as_of: date) -> None:
    """Write the broker's clock (the account's ``as_of`` session date)."""
    tx.execute(ACCOUNT.update().where(ACCOUNT.c.id == ACCOUNT_ID).values(as_of=as_of))


# -------------------------------------------------------------- market data
def last_close(source: Store | Connection, symbol: str, on_or_before: date | None) -> float | None:
    """Read the close (USD) of the newest stored bar of ``symbol`` not after
    ``on_or_before`` (any date when None); None when there is no such bar."""
    query = select(BARS.c.close).where(BARS.c.symbol == symbol)
    if on_or_before is not None:
        query = query.where(BARS.c.date <= on_or_before)
    with _reading(source) as connection:
        value = connection.execute(query.order_by(BARS.c.date.desc()).limit(1)).scalar()
    return None if value is None else float(value)


def quarantined_sessions(
    source: Store | Connection, symbols: Sequence[str]
) -> dict[str, set[date]]:
    """Read the session dates whose bar validation refused (``quarantined_bars``), per
    symbol of ``symbols`` (symbols with none are left out)."""
    query = select(QUARANTINE.c.symbol, QUARANTINE.c.date).where(QUARANTINE.c.symbol.in_(symbols))
    with _reading(source) as connection:
        found = connection.execute(query).all()
    out: dict[str, set[date]] = {}
    for symbol, day in found:
        out.setdefault(str(symbol), set()).add(day)
    return out
