"""The stage functions of ``tasks/`` as Prefect tasks: names, retries, no result caching.

The functions themselves import no Prefect (``tiller run daily`` without a server calls
them directly); this module is the one place that wraps them for the flows.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.daily import DailyStages, plain_stages
from tasks.ingest import retry_when_transient
from tasks.weekly import weekly_report_stage


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


weekly_report = task(name="weekly-report", cache_policy=NO_CACHE)(weekly_report_stage)
