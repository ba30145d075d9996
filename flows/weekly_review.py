"""The ``weekly-review`` flow: the week's summary, GO/NO-GO gates, correlation, stress and
paper-vs-backtest sections, as JSON + HTML (cron Monday 08:00 New York).

Orchestration only: :func:`tasks.review.run_weekly` with the report stage as a Prefect
task."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.artifacts import dated_run_name, settle
from flows.stage_tasks import weekly_report
from tasks.review import FLOW, run_weekly
from tiller.settings import load_settings


@flow(name=FLOW, flow_run_name=dated_run_name(FLOW), log_prints=True, persist_result=False)
def weekly_review(
    as_of: date | None = None, force: bool = False, run_id: str | None = None
) -> dict[str, Any]:
    """Review the week ending one session: performance, GO/NO-GO gates, correlation, stress.

    The run is named ``weekly-review <session>`` and tagged ``as_of:<session>``; it logs
    the gate verdict and publishes it, the review's figures, the targets-vs-actual table
    and a link to the HTML review as artifacts.

    Args:
        as_of: The last session (YYYY-MM-DD) of the week to review. Empty: the latest
            completed session, resolved when the run starts.
        force: Build the review again even when this week's is complete.
        run_id: Internal: the id the run is recorded under in Tiller's store (the CLI
            passes one to read the summary back; the deployments do not show it).

    Returns:
        The run summary (:func:`flows.summary.summarize`), with the verdicts under
        ``gate``.
    """
    import uuid

    settings = load_settings()
    logger = get_run_logger()
    run_id = run_id or str(uuid.uuid4())
    try:
        run_weekly(
            settings,
            as_of,
            force,
            weekly_report(),
            run_id=run_id,
            prefect_id=str(flow_run.get_id() or ""),
            logger=logger,
        )
    except Exception:
        settle(settings, run_id, logger, failed=True)
        raise
    summary = settle(settings, run_id, logger)
    assert summary is not None, f"run {run_id} finished but is not in the store"
    return summary
