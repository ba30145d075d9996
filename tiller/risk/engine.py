"""The risk stage: one pure assessment per ``as_of`` (SPEC stage 6).

:func:`assess_risk` takes today's :class:`RiskInputs` and yesterday's
:class:`~tiller.risk.model.RiskState` and returns a :class:`RiskDecision` holding
the new state; the caller persists both.  In order:

1. **Peak and drawdown** -- ``peak = max(peak_before, nav)`` (the high-water mark: only
   a person's confirmation after L4 rebases it), ``drawdown = 1 - nav / peak``
   (:mod:`tiller.risk.ladder`).
2. **Kill switch** -- manual, or automatic from today's inputs
   (:mod:`tiller.risk.killswitch`).  When on, no new order at all goes out.
3. **Correlation** of the held and candidate assets over the last 60 days
   (:mod:`tiller.risk.correlation`): pair caps and a level floor (L1 or L2).
4. **Level** -- ``max(ladder level, correlation floor)``, stepping down with
   hysteresis (:func:`~tiller.risk.ladder.stepped_level`): never below what the
   drawdown calls for.  Reaching L4 halts; a halted state stays at L4 with zero
   exposure and no buying until :func:`~tiller.risk.reentry.reset_after_confirmation`.
   The way back (:mod:`tiller.risk.reentry`): after the reset, wait for calm, then
   ramp; at L2/L3, after ``recovery_calm_sessions`` calm sessions the sell-only rule
   relaxes into a recovery ramp with exposure capped at the level's scale times the
   ramp fraction, while the level and the drawdown stay true.
5. **Stops** from entry (:mod:`tiller.risk.stops`): 12% halve, 18% exit.
6. **What is allowed** (levels are cumulative):

   =====  ==============  ==========  ==================================  ==========
   level  exposure_scale  buying      may be held                         confidence
   =====  ==============  ==========  ==================================  ==========
   L0     1.0             yes         everything                          any
   L1     1.0             yes, no     everything                          >= 0.6
                          new crypto
   L2     0.75            no (sell-   everything but crypto               >= 0.6
                          only)
   L3     0.5             no          safe havens only (GLD, TLT, TIP)    >= 0.6
   L2/L3  scale x ramp    yes         everything but crypto               >= 0.6
   recov.
   L4     0               no          nothing (liquidate, halt)
   =====  ==============  ==========  ==================================  ==========

   ``exposure_scale`` caps gross exposure as a multiple of the normal target; while
   ramping it is further multiplied by the ramp fraction, while halted or waiting it
   is 0.  A held asset that may no longer be held, or whose exit stop fired, is in
   ``forced_exits``.

Every decision is a :class:`~tiller.risk.model.RiskEvent` with a reason quoting its
numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from tiller.domain import RiskLevel, Signal
from tiller.risk.correlation import correlation_report
from tiller.risk.killswitch import automatic_kill_reasons, latch_label
from tiller.risk.ladder import (
    compute_drawdown,
    distance_to_next,
    drawdown_level,
    level_actions,
    level_exposure_scale,
    stepped_level,
    thresholds,
)
from tiller.risk.model import PositionInfo, ReentryPhase, RiskEvent, RiskState
from tiller.risk.reentry import ReentryStep, advance_reentry
from tiller.risk.stops import check_stops
from tiller.risk.window import ReturnWindow
from tiller.settings import RiskConfig

CRYPTO = "crypto"
"""The asset class the BTC rules (no new BTC at L1, close BTC at L2) apply to."""
RESET_COMMAND = "tiller risk reset --confirm"


@dataclass(frozen=True)
class RiskInputs:
    """Everything the risk stage looks at for one ``as_of``.

    Attributes
    ----------
    as_of:
        The trading date assessed.
    nav:
        Net asset value today (USD), > 0.
    previous_nav:
        NAV of the previous assessed day (USD), or None (first day): daily-loss kill.
    returns:
        Daily simple returns (fraction) of the universe, one column per asset, rows in
        date order; the last ``correlation_window`` rows feed the correlation monitor.
    portfolio_returns:
        Daily portfolio returns (fraction) for the re-entry volatility test (the last
        20 are used; after a liquidation, those of the target portfolio).
    recovery_returns:
        Daily returns of what a recovery ramp from L2/L3 may buy (the target portfolio
        without its crypto assets), for the calm test of that way back; None:
        ``portfolio_returns``.
    positions:
        Held positions by symbol.
    signals:
        Today's signals (buy signals and long-eligible assets are the candidates the
        correlation monitor watches beside the held ones).
    asset_classes:
        ``{symbol: asset_class}`` of the universe (``"crypto"`` for BTC-USD).
    stale_data, broker_reachable, errors_today:
        System health for the automatic kill switch.
    """

    as_of: date
    nav: float
    previous_nav: float | None = None
    returns: ReturnWindow | pd.DataFrame = field(default_factory=ReturnWindow)
    portfolio_returns: np.ndarray | pd.Series = field(default_factory=lambda: np.empty(0))
    recovery_returns: np.ndarray | pd.Series | None = None
    positions: Mapping[str, PositionInfo] = field(default_factory=dict)
    signals: Sequence[Signal] = ()
    asset_classes: Mapping[str, str] = field(default_factory=dict)
    stale_data: bool = False
    broker_reachable: bool = True
    errors_today: int = 0


@dataclass(frozen=True)
class RiskDecision:
    """The risk stage's output for one ``as_of``.

    Attributes
    ----------
    as_of:
        The date assessed.
    level:
        Effective level (L4 while halted).
    drawdown:
        ``1 - nav / peak_nav`` (fraction), the peak updated with today's NAV first.
    peak_nav:
        Peak NAV (USD) after today's update.
    distance_to_next:
        Drawdown points (fraction) from ``drawdown`` to the threshold of the level above
        ``level``; None at L4.
    allowed_symbols:
        Assets that may be held (and, if ``buy_allowed``, bought), sorted.
    blocked_buys:
        Allowed assets that may be kept but not bought more (crypto at L1).
    buy_allowed:
        False when sell-only (L2, L3), halted (L4), waiting to re-enter, or killed.
    orders_allowed:
        False when the kill switch is on: no new order of any kind.
    exposure_scale:
        Cap on gross exposure as a multiple of the normal target (see the module table),
        times the ramp fraction while ramping.
    min_confidence:
        Minimum signal confidence for a buy (``l1_min_confidence`` from L1 up, else 0).
    forced_exits:
        ``{symbol: reason}`` of held positions to close (exit stop, or no longer allowed).
    halve:
        ``{symbol: reason}`` of held positions to halve (12% stop).
    pair_caps:
        ``(a, b, combined_cap)``: pairs correlated above ``pair_correlation_cap`` whose
        combined weight may not exceed ``combined_cap`` (fraction of NAV).
    correlation_average:
        Mean pairwise correlation of the monitored assets (None with fewer than two).
    kill_switch, kill_reason:
        Whether the kill switch is on, and why.
    halted:
        True from L4 until a person confirms.
    reentry_phase, ramp_fraction:
        The re-entry phase after the reset and the ramp fraction (1.0 outside it).
    buy_block_reason:
        Why buying is not allowed today (None when it is).
    actions:
        Portfolio-level actions, e.g. ``ALERT``, ``SELL_ONLY``, ``LIQUIDATE``, ``HALT``,
        ``KILL_SWITCH``, ``REENTRY_WAIT``, ``REENTRY_RAMP``, ``CAP_CORRELATED_PAIRS``.
    decisions:
        Every decision with its reason (to persist).
    state:
        The new state to persist.
    """

    as_of: date
    level: RiskLevel
    drawdown: float
    peak_nav: float
    distance_to_next: float | None
    allowed_symbols: tuple[str, ...]
    blocked_buys: tuple[str, ...]
    buy_allowed: bool
    orders_allowed: bool
    exposure_scale: float
    min_confidence: float
    forced_exits: dict[str, str]
    halve: dict[str, str]
    pair_caps: list[tuple[str, str, float]]
    correlation_average: float | None
    kill_switch: bool
    kill_reason: str | None
    halted: bool
    reentry_phase: ReentryPhase | None
    ramp_fraction: float
    buy_block_reason: str | None
    actions: list[str]
    decisions: list[RiskEvent]
    state: RiskState

    def may_buy(self, symbol: str, confidence: float) -> tuple[bool, str]:
        """Whether a buy of ``symbol`` at signal ``confidence`` passes the risk stage, and why."""
        if self.buy_block_reason is not None:
            return False, self.buy_block_reason
        if symbol in self.forced_exits:
            return False, self.forced_exits[symbol]
        if symbol not in self.allowed_symbols:
            return False, f"{symbol} may not be held at {self.level.name}"
        if symbol in self.blocked_buys:
            return False, f"{self.level.name}: no new {CRYPTO} position ({symbol}) may be opened"
        if confidence < self.min_confidence:
            return False, (
                f"confidence {confidence:.2f} < {self.level.name} minimum {self.min_confidence:.2f}"
            )
        return True, f"allowed at {self.level.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the report and the database)."""
        return {
            "as_of": self.as_of.isoformat(),
            "level": self.level.name,
            "drawdown": self.drawdown,
            "peak_nav": self.peak_nav,
            "distance_to_next": self.distance_to_next,
            "allowed_symbols": list(self.allowed_symbols),
            "blocked_buys": list(self.blocked_buys),
            "buy_allowed": self.buy_allowed,
            "orders_allowed": self.orders_allowed,
            "exposure_scale": self.exposure_scale,
            "min_confidence": self.min_confidence,
            "forced_exits": dict(self.forced_exits),
            "halve": dict(self.halve),
            "pair_caps": [list(p) for p in self.pair_caps],
            "correlation_average": self.correlation_average,
            "kill_switch": self.kill_switch,
            "kill_reason": self.kill_reason,
            "halted": self.halted,
            "reentry_phase": self.reentry_phase,
            "ramp_fraction": self.ramp_fraction,
            "buy_block_reason": self.buy_block_reason,
            "actions": list(self.actions),
            "decisions": [e.to_dict() for e in self.decisions],
            "state": self.state.to_dict(),
        }


