"""The way back: after an L4 reset (confirm, wait for calm, ramp) and from L2/L3 (recover).

The drawdown is always measured from the high-water mark, so the way back never
pretends a loss is gone; what relaxes is what the book may *do*.

After an L4 halt
----------------
1. L4 fires: everything is liquidated and the state is ``halted``.  Nothing may be
   bought and the exposure is 0, whatever the NAV does afterwards.
2. A person confirms (``tiller risk reset --confirm``) ->
   :func:`reset_after_confirmation`: the halt clears, the peak NAV is rebased (to the
   NAV given, else to the next assessed NAV) -- the only rebase there is, recorded as an
   event with the old peak and the new one -- and the phase becomes ``"waiting"``.
3. ``"waiting"``: each new assessed day whose annualised portfolio volatility
   ``sigma = std(r[-20:]) * sqrt(252)`` (sample std, ``ddof = 1``, of the last
   :data:`VOL_WINDOW` daily portfolio returns) is below ``target_volatility`` adds
   one to ``low_vol_days``; any other day (including one with fewer than 20 returns)
   sets it back to 0.  On the day it reaches ``reentry_low_vol_days`` (5) ramping
   starts (origin ``"reset"``).

From a sell-only level (L2, L3)
-------------------------------
At L2/L3 the book is sell-only.  Calm sessions are counted the same way, on the
part of the target portfolio the ramp may buy (its non-crypto assets, renormalised;
the equal-weighted non-crypto universe when there is none); after
``recovery_calm_sessions`` (10) consecutive ones buying resumes through a ramp
(origin ``"recovery"``): non-crypto assets may be bought (also at L3, whose
safe-havens-only rule relaxes), with gross exposure capped at the level's
exposure scale (L2 0.75, L3 0.5) times the ramp fraction.  The reported level
and drawdown stay what they are; as the drawdown recovers the level steps down
(with hysteresis, :func:`~tiller.risk.ladder.stepped_level`) and the cap rises.
A level that rises during a recovery ramp ends it: sell-only again, calm
sessions counted anew.  L4 from the true peak halts as always.

The ramp
--------
``fraction = min(1, reentry_initial_fraction + reentry_weekly_step * floor(d / 7))``
with ``d`` the calendar days since ramping started: 25% -> 50% -> 75% -> 100%.
The phase ends when the fraction is 1 and the level is below L2.

With no target portfolio (in cash), the returns of the equal-weighted universe stand
in for the portfolio's (:func:`target_portfolio_returns`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from tiller.domain import RiskLevel
from tiller.risk.model import RampOrigin, ReentryPhase, RiskEvent, RiskState
from tiller.risk.window import ReturnWindow
from tiller.settings import RiskConfig

VOL_WINDOW = 20
"""Daily portfolio returns in the re-entry volatility estimate."""
PERIODS_PER_YEAR = 252
"""Annualisation factor (trading days) of the re-entry volatility."""


def target_portfolio_returns(
    returns: ReturnWindow | pd.DataFrame, targets: Mapping[str, float]
) -> np.ndarray:
    """Daily returns of the portfolio the book would hold: ``sum_i w_i r_i`` over the
    target weights (``CASH`` and assets without returns left out); with no such target
    (e.g. the last target was all cash), the equal-weighted universe stands in, so that
    re-entry can still measure the market's calm.  NaN on a day no such asset has a
    return."""
    if isinstance(returns, pd.DataFrame):
        returns = ReturnWindow.from_frame(returns)
    columns = set(returns.columns)
    weights = {s: float(w) for s, w in targets.items() if s in columns and w > 0}
    if not weights:
        if not returns.columns:
            return np.empty(0)
        weights = dict.fromkeys(returns.columns, 1.0 / len(returns.columns))
    block = returns.select(list(weights))
    combined = np.nansum(block * np.array(list(weights.values())), axis=1)
    combined[np.isnan(block).all(axis=1)] = np.nan
    return combined


def annualised_volatility(
    portfolio_returns: np.ndarray | pd.Series,
    window: int = VOL_WINDOW,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> float | None:
    """``std(r[-window:], ddof=1) * sqrt(periods_per_year)`` of daily returns (fraction).

    NaN returns are dropped first; None when fewer than ``window`` returns remain.
    """
    values = np.asarray(portfolio_returns, dtype=float)
    values = values[~np.isnan(values)][-window:]
    if len(values) < window:
        return None
    return float(np.std(values, ddof=1)) * math.sqrt(periods_per_year)


def ramp_fraction(started: date, as_of: date, config: RiskConfig) -> float:
    """``min(1, initial + step * floor((as_of - started).days / 7))``."""
    weeks = max(0, (as_of - started).days) // 7
    return min(1.0, config.reentry_initial_fraction + weeks * config.reentry_weekly_step)


@dataclass(frozen=True)
class ReentryStep:
    """The re-entry / recovery part of the next state, and what was decided."""

    phase: ReentryPhase | None
    origin: RampOrigin | None
    low_vol_days: int
    ramp_fraction: float
    ramp_started: date | None
    events: tuple[RiskEvent, ...]


def _calm_text(sigma: float | None, target: float) -> str:
    if sigma is None:
        return f"fewer than {VOL_WINDOW} portfolio returns, volatility unknown"
    relation = "<" if sigma < target else ">="
    return (
        f"annualised portfolio volatility {sigma:.1%} (std of the last {VOL_WINDOW} "
        f"daily returns x sqrt({PERIODS_PER_YEAR})) {relation} target {target:.1%}"
    )


def advance_reentry(
    state: RiskState,
    level: RiskLevel,
    portfolio_returns: np.ndarray | pd.Series,
    as_of: date,
    new_day: bool,
    config: RiskConfig,
    recovery_returns: np.ndarray | pd.Series | None = None,
) -> ReentryStep:
    """Move the way back on by one assessed day (see the module docstring).

    Parameters
    ----------
    state:
        Yesterday's state (not halted).
    level:
        Today's level (after the ladder, the correlation floor and hysteresis).
    portfolio_returns:
        Daily returns for the calm test (the last :data:`VOL_WINDOW` are used).
    as_of:
        The date assessed.
    new_day:
        False for a rerun of the last assessed date: the calm count is not advanced again.
    config:
        The risk settings.
    recovery_returns:
        Daily returns for the calm test of a recovery from L2/L3: the part of the target
        portfolio such a ramp may buy (no crypto); None: ``portfolio_returns``.
    """
    phase, origin = state.reentry_phase, state.ramp_origin
    days = state.low_vol_days
    fraction = state.ramp_fraction
    started = state.ramp_started
    events: list[RiskEvent] = []
    sell_only = level >= RiskLevel.L2
    target = config.target_volatility

    if phase == "ramping" and origin == "recovery" and new_day and level > state.level:
        phase, origin, started, days = None, None, None, 0
        events.append(
            RiskEvent(
                "recovery_end",
                None,
                f"recovery ramp ended: the level rose from {state.level.name} to {level.name}; "
                "sell-only again until calm returns",
            )
        )
    if phase == "waiting" or (phase is None and sell_only):
        calm_on = portfolio_returns
        if phase != "waiting" and recovery_returns is not None:
            calm_on = recovery_returns  # a recovery buys no crypto: its calm is not crypto's
        sigma = annualised_volatility(calm_on)
        if new_day:
            days = days + 1 if sigma is not None and sigma < target else 0
        measured = _calm_text(sigma, target)
        needed = (
            config.reentry_low_vol_days if phase == "waiting" else config.recovery_calm_sessions
        )
        kind = "reentry" if phase == "waiting" else "recovery"
        if days >= needed:
            kind += "_start"
            origin = "reset" if phase == "waiting" else "recovery"
            phase, started = "ramping", as_of
            fraction = ramp_fraction(as_of, as_of, config)
            cap = (
                f"{fraction:.0%} of target size"
                if origin == "reset"
                else f"{fraction:.0%} of the {level.name} exposure cap; the level and the "
                "drawdown from the peak are unchanged"
            )
            events.append(
                RiskEvent(
                    kind,
                    None,
                    f"{measured}: {days} consecutive calm sessions >= {needed}; "
                    f"ramping starts at {cap}",
                )
            )
        elif phase == "waiting":
            fraction = 0.0
            events.append(
                RiskEvent(
                    "reentry_wait",
                    None,
                    f"waiting after the L4 reset: {measured}; {days} of {needed} consecutive "
                    "low-volatility days; exposure stays 0",
                )
            )
        else:
            fraction = 1.0
            events.append(
                RiskEvent(
                    "recovery_wait",
                    None,
                    f"{level.name} sell-only: {measured}; {days} of {needed} consecutive calm "
                    "sessions before buying may resume through the recovery ramp",
                )
            )
    elif phase == "ramping":
        assert started is not None  # a ramping state always has its start date
        fraction = ramp_fraction(started, as_of, config)
        weeks = (as_of - started).days // 7
        what = "re-entry" if origin == "reset" else f"recovery at {level.name}"
        events.append(
            RiskEvent(
                "reentry_ramp" if origin == "reset" else "recovery_ramp",
                None,
                f"{what}: ramping since {started.isoformat()} ({weeks} full week(s)): "
                f"{config.reentry_initial_fraction:.0%} + {weeks} x "
                f"{config.reentry_weekly_step:.0%} = {fraction:.0%} of target size",
            )
        )
    else:
        days = 0
    if phase == "ramping" and fraction >= 1.0:
        fraction = 1.0
        if not sell_only:
            phase, origin = None, None
            events.append(RiskEvent("ramp_done", None, "ramp complete: back to full target size"))
    if phase is None:
        fraction = 1.0
        origin = None
        if not sell_only:
            started = None
    return ReentryStep(phase, origin, days, fraction, started, tuple(events))


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
        state,
        peak_nav=nav,
        level=RiskLevel.L0,
        halted=False,
        halted_since=None,
        reentry_phase="waiting",
        ramp_origin=None,
        low_vol_days=0,
        ramp_fraction=0.0,
        ramp_started=None,
        reset_on=as_of,
        rebased_from=state.peak_nav,
    )
