"""The day's decisions in the store: factors, regime, signals, the risk decision and its
events, target weights and how they were optimised.

Writes take a transaction (:data:`tiller.store.Tx`): each stage replaces its rows of the
day and lands them with its checkpoint.  Weights are fractions of NAV.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, select

from tiller.store.repo import (
    CHECKPOINTS,
    FACTOR_GAPS,
    FACTORS,
    OPTIMIZATIONS,
    REGIMES,
    RISK_DECISIONS,
    RISK_EVENTS,
    SIGNALS,
    TARGETS,
    Store,
    utcnow,
)


def save_factors(
    tx: Connection,
    store: Store,
    as_of: date,
    values: Sequence[dict[str, Any]],
    gaps: Sequence[dict[str, Any]],
) -> None:
    """Replace the day's factor values (``run_id, symbol, factor, value``) and gaps
    (``run_id, symbol, factor, reason``)."""
    store.replace_for_as_of(tx, FACTORS, as_of)
    store.replace_for_as_of(tx, FACTOR_GAPS, as_of)
    store.insert(tx, FACTORS, [{"as_of": as_of, **row} for row in values])
    store.insert(tx, FACTOR_GAPS, [{"as_of": as_of, **row} for row in gaps])


def save_regime(tx: Connection, store: Store, as_of: date, row: dict[str, Any]) -> None:
    """Replace the day's regime reading (``run_id, regime, vix, vix_date, reason``)."""
    store.replace_for_as_of(tx, REGIMES, as_of)
    store.insert(tx, REGIMES, [{"as_of": as_of, **row}])


def save_signals(tx: Connection, store: Store, as_of: date, rows: Sequence[dict[str, Any]]) -> None:
    """Replace the day's signals (``run_id, symbol, signal, confidence, long_eligible,
    reason``)."""
    store.replace_for_as_of(tx, SIGNALS, as_of)
    store.insert(tx, SIGNALS, [{"as_of": as_of, **row} for row in rows])


def save_risk_decision(
    tx: Connection,
    store: Store,
    as_of: date,
    portfolio: str,
    decision: dict[str, Any],
    events: Sequence[dict[str, Any]],
) -> None:
    """Replace the day's risk decision (``run_id, level, drawdown, nav, peak_nav, ...``)
    and its events (``run_id, kind, symbol, reason``)."""
    store.replace_for_as_of(tx, RISK_DECISIONS, as_of)
    store.replace_for_as_of(tx, RISK_EVENTS, as_of)
    store.insert(tx, RISK_DECISIONS, [{"as_of": as_of, "portfolio": portfolio, **decision}])
    now = utcnow()
    store.insert(
        tx,
        RISK_EVENTS,
        [{"as_of": as_of, "portfolio": portfolio, "created_at": now, **e} for e in events],
    )


def previous_level(store: Store, before: date) -> int | None:
    """The risk level (0-4) of the latest risk decision dated before ``before``; None
    before the first."""
    frame = store.select(
        select(RISK_DECISIONS.c.level)
        .where(RISK_DECISIONS.c.as_of < before)
        .order_by(RISK_DECISIONS.c.as_of.desc())
        .limit(1)
    )
    return None if frame.empty else int(frame.iloc[0, 0])


def previous_targets(store: Store, before: date) -> dict[str, float]:
    """The latest target weights dated before ``before`` (``CASH`` left out)."""
    frame = store.select(
        select(TARGETS.c.as_of, TARGETS.c.symbol, TARGETS.c.weight).where(TARGETS.c.as_of < before)
    )
    if frame.empty:
        return {}
    last = frame[frame["as_of"] == frame["as_of"].max()]
    return {r.symbol: float(r.weight) for r in last.itertuples() if r.symbol != "CASH"}


def save_targets(
    tx: Connection,
    store: Store,
    as_of: date,
    targets: Sequence[dict[str, Any]],
    optimization: dict[str, Any],
) -> None:
    """Replace the day's target weights (``run_id, symbol, weight, raw_weight``) and the
    optimisation record (``run_id, method, reason, turnover, skipped``)."""
    store.replace_for_as_of(tx, TARGETS, as_of)
    store.replace_for_as_of(tx, OPTIMIZATIONS, as_of)
    store.insert(tx, TARGETS, [{"as_of": as_of, **row} for row in targets])
    row = dict(optimization)
    row["skipped"] = json.dumps(row.get("skipped", []))
    store.insert(tx, OPTIMIZATIONS, [{"as_of": as_of, **row}])


def failed_stages(store: Store, as_of: date) -> int:
    """The number of stage checkpoints of ``as_of`` that failed (the error burst)."""
    found = store.select(
        select(CHECKPOINTS.c.id).where(
            CHECKPOINTS.c.as_of == as_of, CHECKPOINTS.c.status == "failed"
        )
    )
    return len(found)
