"""Re-entry after an L4 halt: confirm, wait for calm, then ramp up weekly.

Sequence
--------
1. L4 fires: everything is liquidated and the state is ``halted``.  Nothing may be
   bought and the exposure is 0, whatever the NAV does afterwards.
2. A person confirms (``tiller risk reset --confirm``) ->
   :func:`reset_after_confirmation`: the halt clears, the peak NAV is rebased (to the
   NAV given, else to the next assessed NAV; otherwise the liquidated portfolio, in
   cash, could never climb back within 15% of the old peak) and the phase becomes
   ``"waiting"``.  Exposure stays 0.
3. ``"waiting"``: each new assessed day whose annualised portfolio volatility
   ``sigma = std(r[-20:]) * sqrt(252)`` (sample std, ``ddof = 1``, of the last
   :data:`VOL_WINDOW` daily portfolio returns) is below ``target_volatility`` adds
   one to ``low_vol_days``; any other day (including one with fewer than 20 returns)
   sets it back to 0.  On the day it reaches ``reentry_low_vol_days`` (5) ramping
   starts.
4. ``"ramping"``: the exposure is multiplied by
   ``fraction = min(1, reentry_initial_fraction + reentry_weekly_step * floor(d / 7))``
   with ``d`` the calendar days since ramping started: 25% -> 50% -> 75% -> 100%.
   When the fraction reaches 1 the phase ends (None).

After a liquidation the realised returns of a portfolio in cash have no
volatility; the caller passes the returns of the portfolio it would hold (its
target weights) as ``portfolio_returns``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from tiller.domain import RiskLevel
from tiller.risk.model import ReentryPhase, RiskEvent, RiskState
from tiller.settings import RiskConfig

VOL_WINDOW = 20
"""Daily portfolio returns in the re-entry volatility estimate."""
PERIODS_PER_YEAR = 252
"""Annualisation factor (trading days) of the re-entry volatility."""


def target_portfolio_returns(returns: pd.DataFrame, targets: Mapping[str, float]) -> pd.Series:
    """Daily returns of the portfolio the book would hold: ``sum_i w_i r_i`` over the
    target weights (``CASH`` and assets without returns left out); with no such target
    (e.g. the last target was all cash), the equal-weighted universe stands in, so that
    re-entry can still measure the market's calm."""
    weights = {s: float(w) for s, w in targets.items() if s in returns.columns and w > 0}
    if not weights:
        if returns.empty:
            return pd.Series(dtype=float)
        weights = dict.fromkeys(returns.columns, 1.0 / len(returns.columns))
    block = returns[list(weights)].to_numpy(dtype=float)
    combined = np.nansum(block * np.array(list(weights.values())), axis=1)
    combined[np.isnan(block).all(axis=1)] = np.nan
    return pd.Series(combined, index=returns.index)


