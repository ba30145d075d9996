"""Deployments served by ``tiller serve``: the flows on their cron schedules.

With a Prefect server running (``prefect server start``) and ``PREFECT_API_URL``
pointing at it, the Prefect UI lists these deployments and
``prefect deployment run daily-rebalance/daily-rebalance`` runs one now.
"""

from __future__ import annotations

from typing import Any

DAILY_CRON = "30 16 * * 1-5"  # 16:30 New York, weekdays: after the close
WEEKLY_CRON = "0 8 * * 1"  # Monday 08:00 New York: the review of the week before
TIMEZONE = "America/New_York"


def deployments() -> list[Any]:
    """The deployments this process serves."""
    from prefect.schedules import Cron

    from flows.artifacts import hide_parameters
    from flows.daily_rebalance import daily_rebalance
    from flows.research_sweep import research_sweep
    from flows.weekly_review import weekly_review

    served = [
        daily_rebalance.to_deployment(
            name="daily-rebalance",
            schedule=Cron(DAILY_CRON, timezone=TIMEZONE),
            description="Ingest, validate, decide, trade (paper) and report one session.",
            tags=["tiller", "daily"],
        ),
        weekly_review.to_deployment(
            name="weekly-review",
            schedule=Cron(WEEKLY_CRON, timezone=TIMEZONE),
            description="The week's performance, GO/NO-GO gates, correlation and stress sections.",
            tags=["tiller", "weekly"],
        ),
        research_sweep.to_deployment(
            name="research-sweep",
            description="A parameter sweep of the backtest (grid file), fanned out on Dask.",
            tags=["tiller", "research"],
        ),
    ]
    return [hide_parameters(d) for d in served]  # run_id is Tiller's, not an operator's


def serve_deployments() -> None:
    """Register the deployments and run their scheduled and manual runs until stopped."""
    from prefect import serve

    serve(*deployments())
