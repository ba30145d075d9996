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

from flows.stage_tasks import daily_stages, mark_crashed
from tasks.daily import FLOW, STAGES, run_daily
from tiller.settings import load_settings

__all__ = ["FLOW", "STAGES", "daily_rebalance"]


@flow(name=FLOW, log_prints=True, persist_result=False)
def daily_rebalance(
    as_of: date | None = None, force: bool = False, run_id: str | None = None
) -> dict[str, Any]:
    """Run the daily pipeline for ``as_of`` (default: the latest completed session).

    Parameters
    ----------
    as_of:
        The session date the run is for; no data after it is read.
    force:
        Recompute every stage even when its checkpoint is complete.
    run_id:
        Tiller's id for this run (the CLI passes one to read the summary back).

    Returns
    -------
    dict
        The run summary (see :func:`flows.summary.summarize`).  A blocked or failed run
        raises instead, so Prefect marks it Failed; its summary is in the store under
        ``run_id``.
    """
    from flows.summary import summarize
    from tiller.store.repo import Store

    settings = load_settings()
    done = run_daily(
        settings,
        as_of,
        force,
        daily_stages(),
        run_id=run_id,
        prefect_id=str(flow_run.get_id() or ""),
        logger=get_run_logger(),
        on_interrupted=mark_crashed,
    )
    store = Store.open(settings.db_url, migrate=False)
    try:
        return summarize(store, done)
    finally:
        store.close()
