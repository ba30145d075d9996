"""Alerts raised by the flows (SPEC "Alerts"): built from what the stages decided, sent
through the notifier, which records every outcome and never raises."""

from __future__ import annotations

import logging
from typing import Any

from tasks.context import RunContext
from tiller.store.alerts import previous_risk_level

log = logging.getLogger(__name__)


def send(ctx: RunContext, alert: Any) -> None:
    """Send ``alert``; a notification problem is logged and recorded, never raised."""
    try:
        from tiller.alerts import Notifier

        Notifier(ctx.settings, ctx.store).send(alert)
    except Exception:  # the notifier records its own failures; this guards its set-up
        log.exception("could not send the %s alert", getattr(alert, "trigger", "?"))


def after_risk(ctx: RunContext, decision: Any) -> None:
    """Level changes, the emergency stop and the kill switch."""
    from tiller import alerts

    previous = previous_risk_level(ctx.store, ctx.as_of)
    before = 0 if previous is None else previous
    now = int(decision.level)
    if now != before:
        send(ctx, alerts.risk_level_change(f"L{before}", f"L{now}", decision.drawdown))
    if now == 4 and before != 4:
        send(ctx, alerts.emergency_stop(f"drawdown {decision.drawdown:.1%}: liquidate and halt"))
    if decision.kill_switch:
        send(ctx, alerts.kill_switch(True, decision.kill_reason or "kill switch on"))


def after_orders(ctx: RunContext, report: Any) -> None:
    """Repeated order failures and an unreachable broker."""
    from tiller import alerts

    if report is None:
        return
    if report.unreachable:
        send(ctx, alerts.broker_down(report.unreachable))
    elif report.trading_failed:
        send(ctx, alerts.order_failures(report.failures, report.trading_failed))
    elif report.failures >= ctx.settings.alerts.order_failures_in_a_row:
        send(ctx, alerts.order_failures(report.failures))


def after_failure(ctx: RunContext, blocked: bool, message: str) -> None:
    """A blocked (data quality) or failed run."""
    from tiller import alerts

    if blocked:
        send(ctx, alerts.data_quality_failure(message))
    else:
        send(ctx, alerts.flow_failed(ctx.flow, ctx.as_of, message))
