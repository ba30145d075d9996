"""Tables of the simulated paper broker: its orders, positions and cash.

They are the broker's *own* state (what a real venue keeps on its side), so a
restarted process sees the same orders, holdings and cash.  Tiller's view of
orders, fills and positions lives in separate tables written by the orders
stage.  Quantities in shares or coins, prices and cash in USD, timestamps in
UTC, ``as_of`` is the session date the order was placed for.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _utc_column(nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


class SimOrder(SQLModel, table=True):
    """One order the simulated broker accepted, and how much of it has filled.

    ``status`` follows :class:`tiller.execution.broker.OrderStatus` (accepted,
    partially_filled, filled, canceled).  ``filled_avg_price`` is the
    quantity-weighted average over the order's fills (slippage included);
    ``commission`` the USD charged so far.  ``processed_through`` is the last
    session already considered for fills, so processing the same day twice
    never fills twice.
    """

    __tablename__ = "sim_orders"
    __table_args__ = (
        UniqueConstraint("client_order_id", name="uq_sim_orders_client_order_id"),
        Index("ix_sim_orders_status", "status"),
    )

    broker_id: str = Field(primary_key=True, max_length=36)
    client_order_id: str = Field(max_length=128)
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)  # buy | sell
    qty: float
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    status: str = Field(max_length=20)
    as_of: dt.date
    time_in_force: str = Field(default="day", max_length=3)
    submitted_at: dt.datetime = Field(sa_column=_utc_column())
    filled_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    processed_through: dt.date | None = None
    commission: float = 0.0
    reject_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SimPosition(SQLModel, table=True):
    """A holding of the simulated broker (a row disappears when its quantity reaches 0)."""

    __tablename__ = "sim_positions"

    symbol: str = Field(primary_key=True, max_length=20)
    qty: float
    avg_entry_price: float  # USD, quantity-weighted over buys (slippage included)
    updated_at: dt.datetime = Field(sa_column=_utc_column())


class SimAccount(SQLModel, table=True):
    """The simulated account's cash (one row, ``id = "paper"``).

    ``as_of`` is the broker's clock: the latest session date it has seen (an
    order's date or a processing date); equity marks positions at the last
    close on or before it.
    """

    __tablename__ = "sim_account"

    id: str = Field(primary_key=True, max_length=20)
    cash: float
    as_of: dt.date | None = None
    updated_at: dt.datetime = Field(sa_column=_utc_column())
