"""The weekly review run: checks, the run lock, then its one checkpointed stage.

The Prefect flow (``flows/weekly_review.py``) passes the stage wrapped as a Prefect
task; ``tiller run weekly`` without a Prefect server passes the plain function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from tasks import alerting
from tasks.checkpoint import StageOutcome
from tasks.context import RunContext
from tasks.preflight import check_home, resolve_as_of
from tiller.settings import Settings
from tiller.store.locks import run_lock
from tiller.store.repo import Store

FLOW = "weekly-review"


def run_weekly(
    settings: Settings,
    as_of: date | None,
    force: bool,
    stage: Callable[[RunContext], StageOutcome] | None = None,
    *,
    run_id: str | None = None,
    prefect_id: str | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> str:
    """Review the week ending ``as_of`` (default: the latest completed session); returns
    the run id.  Raises on a failed check (nothing written) or a failed stage."""
    if stage is None:
        from tasks.weekly import weekly_report_stage

        stage = weekly_report_stage
    log = logger or logging.getLogger("tiller.weekly")
    day = resolve_as_of(as_of)
    check_home(settings)
    store = Store.open(settings.db_url)
    try:
        with run_lock(store, FLOW, f"{day}", settings.run_lock_wait_seconds):
            run_id = store.start_run(FLOW, day, force, prefect_id, run_id)
            ctx = RunContext(settings, store, FLOW, day, run_id, force)
            stages: dict[str, str] = {}
            try:
                outcome = stage(ctx)
                stages["report"] = outcome.status
                log.info("weekly report: %s (%s)", outcome.status, outcome.output_ref)
            except Exception as exc:
                stages["report"] = "failed"
                message = f"{type(exc).__name__}: {exc}"
                store.finish_run(run_id, "failed", stages, message)
                alerting.after_failure(ctx, False, message)
                raise
            store.finish_run(run_id, "completed", stages)
            return run_id
    finally:
        store.close()