def _level_reason(
    level: RiskLevel,
    ladder: RiskLevel,
    floor: RiskLevel,
    previous: RiskLevel,
    drawdown: float,
    peak: float,
    nav: float,
    config: RiskConfig,
) -> str:
    th = thresholds(config)
    text = f"drawdown {drawdown:.2%} from peak NAV {peak:,.2f} (NAV {nav:,.2f})"
    if ladder > RiskLevel.L0:
        text += f" >= {ladder.name} threshold {th[ladder]:.2%}"
    else:
        text += f" < L1 threshold {th[RiskLevel.L1]:.2%}"
    if level > ladder and floor >= level:
        text += f"; raised to {level.name} by the correlation monitor"
    elif level > ladder:
        text += (
            f"; held at {level.name} until the drawdown is below "
            f"{th[level] - config.level_hysteresis:.2%} ({config.level_hysteresis * 100:g} point "
            "hysteresis)"
        )
    distance = distance_to_next(level, drawdown, config)
    if distance is not None:
        text += f"; {distance * 100:.2f} points to {RiskLevel(level + 1).name}"
    change = f" (was {previous.name})" if level != previous else ""
    return f"{level.name}{change}: {text}"


def assess_risk(inputs: RiskInputs, state: RiskState, config: RiskConfig) -> RiskDecision:
    """Assess one day: level, kill switch, correlation, stops, re-entry (module docstring).

    Parameters
    ----------
    inputs:
        Today's NAV, returns, positions, signals and system health.
    state:
        The state persisted after the previous assessment (``RiskState()`` the first day).
    config:
        ``load_settings().risk``.

    Returns
    -------
    RiskDecision
        What may be held and bought, exposure cap, exits, caps, actions, reasons, and
        the new state (``decision.state``) to persist.

    Raises
    ------
    ValueError
        ``nav`` is not positive, or ``as_of`` is before the state's last assessed date.
        Re-assessing that same date is allowed: nothing is counted twice.
    """
    as_of, nav = inputs.as_of, inputs.nav
    if state.last_date is not None and as_of < state.last_date:
        last = state.last_date.isoformat()
        raise ValueError(
            f"as_of {as_of.isoformat()} is before the risk state's last assessed date "
            f"{last}: the risk state only moves forward. Run {last} or a later session; to "
            f"replay {as_of.isoformat()}..{last} use "
            f"`tiller backtest --start {as_of.isoformat()} --end {last}`"
        )
    new_day = state.last_date is None or as_of > state.last_date
    compute_drawdown(nav, nav)  # validates nav
    peak = max(state.peak_nav or nav, nav)
    drawdown = compute_drawdown(nav, peak)
    events: list[RiskEvent] = []

    # Kill switch: manual until turned off; automatic from today's inputs (a rerun of the
    # day it fired keeps it).
    auto = automatic_kill_reasons(
        nav,
        inputs.previous_nav,
        inputs.stale_data,
        inputs.broker_reachable,
        inputs.errors_today,
        config,
    )
    if not auto and not new_day and state.auto_kill_reason:
        auto = [f"{state.auto_kill_reason} (earlier today)"]
    auto_reason = "; ".join(auto) or None
    parts = []
    if state.manual_kill:
        parts.append(f"{latch_label(state.manual_by)}: {state.manual_reason}")
    if auto_reason:
        parts.append(f"automatic: {auto_reason}")
    kill = bool(parts)
    kill_reason = " | ".join(parts) if parts else None
    if kill:
        events.append(
            RiskEvent("kill_switch", None, f"kill switch on ({kill_reason}): no new orders")
        )
    elif state.kill_switch:
        events.append(
            RiskEvent("kill_switch", None, "kill switch cleared: no automatic condition today")
        )

    # Correlation of held and candidate assets.
    held = {s for s, p in inputs.positions.items() if p.qty != 0}
    candidates = {s.symbol for s in inputs.signals if s.signal.is_buy or s.long_eligible}
    corr = correlation_report(inputs.returns, held | candidates, config)
    events.extend(corr.events)

    # Level (from the high-water mark, hysteresis on the way down), halt, way back.
    ladder = drawdown_level(drawdown, config)
    level = stepped_level(state.level, drawdown, corr.level_floor, config)
    if state.rebased_from is not None:
        since = state.reset_on.isoformat() if state.reset_on else "an earlier day"
        events.append(
            RiskEvent(
                "rebase",
                None,
                f"L4 reset confirmed on {since}: the high-water mark is rebased from "
                f"{state.rebased_from:,.2f} to {peak:,.2f} (the only rebase; drawdowns are "
                "measured from it from now on)",
            )
        )
    halted, halted_since = state.halted, state.halted_since
    if level >= RiskLevel.L4 and not halted:
        halted, halted_since = True, as_of
        events.append(
            RiskEvent(
                "halt",
                None,
                f"L4: drawdown {drawdown:.2%} from peak NAV {peak:,.2f} (NAV {nav:,.2f}) >= "
                f"{thresholds(config)[RiskLevel.L4]:.2%}: liquidate everything and halt until "
                f"a person confirms with `{RESET_COMMAND}`",
            )
        )
    if halted:
        level = RiskLevel.L4
        if halted_since != as_of:
            since = halted_since.isoformat() if halted_since else "an earlier day"
            events.append(
                RiskEvent(
                    "halted",
                    None,
                    f"halted since {since} (L4); drawdown now {drawdown:.2%}: nothing is "
                    f"bought and exposure is 0 until `{RESET_COMMAND}`",
                )
            )
        step = ReentryStep(None, None, 0, 0.0, None, ())
    else:
        step = advance_reentry(
            state,
            level,
            inputs.portfolio_returns,
            as_of,
            new_day,
            config,
            recovery_returns=inputs.recovery_returns,
        )
        events.extend(step.events)
    events.insert(
        0,
        RiskEvent(
            "level",
            None,
            _level_reason(
                level, ladder, corr.level_floor, state.level, drawdown, peak, nav, config
            ),
        ),
    )
    waiting = step.phase == "waiting"
    recovering = step.phase == "ramping" and level >= RiskLevel.L2 and not halted

    # Stops (a halving is remembered only when orders can go out today).
    stops = check_stops(inputs.positions, state.halved, config, remember=not kill)
    events.extend(stops.events)

    # What may be held and bought.
    universe = sorted(
        set(inputs.asset_classes) | set(inputs.positions) | {s.symbol for s in inputs.signals}
    )
    crypto = {s for s in universe if inputs.asset_classes.get(s) == CRYPTO}
    havens = set(config.safe_havens)
    if halted:
        allowed: list[str] = []
        not_allowed = f"halted after L4 since {halted_since}: liquidate"
    elif waiting:
        allowed = []
        not_allowed = "waiting to re-enter after the L4 reset: nothing is held yet"
    elif level >= RiskLevel.L3 and not recovering:
        allowed = [s for s in universe if s in havens and s not in crypto]
        not_allowed = f"L3: only safe havens ({', '.join(config.safe_havens)}) may be held"
    elif level >= RiskLevel.L2:
        allowed = [s for s in universe if s not in crypto]
        not_allowed = f"{level.name}: crypto positions are closed"
    else:
        allowed = list(universe)
        not_allowed = ""
    forced_exits = dict(stops.exits)
    for symbol in sorted(held - set(allowed) - set(forced_exits)):
        forced_exits[symbol] = f"{symbol}: {not_allowed}"
        events.append(RiskEvent("level_exit", symbol, forced_exits[symbol]))
    allowed = [s for s in allowed if s not in forced_exits]
    halve = {s: r for s, r in stops.halve.items() if s not in forced_exits}
    blocked = sorted(crypto & set(allowed)) if level == RiskLevel.L1 else []

    if kill:
        buy_block_reason: str | None = f"kill switch on ({kill_reason}): no new orders"
    elif halted:
        buy_block_reason = f"halted after L4: nothing is bought until `{RESET_COMMAND}`"
    elif waiting:
        buy_block_reason = (
            f"waiting to re-enter: {step.low_vol_days} of {config.reentry_low_vol_days} "
            "consecutive low-volatility days"
        )
    elif level >= RiskLevel.L2 and not recovering:
        buy_block_reason = (
            f"{level.name}: sell-only (drawdown {drawdown:.2%}; {step.low_vol_days} of "
            f"{config.recovery_calm_sessions} calm sessions before the recovery ramp)"
        )
    else:
        buy_block_reason = None
    buy_allowed = buy_block_reason is None

    if halted or waiting:
        exposure = 0.0
    else:
        exposure = level_exposure_scale(level, config) * step.ramp_fraction
    min_confidence = config.l1_min_confidence if level >= RiskLevel.L1 else 0.0

    actions = level_actions(level, config)
    if recovering:
        actions = [a for a in actions if a not in ("SELL_ONLY", "SAFE_HAVENS_ONLY")]
        actions.append("RECOVERY_RAMP")
    if kill:
        actions.append("KILL_SWITCH")
    if waiting:
        actions.append("REENTRY_WAIT")
    elif step.phase == "ramping" and not recovering:
        actions.append("REENTRY_RAMP")
    if corr.capped_pairs:
        actions.append("CAP_CORRELATED_PAIRS")

    new_state = RiskState(
        peak_nav=peak,
        level=level,
        halted=halted,
        halted_since=halted_since,
        reentry_phase=step.phase,
        ramp_origin=step.origin,
        low_vol_days=step.low_vol_days,
        ramp_fraction=step.ramp_fraction,
        ramp_started=step.ramp_started,
        reset_on=state.reset_on,
        rebased_from=None,
        kill_switch=kill,
        kill_reason=kill_reason,
        manual_kill=state.manual_kill,
        manual_reason=state.manual_reason,
        manual_by=state.manual_by,
        auto_kill_reason=auto_reason,
        last_date=as_of,
        halved=stops.halved,
    )
    decision = RiskDecision(
        as_of=as_of,
        level=level,
        drawdown=drawdown,
        peak_nav=peak,
        distance_to_next=distance_to_next(level, drawdown, config),
        allowed_symbols=tuple(allowed),
        blocked_buys=tuple(blocked),
        buy_allowed=buy_allowed,
        orders_allowed=not kill,
        exposure_scale=exposure,
        min_confidence=min_confidence,
        forced_exits=forced_exits,
        halve=halve,
        pair_caps=list(corr.capped_pairs),
        correlation_average=corr.average,
        kill_switch=kill,
        kill_reason=kill_reason,
        halted=halted,
        reentry_phase=step.phase,
        ramp_fraction=step.ramp_fraction,
        buy_block_reason=buy_block_reason,
        actions=actions,
        decisions=events,
        state=new_state,
    )
    # Buy signals the risk stage turns down, with the reason (for the report).
    for signal in inputs.signals:
        if signal.signal.is_buy:
            ok, why = decision.may_buy(signal.symbol, signal.confidence)
            if not ok:
                events.append(RiskEvent("buy_block", signal.symbol, why))
    return decision


