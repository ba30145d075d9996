"""Ingestion and data quality in the store: the ingest log, cross-source checks, the
data-quality reports and their findings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, select

from tiller.store.repo import (
    CROSS_CHECKS,
    DQ_FINDINGS,
    DQ_REPORTS,
    INGEST_LOG,
    Store,
    utcnow,
)


def replace_ingest_log(
    tx: Connection,
    store: Store,
    as_of: date,
    log: Sequence[dict[str, Any]],
    deviations: Sequence[dict[str, Any]],
) -> None:
    """Replace the day's ingest log (one row per series) and cross-source checks."""
    tx.execute(delete(INGEST_LOG).where(INGEST_LOG.c.as_of == as_of))
    tx.execute(delete(CROSS_CHECKS).where(CROSS_CHECKS.c.as_of == as_of))
    store.insert(tx, INGEST_LOG, log)
    store.insert(tx, CROSS_CHECKS, deviations)


def first_ingested(store: Store, as_of: date) -> dict[str, date]:
    """Per bar series, the first session the ingest of ``as_of`` fetched."""
    log = store.select(
        select(INGEST_LOG.c.series, INGEST_LOG.c.first_date).where(
            INGEST_LOG.c.as_of == as_of, INGEST_LOG.c.kind == "bar"
        )
    )
    return {r.series: r.first_date for r in log.itertuples() if r.first_date is not None}


def cross_checks(store: Store, as_of: date) -> pd.DataFrame:
    """The cross-source comparisons recorded by the ingest of ``as_of``."""
    frame = store.select(select(CROSS_CHECKS).where(CROSS_CHECKS.c.as_of == as_of))
    if not frame.empty:
        frame["date"] = pd.to_datetime(frame["date"])
    return frame


def save_report(
    tx: Connection,
    store: Store,
    as_of: date,
    report: dict[str, Any],
    findings: Sequence[dict[str, Any]],
) -> int:
    """Replace the day's data-quality report and findings; returns the report's id."""
    old = select(DQ_REPORTS.c.id).where(DQ_REPORTS.c.as_of == as_of)
    tx.execute(delete(DQ_FINDINGS).where(DQ_FINDINGS.c.report_id.in_(old)))
    tx.execute(delete(DQ_REPORTS).where(DQ_REPORTS.c.as_of == as_of))
    report_id = store.insert_one(tx, DQ_REPORTS, {"as_of": as_of, "created_at": utcnow(), **report})
    store.insert(tx, DQ_FINDINGS, [{"report_id": report_id, **f} for f in findings])
    return report_id


def stale_on(store: Store, as_of: date) -> bool:
    """Whether the data-quality report of ``as_of`` found stale data."""
    query = (
        select(DQ_FINDINGS.c.id)
        .join(DQ_REPORTS, DQ_REPORTS.c.id == DQ_FINDINGS.c.report_id)
        .where(DQ_REPORTS.c.as_of == as_of, DQ_FINDINGS.c.check == "stale")
    )
    return not store.select(query).empty
