"""Deployments served by ``tiller serve``: the flows on their cron schedules.

With a Prefect server running (``prefect server start``) and ``PREFECT_API_URL``
pointing at it, the Prefect UI lists these deployments and
``prefect deployment run daily-rebalance/daily-rebalance`` runs one now.
"""

from __future__ import annotations

from typing import Any

DAILY_CRON = "30 16 * * 1-5"  # 16:30 New York, weekdays: after the close
TIMEZONE = "America/New_York"


def deployments() -> list[Any]:
    """The deployments this process serves."""
    from prefect.schedules import Cron

    from flows.daily_rebalance import daily_rebalance

    return [
        daily_rebalance.to_deployment(
            name="daily-rebalance",
            schedule=Cron(DAILY_CRON, timezone=TIMEZONE),
            description="Ingest, validate and (later) trade one session after the close.",
            tags=["tiller", "daily"],
        )
    ]


def serve_deployments() -> None:
    """Register the deployments and run their scheduled and manual runs until stopped."""
    from prefect import serve

    serve(*deployments())
