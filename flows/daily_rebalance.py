"""The ``daily-rebalance`` flow: the SPEC's stages for one ``as_of``, as Prefect tasks.

The flow only orchestrates: :func:`tasks.daily.run_daily` checks what can be checked
before anything is written, takes the run lock, records the run and calls each stage
(here wrapped as a Prefect task) in order, stopping at the first blocked or failed
one.  Each stage checkpoints its own output (``tasks/checkpoint.py``), so rerunning a
date resumes at the first stage that is not complete.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.artifacts import dated_run_name, settle
from flows.stage_tasks import daily_stages, mark_crashed
from tasks.daily import FLOW, STAGES, run_daily
from tiller.settings import load_settings

__all__ = ["FLOW", "STAGES", "daily_rebalance"]


@flow(name=FLOW, flow_run_name=dated_run_name(FLOW), log_prints=True, persist_result=False)
def daily_rebalance(
    as_of: date | None = None, force: bool = False, run_id: str | None = None
) -> dict[str, Any]:
    """Run the daily pipeline for one session: ingest, validate, decide, trade (paper), report.

    The run is named ``daily-rebalance <session>`` and tagged ``as_of:<session>``; it
    logs its summary and publishes it, the report's figures, the positions-vs-targets
    table and a link to the HTML report as artifacts (a rerun of a finished date too).

    Args:
        as_of: The session (YYYY-MM-DD, an XNYS trading day that has closed) the run is
            for; no data after it is read. Empty: the latest completed session, resolved
            when the run starts.
        force: Recompute the data, strategy and report stages even when their checkpoint
            is complete (a traded day's risk, optimize and orders stay as they traded).
        run_id: Internal: the id the run is recorded under in Tiller's store (the CLI
            passes one to read the summary back; the deployments do not show it).

    Returns:
        The run summary (:func:`flows.summary.summarize`). A blocked or failed run
        raises instead, so Prefect marks it Failed; its summary is still logged and
        published.
    """
    import uuid

    settings = load_settings()
    logger = get_run_logger()
    run_id = run_id or str(uuid.uuid4())
    try:
        run_daily(
            settings,
            as_of,
            force,
            daily_stages(),
            run_id=run_id,
            prefect_id=str(flow_run.get_id() or ""),
            logger=logger,
            on_interrupted=mark_crashed,
        )
    except Exception:
        settle(settings, run_id, logger, failed=True)  # a blocked or failed run says so too
        raise
    summary = settle(settings, run_id, logger)
    assert summary is not None, f"run {run_id} finished but is not in the store"
    return summary
