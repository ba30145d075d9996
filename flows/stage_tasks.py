"""The stage functions of ``tasks/`` as Prefect tasks: names, retries, no result caching.

The functions themselves import no Prefect (``tiller run daily`` without a server calls
them directly); this module is the one place that wraps them for the flows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.daily import DailyStages, plain_stages
from tasks.ingest import retry_when_transient

if TYPE_CHECKING:
    from tasks.checkpoint import StageOutcome
    from tasks.context import RunContext


def daily_stages() -> DailyStages:
    """Every daily stage as a Prefect task (ingest retries transient source failures)."""
    plain = plain_stages()

    def wrap(name: str, fn: object, **options: object) -> object:
        return task(name=name, cache_policy=NO_CACHE, **options)(fn)  # type: ignore[call-overload]

    return DailyStages(
        ingest=wrap(  # type: ignore[arg-type]
            "ingest",
            plain.ingest,
            retries=2,
            retry_delay_seconds=[10, 60],
            retry_condition_fn=retry_when_transient,
        ),
        validate=wrap("validate", plain.validate),  # type: ignore[arg-type]
        factors=wrap("factors", plain.factors),  # type: ignore[arg-type]
        regime=wrap("regime", plain.regime),  # type: ignore[arg-type]
        signals=wrap("signals", plain.signals),  # type: ignore[arg-type]
        risk=wrap("risk", plain.risk),  # type: ignore[arg-type]
        optimize=wrap("optimize", plain.optimize),  # type: ignore[arg-type]
        orders=wrap("orders", plain.orders),  # type: ignore[arg-type]
        report=wrap("report", plain.report),  # type: ignore[arg-type]
    )


def weekly_report() -> Callable[[RunContext], StageOutcome]:
    """The weekly report stage as a Prefect task (imported here, so that the daily flow
    does not load the weekly review's modules: the backtest service, the weekly report)."""
    from tasks.weekly import weekly_report_stage

    return task(name="weekly-report", cache_policy=NO_CACHE)(weekly_report_stage)


def mark_crashed(flow_run_ids: list[str]) -> None:
    """Set earlier flow runs of the same date that died mid-way (still RUNNING in Prefect)
    to Crashed, so the UI does not show them running for ever."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            try:
                run = client.read_flow_run(UUID(flow_run_id))
                if run.state is not None and run.state.type is StateType.RUNNING:
                    client.set_flow_run_state(
                        UUID(flow_run_id),
                        Crashed(message="the process running it died; a later run resumed"),
                        force=True,
                    )
            except Exception:  # the UI's view is not worth failing today's run for
                import logging

                logging.getLogger(__name__).warning("could not mark %s crashed", flow_run_id)
