"""The ``weekly-review`` flow: the week's summary, GO/NO-GO gates, correlation, stress and
paper-vs-backtest sections, as JSON + HTML (cron Monday 08:00 New York).

Orchestration only: :func:`tasks.review.run_weekly` with the report stage as a Prefect
task."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.stage_tasks import weekly_report
from tasks.review import FLOW, run_weekly
from tiller.settings import load_settings


@flow(name=FLOW, log_prints=True, persist_result=False)
def weekly_review(
    as_of: date | None = None, force: bool = False, run_id: str | None = None
) -> dict[str, Any]:
    """Review the week ending ``as_of`` (default: the latest completed session)."""
    from flows.summary import summarize
    from tiller.store.repo import Store

    settings = load_settings()
    done = run_weekly(
        settings,
        as_of,
        force,
        weekly_report,
        run_id=run_id,
        prefect_id=str(flow_run.get_id() or ""),
        logger=get_run_logger(),
    )
    store = Store.open(settings.db_url, migrate=False)
    try:
        return summarize(store, done)
    finally:
        store.close()
