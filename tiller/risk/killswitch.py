"""The kill switch: when on, no new order (buy or sell) goes out.

Two ways to turn it on
----------------------
Manual
    :func:`set_kill_switch` (``tiller risk kill --on/--off``).  It stays on, day after
    day, until a person turns it off.
Automatic
    Evaluated afresh on every assessment from that day's inputs, any of:

    * daily loss ``1 - nav / previous_nav > kill_daily_loss`` (3%; a loss of exactly 3%,
      within :data:`~tiller.risk.ladder.EPSILON`, does not fire);
    * stale market data;
    * the broker unreachable;
    * ``errors_today >= kill_error_burst`` (5) stage errors.

    An automatic kill holds for the rest of the ``as_of`` it fired on (a rerun of the
    same day keeps it, unless a person turns it off with :func:`set_kill_switch`) and
    clears on the next day whose inputs no longer meet any condition.
"""

from __future__ import annotations

from dataclasses import replace

from tiller.risk.ladder import EPSILON
from tiller.risk.model import RiskState
from tiller.settings import RiskConfig


def automatic_kill_reasons(
    nav: float,
    previous_nav: float | None,
    stale_data: bool,
    broker_reachable: bool,
    errors_today: int,
    config: RiskConfig,
) -> list[str]:
    """Every automatic condition met today, each as a sentence with its numbers."""
    reasons: list[str] = []
    if previous_nav is not None and previous_nav > 0:
        loss = 1.0 - nav / previous_nav
        if loss > config.kill_daily_loss + EPSILON:
            reasons.append(
                f"daily loss {loss:.2%} (NAV {previous_nav:,.2f} -> {nav:,.2f}) > "
                f"{config.kill_daily_loss:.2%}"
            )
    if stale_data:
        reasons.append("market data is stale")
    if not broker_reachable:
        reasons.append("the broker is unreachable")
    if errors_today >= config.kill_error_burst:
        reasons.append(f"{errors_today} errors today >= burst limit {config.kill_error_burst}")
    return reasons


def latch_label(by: str | None) -> str:
    """How a latching kill switch is named in reasons: ``manual`` or ``automatic pause``."""
    return "automatic pause" if by == "system" else "manual"


def set_kill_switch(state: RiskState, on: bool, reason: str, by: str = "person") -> RiskState:
    """Turn the latching kill switch on or off (pure: returns the new state).

    Turning it off also clears an automatic kill of the current day; the next
    assessment re-evaluates the automatic conditions.

    Parameters
    ----------
    state:
        The persisted risk state.
    on:
        True to stop all new orders until turned off.
    reason:
        Who and why, recorded in the state (required when turning it on).
    by:
        ``"person"`` (the CLI) or ``"system"`` (an automatic pause, e.g. the broker kept
        failing): recorded so that reports say which; both latch until a person turns
        the switch off.
    """
    if on:
        if not reason.strip():
            raise ValueError("turning the kill switch on needs a reason")
        if by not in ("person", "system"):
            raise ValueError(f"by must be 'person' or 'system', got {by!r}")
        return replace(
            state,
            kill_switch=True,
            manual_kill=True,
            manual_reason=reason,
            manual_by=by,
            kill_reason=f"{latch_label(by)}: {reason}",
        )
    return replace(
        state,
        kill_switch=False,
        manual_kill=False,
        manual_reason=None,
        manual_by=None,
        auto_kill_reason=None,
        kill_reason=None,
    )
