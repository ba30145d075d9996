"""Alerts in the store: the ``alert_log`` table (every notification and what became of it)
and the previous risk level the alert triggers compare against.

Datetimes read back are UTC-aware (SQLite hands back naive datetimes, stored in UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Table, select

from models.alerts import AlertLog
from tiller.store import Tx
from tiller.store.repo import RISK_DECISIONS, Store

ALERT_LOG: Table = AlertLog.__table__  # type: ignore[attr-defined]


def _aware(value: datetime) -> datetime:
    """``value`` as UTC-aware (a naive value is taken to be UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def record_alert(
    store: Store,
    tx: Tx,
    *,
    created_at: datetime,
    level: str,
    trigger: str,
    key: str,
    title: str,
    body: str,
    status: str,
    channels: int,
    error: str | None,
) -> int:
    """Insert one row into ``alert_log``.

    Parameters
    ----------
    store : Store
        The store.
    tx : Tx
        The transaction to write in.
    created_at, level, trigger, key, title, body, status, channels, error
        The row's columns (already truncated to the column sizes by the caller).

    Returns
    -------
    int
        The new row's id.
    """
    values = {
        "created_at": created_at,
        "level": level,
        "trigger": trigger,
        "key": key,
        "title": title,
        "body": body,
        "status": status,
        "channels": channels,
        "error": error,
    }
    return store.insert_one(tx, ALERT_LOG, values)


def last_alert_at(store: Store, key: str, status: str) -> datetime | None:
    """When an alert with ``key`` last got ``status`` (the cooldown's start).

    Parameters
    ----------
    store : Store
        The store.
    key : str
        The cooldown key (trigger + subject).
    status : str
        The recorded status to look for (e.g. ``"sent"``).

    Returns
    -------
    datetime or None
        The newest ``created_at`` (UTC-aware), or ``None`` if there is no such row.
    """
    query = (
        select(ALERT_LOG.c.created_at)
        .where(ALERT_LOG.c.key == key, ALERT_LOG.c.status == status)
        .order_by(ALERT_LOG.c.created_at.desc())
        .limit(1)
    )
    with store.engine.connect() as connection:
        value = connection.execute(query).scalar()
    return None if value is None else _aware(value)


def alerts_since(store: Store, status: str, since: datetime) -> list[dict[str, Any]]:
    """The alerts recorded with ``status`` at or after ``since``, oldest first.

    Parameters
    ----------
    store : Store
        The store.
    status : str
        The recorded status to list (e.g. ``"failed"``).
    since : datetime
        The earliest ``created_at``; a naive value is taken to be UTC.

    Returns
    -------
    list of dict
        One dict per row: ``created_at`` (UTC-aware), ``level``, ``trigger``, ``key``,
        ``title``, ``channels``, ``error``.
    """
    query = (
        select(
            ALERT_LOG.c.created_at,
            ALERT_LOG.c.level,
            ALERT_LOG.c.trigger,
            ALERT_LOG.c.key,
            ALERT_LOG.c.title,
            ALERT_LOG.c.channels,
            ALERT_LOG.c.error,
        )
        .where(ALERT_LOG.c.status == status, ALERT_LOG.c.created_at >= _aware(since))
        .order_by(ALERT_LOG.c.created_at, ALERT_LOG.c.id)
    )
    with store.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [{**row, "created_at": _aware(row["created_at"])} for row in rows]


def previous_risk_level(store: Store, as_of: date) -> int | None:
    """The level of the newest risk decision before ``as_of``.

    Parameters
    ----------
    store : Store
        The store.
    as_of : date
        The session being decided; decisions on or after it are ignored.

    Returns
    -------
    int or None
        The level, or ``None`` if no earlier decision exists.
    """
    previous = store.select(
        select(RISK_DECISIONS.c.level)
        .where(RISK_DECISIONS.c.as_of < as_of)
        .order_by(RISK_DECISIONS.c.as_of.desc())
        .limit(1)
    )
    return int(previous.iloc[0, 0]) if len(previous) else None
