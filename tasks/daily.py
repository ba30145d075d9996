"""The daily run for one ``as_of``: checks, the run lock, then the SPEC's stages in order.

The Prefect flow (``flows/daily_rebalance.py``) calls :func:`run_daily` with its
stages wrapped as Prefect tasks; ``tiller run daily`` without a Prefect server calls it
with the plain stage functions.  Either way the same code runs, in the same order:

1. checks that need no database (:mod:`tasks.preflight`): the date, ``TILLER_HOME``,
   the data sources, the broker;
2. the run lock (:func:`tiller.store.locks.run_lock`): one daily run at a time;
3. the book only moves forward (:func:`tasks.preflight.check_book_date`);
4. the flow-run row, then each stage, stopping at the first blocked or failed one.
   Each stage checkpoints its own output, so rerunning a date resumes at the first
   stage that is not complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from tasks import alerting
from tasks.checkpoint import StageOutcome
from tasks.context import RunContext
from tasks.preflight import check_book_date, check_settings, resolve_as_of
from tiller.errors import BlockedError, TradingFailed
from tiller.execution.audit import export_day
from tiller.settings import Settings
from tiller.store.locks import run_lock
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


@dataclass(frozen=True)
class DailyStages:
    """The stage callables of one daily run: plain functions, or the same functions
    wrapped as Prefect tasks."""

    ingest: Callable[..., StageOutcome]
    validate: Callable[..., StageOutcome]
    factors: Callable[..., StageOutcome]
    regime: Callable[..., StageOutcome]
    signals: Callable[..., StageOutcome]
    risk: Callable[..., StageOutcome]
    optimize: Callable[..., StageOutcome]
    orders: Callable[..., StageOutcome]
    report: Callable[..., StageOutcome]


def plain_stages() -> DailyStages:
    """The stage functions themselves (no Prefect)."""
    from tasks.execute import orders_stage
    from tasks.ingest import ingest_stage
    from tasks.optimize import optimize_stage
    from tasks.report import report_stage
    from tasks.risk import risk_stage
    from tasks.strategy import factors_stage, regime_stage, signals_stage
    from tasks.validate import validate_stage

    return DailyStages(
        ingest_stage,
        validate_stage,
        factors_stage,
        regime_stage,
        signals_stage,
        risk_stage,
        optimize_stage,
        orders_stage,
        report_stage,
    )


def run_daily(
    settings: Settings,
    as_of: date | None,
    force: bool,
    stages: DailyStages,
    *,
    run_id: str | None = None,
    prefect_id: str | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    on_interrupted: Callable[[list[str]], None] | None = None,
) -> str:
    """Run the daily pipeline for ``as_of`` (default: the latest completed session).

    ``on_interrupted`` receives the Prefect flow-run ids of earlier runs of the date that
    died without finishing (the flow marks them Crashed in Prefect).

    Returns
    -------
    str
        The run id (its summary: :func:`flows.summary.summarize`).

    Raises
    ------
    TillerError
        A check failed before anything was written (one line saying what to do), the
        run lock is held by another run, or validation blocked the run.
    Exception
        A stage failed; the run is recorded as failed with the message.
    """
    log = logger or logging.getLogger("tiller.daily")
    day = resolve_as_of(as_of)
    check_settings(settings)
    store = Store.open(settings.db_url)
    try:
        with run_lock(store, FLOW, f"{day}", settings.run_lock_wait_seconds):
            check_book_date(store, FLOW, STAGES, day, force)
            stuck = [str(r["prefect_flow_run_id"]) for r in store.running_runs(FLOW, day)]
            run_id = store.start_run(FLOW, day, force, prefect_id, run_id)
            if on_interrupted is not None and any(stuck):
                on_interrupted([p for p in stuck if p and p != "None"])
            ctx = RunContext(settings, store, FLOW, day, run_id, force)
            log.info("daily-rebalance for %s (run %s, force=%s)", day, run_id, force)
            _stages(ctx, stages, log)
            return run_id
    finally:
        store.close()


def _stages(ctx: RunContext, stages: DailyStages, log: Any) -> None:
    store, day, run_id = ctx.store, ctx.as_of, ctx.run_id
    done: dict[str, str] = {}

    def record(name: str, outcome: StageOutcome) -> StageOutcome:
        # a blocking stage did its job (its report is stored); the *run* is blocked
        done[name] = "completed" if outcome.status == "blocked" else outcome.status
        log.info("stage %s: %s (%s)", name, outcome.status, outcome.output_ref)
        return outcome

    complete = {c.stage for c in store.checkpoints(FLOW, day) if c.status == "completed"}
    if not ctx.force and complete >= set(STAGES):
        # a rerun of a finished date changes nothing: no stage is even entered (a skipped
        # stage would recompute its value for the next one from today's book)
        log.info("every stage of %s is complete: nothing to do (--force recomputes)", day)
        export_day(store, day, ctx.settings.home_dir / "audit")
        store.finish_run(run_id, "completed", dict.fromkeys(STAGES, "skipped"))
        return
    try:
        record("ingest", stages.ingest(ctx))
        checked = record("validate", stages.validate(ctx))
        if checked.status == "blocked":
            message = checked.value.blocking_message()
            store.finish_run(run_id, "blocked", done, message)
            raise BlockedError(f"validate blocked the run for {day}: {message}")
        snapshot = record("factors", stages.factors(ctx)).value
        reading = record("regime", stages.regime(ctx)).value
        signal_list = record("signals", stages.signals(ctx, snapshot, reading)).value
        decision = record("risk", stages.risk(ctx, signal_list)).value
        alerting.after_risk(ctx, decision)
        targets = record("optimize", stages.optimize(ctx, signal_list, decision)).value
        execution = record("orders", stages.orders(ctx, targets, decision, signal_list)).value
        alerting.after_orders(ctx, execution)
        record("report", stages.report(ctx))
        export_day(store, day, ctx.settings.home_dir / "audit")
        failed = getattr(execution, "trading_failed", None)
        if failed:
            message = f"orders: {failed}; trading is paused (see `tiller risk status`)"
            store.finish_run(run_id, "failed", done, message)
            raise TradingFailed(message)
    except TradingFailed:
        raise  # recorded above; the orders alert has gone out
    except BlockedError as exc:
        alerting.after_failure(ctx, True, str(exc))
        raise
    except Exception as exc:
        failed = next((s for s in STAGES if s not in done), "flow")
        done[failed] = "failed"
        message = f"{type(exc).__name__}: {exc}"
        store.finish_run(run_id, "failed", done, message)
        alerting.after_failure(ctx, False, message)
        raise
    store.finish_run(run_id, "completed", done)
