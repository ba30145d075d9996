"""The ``daily-rebalance`` flow: the SPEC's stages for one ``as_of``, in order.

The flow only orchestrates: it opens the store, records the run, calls each
stage's task and stops at the first blocked or failed stage.  Each task
checkpoints its own output (``tasks/checkpoint.py``), so rerunning a date
resumes at the first stage that is not complete.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks import alerting
from tasks.checkpoint import StageOutcome
from tasks.context import RunContext
from tasks.execute import orders
from tasks.ingest import ingest
from tasks.optimize import optimize
from tasks.report import report
from tasks.risk import risk
from tasks.strategy import factors, regime, signals
from tasks.validate import validate
from tiller.calendars import is_session, latest_completed_session
from tiller.errors import BlockedError, ConfigError
from tiller.settings import load_settings
from tiller.store.repo import Store

FLOW = "daily-rebalance"
STAGES = (
    "ingest",
    "validate",
    "factors",
    "regime",
    "signals",
    "risk",
    "optimize",
    "orders",
    "report",
)


def resolve_as_of(as_of: date | None) -> date:
    """``as_of`` or the latest completed XNYS session; it must be a session."""
    day = as_of or latest_completed_session()
    if not is_session("XNYS", day):
        raise ConfigError(f"as_of {day} is not an XNYS trading session; pick a trading day")
    return day


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
        The run summary (see :func:`flows.summary.summarize`).  A blocked or
        failed run raises instead, so Prefect marks it Failed; its summary is
        in the store under ``run_id``.
    """
    from flows.summary import summarize

    logger = get_run_logger()
    settings = load_settings()
    day = resolve_as_of(as_of)
    store = Store.open(settings.db_url)
    run_id = store.start_run(FLOW, day, force, str(flow_run.get_id() or ""), run_id)
    ctx = RunContext(settings, store, FLOW, day, run_id, force)
    stages: dict[str, str] = {}
    logger.info("daily-rebalance for %s (run %s, force=%s)", day, run_id, force)

    def record(name: str, outcome: StageOutcome) -> StageOutcome:
        # a blocking stage did its job (its report is stored); the *run* is blocked
        stages[name] = "completed" if outcome.status == "blocked" else outcome.status
        logger.info("stage %s: %s (%s)", name, outcome.status, outcome.output_ref)
        return outcome

    try:
        record("ingest", ingest(ctx))
        checked = record("validate", validate(ctx))
        if checked.status == "blocked":
            message = checked.value.blocking_message()
            store.finish_run(run_id, "blocked", stages, message)
            raise BlockedError(f"validate blocked the run for {day}: {message}")
        snapshot = record("factors", factors(ctx)).value
        reading = record("regime", regime(ctx)).value
        signal_list = record("signals", signals(ctx, snapshot, reading)).value
        decision = record("risk", risk(ctx, signal_list)).value
        alerting.after_risk(ctx, decision)
        targets = record("optimize", optimize(ctx, signal_list, decision)).value
        execution = record("orders", orders(ctx, targets, decision, signal_list)).value
        alerting.after_orders(ctx, execution)
        record("report", report(ctx))
    except BlockedError as exc:
        alerting.after_failure(ctx, True, str(exc))
        raise
    except Exception as exc:
        failed = next((s for s in STAGES if s not in stages), "flow")
        stages[failed] = "failed"
        message = f"{type(exc).__name__}: {exc}"
        store.finish_run(run_id, "failed", stages, message)
        alerting.after_failure(ctx, False, message)
        raise
    store.finish_run(run_id, "completed", stages)
    summary = summarize(store, run_id)
    store.close()
    return summary
