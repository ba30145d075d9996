"""Tables of execution: orders, fills, the local book, NAV snapshots, reconciliation, audit.

Money in USD, quantities in shares or coins.  ``client_order_id`` is unique:
the same order is never recorded (or sent) twice.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel


def _utc(nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


class OrderRecord(SQLModel, table=True):
    """One order Tiller decided to send, and what became of it."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_as_of", "as_of"),)

    client_order_id: str = Field(primary_key=True, max_length=64)
    as_of: dt.date
    correlation_id: str = Field(max_length=36)
    broker: str = Field(max_length=20)
    broker_order_id: str | None = Field(default=None, max_length=64)
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    qty: float
    # planned | submitted | accepted | partially_filled | filled | canceled | expired |
    # rejected | failed
    status: str = Field(max_length=20)
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    commission: float = 0.0
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = 0
    created_at: dt.datetime = Field(sa_column=_utc())
    updated_at: dt.datetime = Field(sa_column=_utc())
    run_id: str | None = Field(default=None, foreign_key="flow_runs.id", max_length=36)


class OrderRejection(SQLModel, table=True):
    """An order the pre-trade checks refused, with the reason."""

    __tablename__ = "order_rejections"
    __table_args__ = (Index("ix_order_rejections_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    as_of: dt.date
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    qty: float
    reason: str = Field(sa_column=Column(Text, nullable=False))
    run_id: str | None = Field(default=None, foreign_key="flow_runs.id", max_length=36)


class FillRecord(SQLModel, table=True):
    """One fill (or the filled part of an order seen at one poll), applied to the book once."""

    __tablename__ = "fills"
    __table_args__ = (Index("ix_fills_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    client_order_id: str = Field(foreign_key="orders.client_order_id", max_length=64)
    as_of: dt.date
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    qty: float
    price: float
    commission: float
    filled_at: dt.datetime = Field(sa_column=_utc())


class BookState(SQLModel, table=True):
    """The local book of a portfolio (cash, positions, P&L) as JSON; survives restarts."""

    __tablename__ = "book_state"

    portfolio: str = Field(primary_key=True, max_length=40)
    as_of: dt.date | None = None
    state: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: dt.datetime = Field(sa_column=_utc())


class NavSnapshotRecord(SQLModel, table=True):
    """The portfolio at the close of ``as_of``: cash + positions = NAV, to the cent."""

    __tablename__ = "nav_snapshots"

    as_of: dt.date = Field(primary_key=True)
    portfolio: str = Field(primary_key=True, max_length=40)
    cash: float
    positions_value: float
    nav: float
    peak_nav: float
    drawdown: float
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    run_id: str | None = Field(default=None, foreign_key="flow_runs.id", max_length=36)


class PositionSnapshot(SQLModel, table=True):
    """One holding at the close of ``as_of``."""

    __tablename__ = "position_snapshots"

    as_of: dt.date = Field(primary_key=True)
    portfolio: str = Field(primary_key=True, max_length=40)
    symbol: str = Field(primary_key=True, max_length=20)
    qty: float
    price: float
    value: float
    avg_cost: float
    unrealized_pnl: float
    weight: float


class Reconciliation(SQLModel, table=True):
    """A difference between the local book and the broker, and how it was resolved."""

    __tablename__ = "reconciliations"
    __table_args__ = (Index("ix_reconciliations_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    as_of: dt.date
    symbol: str = Field(max_length=20)  # CASH for a cash difference
    local_qty: float
    broker_qty: float
    resolution: str = Field(sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(sa_column=_utc())
    run_id: str | None = Field(default=None, foreign_key="flow_runs.id", max_length=36)


class AuditEvent(SQLModel, table=True):
    """Every signal, risk check, order, fill, rejection and reconciliation, in order."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    as_of: dt.date
    kind: str = Field(max_length=30)
    correlation_id: str | None = Field(default=None, max_length=64)
    symbol: str | None = Field(default=None, max_length=20)
    payload: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    created_at: dt.datetime = Field(sa_column=_utc())
    run_id: str | None = Field(default=None, foreign_key="flow_runs.id", max_length=36)
