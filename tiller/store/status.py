"""What ``tiller status`` reads: the newest run of each flow, the newest NAV snapshots and
the orders still open.  Reads only; plain dicts out (dates as dates, money in USD)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select

from tiller.store.repo import NAV_SNAPSHOTS, ORDERS, RUNS, Store

# An order in one of these states can no longer fill: everything else is still open
# (planned and written ahead, sent, accepted, partially filled).
FINAL_ORDER_STATUSES = ("filled", "canceled", "expired", "rejected", "failed", "abandoned")


def last_runs(store: Store) -> dict[str, dict[str, Any]]:
    """The newest run (by start time) of every flow recorded in ``flow_runs``, by flow
    name: ``as_of, status, started_at, finished_at, error``."""
    newest = (
        select(RUNS.c.flow, func.max(RUNS.c.started_at).label("started_at"))
        .group_by(RUNS.c.flow)
        .subquery()
    )
    query = select(
        RUNS.c.flow,
        RUNS.c.as_of,
        RUNS.c.status,
        RUNS.c.started_at,
        RUNS.c.finished_at,
        RUNS.c.error,
    ).join(
        newest,
        and_(RUNS.c.flow == newest.c.flow, RUNS.c.started_at == newest.c.started_at),
    )
    runs: dict[str, dict[str, Any]] = {}
    for row in _rows(store, query):
        runs[str(row.pop("flow"))] = row
    return runs


def latest_navs(store: Store, portfolio: str, count: int = 2) -> list[dict[str, Any]]:
    """The ``count`` newest NAV snapshots of ``portfolio``, newest first: ``as_of, nav,
    cash, positions_value, peak_nav, drawdown, realized_pnl, unrealized_pnl, fees``."""
    query = (
        select(
            NAV_SNAPSHOTS.c.as_of,
            NAV_SNAPSHOTS.c.nav,
            NAV_SNAPSHOTS.c.cash,
            NAV_SNAPSHOTS.c.positions_value,
            NAV_SNAPSHOTS.c.peak_nav,
            NAV_SNAPSHOTS.c.drawdown,
            NAV_SNAPSHOTS.c.realized_pnl,
            NAV_SNAPSHOTS.c.unrealized_pnl,
            NAV_SNAPSHOTS.c.fees,
        )
        .where(NAV_SNAPSHOTS.c.portfolio == portfolio)
        .order_by(NAV_SNAPSHOTS.c.as_of.desc())
        .limit(count)
    )
    return _rows(store, query)


def open_orders(store: Store) -> list[dict[str, Any]]:
    """The orders not in a final state, oldest first: ``client_order_id, as_of, broker,
    symbol, side, qty, filled_qty, status``."""
    query = (
        select(
            ORDERS.c.client_order_id,
            ORDERS.c.as_of,
            ORDERS.c.broker,
            ORDERS.c.symbol,
            ORDERS.c.side,
            ORDERS.c.qty,
            ORDERS.c.filled_qty,
            ORDERS.c.status,
        )
        .where(ORDERS.c.status.not_in(FINAL_ORDER_STATUSES))
        .order_by(ORDERS.c.as_of, ORDERS.c.client_order_id)
    )
    return _rows(store, query)


def _rows(store: Store, query: Any) -> list[dict[str, Any]]:
    """The rows of ``query`` as plain dicts of Python values (dates stay dates, NULL is
    None: no pandas conversion)."""
    with store.engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]
