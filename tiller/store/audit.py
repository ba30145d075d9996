"""The audit trail in the store: events written with what they describe, read back by day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from tiller.store.repo import AUDIT_EVENTS, Store


def insert(tx: Connection, store: Store, events: Sequence[dict[str, Any]]) -> None:
    """Insert audit events (``as_of, kind, correlation_id, symbol, payload`` JSON text,
    ``created_at``, ``run_id``)."""
    store.insert(tx, AUDIT_EVENTS, events)


def day(store: Store, as_of: date) -> pd.DataFrame:
    """Every audit event of ``as_of`` in the order recorded."""
    return store.select(
        select(
            AUDIT_EVENTS.c.as_of,
            AUDIT_EVENTS.c.kind,
            AUDIT_EVENTS.c.correlation_id,
            AUDIT_EVENTS.c.symbol,
            AUDIT_EVENTS.c.payload,
            AUDIT_EVENTS.c.created_at,
            AUDIT_EVENTS.c.run_id,
        )
        .where(AUDIT_EVENTS.c.as_of == as_of)
        .order_by(AUDIT_EVENTS.c.id)
    )