def annualised_volatility(
    portfolio_returns: pd.Series,
    window: int = VOL_WINDOW,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> float | None:
    """``std(r[-window:], ddof=1) * sqrt(periods_per_year)`` of daily returns (fraction).

    NaN returns are dropped first; None when fewer than ``window`` returns remain.
    """
    values = pd.Series(portfolio_returns, dtype=float).dropna().tail(window)
    if len(values) < window:
        return None
    return float(values.std(ddof=1)) * math.sqrt(periods_per_year)


def ramp_fraction(started: date, as_of: date, config: RiskConfig) -> float:
    """``min(1, initial + step * floor((as_of - started).days / 7))``."""
    weeks = max(0, (as_of - started).days) // 7
    return min(1.0, config.reentry_initial_fraction + weeks * config.reentry_weekly_step)


@dataclass(frozen=True)
class ReentryStep:
    """The re-entry part of the next state, and what was decided."""

    phase: ReentryPhase | None
    low_vol_days: int
    ramp_fraction: float
    ramp_started: date | None
    events: tuple[RiskEvent, ...]


def advance_reentry(
    state: RiskState,
    portfolio_returns: pd.Series,
    as_of: date,
    new_day: bool,
    config: RiskConfig,
) -> ReentryStep:
    """Move the re-entry phase on by one assessed day (see the module docstring).

    ``new_day`` is False for a rerun of the last assessed date: the low-vol count is
    then not advanced again.
    """
    phase = state.reentry_phase
    days = state.low_vol_days
    fraction = state.ramp_fraction
    started = state.ramp_started
    events: list[RiskEvent] = []
    if phase == "waiting":
        sigma = annualised_volatility(portfolio_returns)
        target = config.target_volatility
        needed = config.reentry_low_vol_days
        if new_day:
            days = days + 1 if sigma is not None and sigma < target else 0
        if sigma is None:
            measured = f"fewer than {VOL_WINDOW} portfolio returns, volatility unknown"
        else:
            relation = "<" if sigma < target else ">="
            measured = (
                f"annualised portfolio volatility {sigma:.1%} (std of the last {VOL_WINDOW} "
                f"daily returns x sqrt({PERIODS_PER_YEAR})) {relation} target {target:.1%}"
            )
        if days >= needed:
            phase, started = "ramping", as_of
            fraction = ramp_fraction(as_of, as_of, config)
            events.append(
                RiskEvent(
                    "reentry",
                    None,
                    f"{measured}: {days} consecutive low-volatility days >= {needed}; "
                    f"ramping starts at {fraction:.0%} of target size",
                )
            )
        else:
            fraction = 0.0
            events.append(
                RiskEvent(
                    "reentry",
                    None,
                    f"waiting after the L4 reset: {measured}; {days} of {needed} consecutive "
                    "low-volatility days; exposure stays 0",
                )
            )
    elif phase == "ramping":
        assert started is not None  # a ramping state always has its start date
        fraction = ramp_fraction(started, as_of, config)
        weeks = (as_of - started).days // 7
        events.append(
            RiskEvent(
                "reentry",
                None,
                f"ramping since {started.isoformat()} ({weeks} full week(s)): "
                f"{config.reentry_initial_fraction:.0%} + {weeks} x "
                f"{config.reentry_weekly_step:.0%} = {fraction:.0%} of target size",
            )
        )
    if phase == "ramping" and fraction >= 1.0:
        phase, fraction = None, 1.0
        events.append(RiskEvent("reentry", None, "re-entry complete: back to full target size"))
    if phase is None:
        fraction = 1.0
    return ReentryStep(phase, days, fraction, started, tuple(events))


def reset_after_confirmation(state: RiskState, as_of: date, nav: float | None = None) -> RiskState:
    """Clear an L4 halt after a person confirmed it (``tiller risk reset --confirm``).

    Parameters
    ----------
    state:
        A halted state.
    as_of:
        The date of the confirmation (not before the halt).
    nav:
        The NAV (USD) to rebase the peak to; None rebases it to the next assessed NAV.

    Returns
    -------
    RiskState
        Not halted, level L0, phase ``"waiting"`` with no low-volatility day counted,
        ramp fraction 0, the peak rebased.

    Raises
    ------
    ValueError
        The state is not halted, or ``as_of`` is before the halt.
    """
    if not state.halted:
        raise ValueError("the risk state is not halted (no L4 to confirm); nothing to reset")
    if state.halted_since is not None and as_of < state.halted_since:
        raise ValueError(
            f"reset date {as_of.isoformat()} is before the halt on {state.halted_since.isoformat()}"
        )
    if nav is not None and not (math.isfinite(nav) and nav > 0):
        raise ValueError(f"nav must be a positive number (USD), got {nav!r}")
    return replace(
        start_reentry(state, as_of, nav), level=RiskLevel.L0, halted=False, halted_since=None
    )


def start_reentry(state: RiskState, as_of: date, nav: float | None) -> RiskState:
    """``state`` with its peak rebased to ``nav`` and the re-entry phase starting
    (``"waiting"``, no low-volatility day counted, ramp fraction 0) on ``as_of``."""
    return replace(
        state,
        peak_nav=nav,
        reentry_phase="waiting",
        low_vol_days=0,
        ramp_fraction=0.0,
        ramp_started=None,
        reset_on=as_of,
    )
