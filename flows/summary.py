"""The run summary printed by ``tiller run daily --json`` and returned by the flow."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tiller.store.repo import DQ_REPORTS, Store


def summarize(store: Store, run_id: str) -> dict[str, Any]:
    """One JSON-ready dict describing run ``run_id`` from what the store recorded.

    Keys: ``flow``, ``as_of``, ``status`` (completed | blocked | failed |
    running | interrupted), ``stages`` (stage -> completed | skipped | blocked
    | failed), ``error`` (null or the message), ``run_id``, ``data_quality``
    (status and counts of the as_of's report, or null).
    """
    run = store.run(run_id)
    if run is None:
        raise KeyError(f"no flow run {run_id} in the store")
    report = store.select(
        select(DQ_REPORTS.c.status, DQ_REPORTS.c.blocking, DQ_REPORTS.c.warnings).where(
            DQ_REPORTS.c.as_of == run["as_of"]
        )
    )
    quality = None
    if not report.empty:
        row = report.iloc[0]
        quality = {
            "status": str(row["status"]),
            "blocking": int(row["blocking"]),
            "warnings": int(row["warnings"]),
        }
    return {
        "flow": run["flow"],
        "as_of": run["as_of"].isoformat(),
        "status": run["status"],
        "stages": run["stages"],
        "error": run["error"],
        "run_id": run_id,
        "data_quality": quality,
    }