def risk_status(state: RiskState, nav: float, config: RiskConfig) -> dict[str, Any]:
    """What ``tiller risk status`` shows: the persisted state seen at ``nav`` (USD).

    ``drawdown = 1 - nav / max(peak_nav, nav)``; ``level`` is that of the last
    assessment (it may include a correlation floor), ``drawdown_level`` the ladder
    level of ``nav`` alone; ``distance_to_next`` is measured from the higher of the two
    (L4 while halted).
    """
    peak = max(state.peak_nav or nav, nav)
    drawdown = compute_drawdown(nav, peak)
    ladder = drawdown_level(drawdown, config)
    current = RiskLevel.L4 if state.halted else max(state.level, ladder)
    distance = distance_to_next(current, drawdown, config)
    return {
        "as_of": state.last_date.isoformat() if state.last_date else None,
        "level": state.level.name,
        "drawdown_level": ladder.name,
        "nav": nav,
        "peak_nav": peak,
        "peak_rebase_pending": state.peak_nav is None,
        "drawdown": drawdown,
        "next_level": RiskLevel(current + 1).name if distance is not None else None,
        "distance_to_next": distance,
        "kill_switch": state.kill_switch,
        "kill_reason": state.kill_reason,
        "manual_kill": state.manual_kill,
        "kill_switch_by": state.manual_by if state.manual_kill else None,
        "halted": state.halted,
        "halted_since": state.halted_since.isoformat() if state.halted_since else None,
        "reentry_phase": state.reentry_phase,
        "low_vol_days": state.low_vol_days,
        "low_vol_days_needed": config.reentry_low_vol_days,
        "ramp_fraction": state.ramp_fraction,
        "ramp_started": state.ramp_started.isoformat() if state.ramp_started else None,
        "reset_command": RESET_COMMAND if state.halted else None,
    }
