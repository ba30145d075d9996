"""The ``weekly-review`` flow: the week's summary, GO/NO-GO gates, correlation, stress and
paper-vs-backtest sections, as JSON + HTML (cron Monday 08:00 New York)."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks import alerting
from tasks.context import RunContext
from tasks.weekly import weekly_report
from tiller.calendars import latest_completed_session
from tiller.settings import load_settings
from tiller.store.repo import Store

FLOW = "weekly-review"


@flow(name=FLOW, log_prints=True, persist_result=False)
def weekly_review(
    as_of: date | None = None, force: bool = False, run_id: str | None = None
) -> dict[str, Any]:
    """Review the week ending ``as_of`` (default: the latest completed session)."""
    from flows.summary import summarize

    logger = get_run_logger()
    settings = load_settings()
    day = as_of or latest_completed_session()
    store = Store.open(settings.db_url)
    run_id = store.start_run(FLOW, day, force, str(flow_run.get_id() or ""), run_id)
    ctx = RunContext(settings, store, FLOW, day, run_id, force)
    stages: dict[str, str] = {}
    try:
        outcome = weekly_report(ctx)
        stages["report"] = outcome.status
        logger.info("weekly report: %s (%s)", outcome.status, outcome.output_ref)
    except Exception as exc:
        stages["report"] = "failed"
        message = f"{type(exc).__name__}: {exc}"
        store.finish_run(run_id, "failed", stages, message)
        alerting.after_failure(ctx, False, message)
        raise
    store.finish_run(run_id, "completed", stages)
    summary = summarize(store, run_id)
    store.close()
    return summary
