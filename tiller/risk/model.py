"""The risk stage's value types: persisted state, one position, one recorded decision.

Everything here is a frozen dataclass; :class:`RiskState` round-trips through a
JSON-able ``dict`` so that the caller can persist it between days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from typing import Any, Literal

from tiller.domain import RiskLevel

ReentryPhase = Literal["waiting", "ramping"]
REENTRY_PHASES: tuple[str, ...] = ("waiting", "ramping")
RampOrigin = Literal["reset", "recovery"]
RAMP_ORIGINS: tuple[str, ...] = ("reset", "recovery")


@dataclass(frozen=True)
class PositionInfo:
    """One held position as the risk stage sees it.

    Attributes
    ----------
    qty:
        Units held (shares, coins); > 0 long.  Tiller never shorts, but a negative
        quantity is handled symmetrically by the stops.
    entry_price:
        Average entry price (USD per unit), > 0.
    price:
        Latest price (USD per unit), > 0.
    weight:
        Market value / NAV (fraction).
    """

    qty: float
    entry_price: float
    price: float
    weight: float

    @property
    def loss_from_entry(self) -> float:
        """Fractional loss since entry: ``(entry - price) / entry`` for a long, sign-flipped
        for a short; negative when the position is in profit."""
        if self.entry_price <= 0 or not math.isfinite(self.entry_price):
            raise ValueError(f"entry_price must be a positive number, got {self.entry_price!r}")
        loss = (self.entry_price - self.price) / self.entry_price
        return loss if self.qty >= 0 else -loss


@dataclass(frozen=True)
class RiskEvent:
    """One decision of the risk stage, persisted by the caller.

    Attributes
    ----------
    kind:
        ``level``, ``halt``, ``halted``, ``rebase`` (the confirmed L4 reset),
        ``reentry_wait``/``reentry_start``/``reentry_ramp`` (after the reset),
        ``recovery_wait``/``recovery_start``/``recovery_ramp``/``recovery_end`` (from
        L2/L3), ``ramp_done``, ``kill_switch``, ``correlation``,
        ``pair_cap``, ``stop_exit``, ``stop_halve``, ``stop_held``, ``level_exit``,
        ``buy_block``.
    symbol:
        The asset concerned, or None for a portfolio-wide decision.
    reason:
        Human-readable, with the numbers that led to it.
    """

    kind: str
    symbol: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_date(value: Any, key: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"risk state {key!r}: {value!r} is not a YYYY-MM-DD date") from None


def _parse_level(value: Any) -> RiskLevel:
    if isinstance(value, str):
        try:
            return RiskLevel[value.upper()]
        except KeyError:
            raise ValueError(f"risk state 'level': {value!r} is not one of L0..L4") from None
    try:
        return RiskLevel(int(value))
    except (TypeError, ValueError):
        raise ValueError(f"risk state 'level': {value!r} is not one of L0..L4") from None


@dataclass(frozen=True)
class RiskState:
    """What the risk stage remembers from one day to the next (the caller persists it).

    Attributes
    ----------
    peak_nav:
        The high-water mark: the highest NAV seen (USD) since the start or since the
        last confirmed L4 reset (the only rebase); None means "no peak yet": the next
        assessed NAV becomes the peak.
    level:
        The level of the last assessment (L4 while halted); the next level steps down
        from it with hysteresis (:func:`~tiller.risk.ladder.stepped_level`).
    halted:
        True from the day L4 fires until a person confirms (``tiller risk reset
        --confirm`` -> :func:`~tiller.risk.reentry.reset_after_confirmation`).
    halted_since:
        The ``as_of`` on which L4 fired.
    reentry_phase:
        None (normal trading), ``"waiting"`` (after the reset, counting consecutive
        low-volatility days; nothing held) or ``"ramping"`` (exposure grows weekly).
    ramp_origin:
        Why the ramp runs: ``"reset"`` (after a confirmed L4 reset) or ``"recovery"``
        (buying resumed at L2/L3 after calm sessions); None outside a ramp.
    low_vol_days:
        Consecutive assessed days with annualised portfolio volatility below target
        (while waiting after a reset, or at a sell-only level L2/L3).
    ramp_fraction:
        Share of the normal target size allowed while ramping, in [0, 1].
    ramp_started:
        The ``as_of`` on which ramping started.
    reset_on:
        The date given to the last confirmed reset.
    rebased_from:
        The high-water mark (USD) the last confirmed reset replaced, until the next
        assessment records the rebase (old and new peak) as an event.
    kill_switch:
        Whether the kill switch is on (manual, or automatic on ``last_date``).
    kill_reason:
        Why it is on (None when off).
    manual_kill:
        True when a person turned the kill switch on; it stays on until turned off.
    manual_reason:
        The reason given (None when the latching switch is off).
    manual_by:
        Who turned the latching switch on: ``"person"`` (``tiller risk kill-switch on``)
        or ``"system"`` (trading paused automatically, e.g. the broker kept failing);
        either way it stays on until a person turns it off.
    auto_kill_reason:
        The automatic conditions met on ``last_date`` (None if none); kept so that a
        rerun of that date keeps the kill switch on.
    last_date:
        The ``as_of`` of the last assessment (a same-day rerun counts nothing twice).
    halved:
        Positions already halved by the 12% stop: ``{symbol: entry_price at halving}``,
        so that a position is halved once, not every day it stays below the stop.
    """

    peak_nav: float | None = None
    level: RiskLevel = RiskLevel.L0
    halted: bool = False
    halted_since: date | None = None
    reentry_phase: ReentryPhase | None = None
    ramp_origin: RampOrigin | None = None
    low_vol_days: int = 0
    ramp_fraction: float = 1.0
    ramp_started: date | None = None
    reset_on: date | None = None
    rebased_from: float | None = None
    kill_switch: bool = False
    kill_reason: str | None = None
    manual_kill: bool = False
    manual_reason: str | None = None
    manual_by: str | None = None
    auto_kill_reason: str | None = None
    last_date: date | None = None
    halved: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.peak_nav is not None and not (math.isfinite(self.peak_nav) and self.peak_nav > 0):
            raise ValueError(f"risk state peak_nav must be positive, got {self.peak_nav!r}")
        if self.reentry_phase is not None and self.reentry_phase not in REENTRY_PHASES:
            raise ValueError(
                f"risk state reentry_phase {self.reentry_phase!r}: allowed None, "
                + ", ".join(REENTRY_PHASES)
            )
        if self.ramp_origin is not None and self.ramp_origin not in RAMP_ORIGINS:
            raise ValueError(
                f"risk state ramp_origin {self.ramp_origin!r}: allowed None, "
                + ", ".join(RAMP_ORIGINS)
            )
        if not 0.0 <= self.ramp_fraction <= 1.0:
            raise ValueError(f"risk state ramp_fraction {self.ramp_fraction} not in [0, 1]")
        if self.low_vol_days < 0:
            raise ValueError(f"risk state low_vol_days {self.low_vol_days} is negative")
        object.__setattr__(self, "level", RiskLevel(self.level))
        object.__setattr__(self, "halved", dict(self.halved))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: dates as ISO strings, the level as its name (``"L2"``)."""
        return {
            "peak_nav": self.peak_nav,
            "level": self.level.name,
            "halted": self.halted,
            "halted_since": _iso(self.halted_since),
            "reentry_phase": self.reentry_phase,
            "ramp_origin": self.ramp_origin,
            "low_vol_days": self.low_vol_days,
            "ramp_fraction": self.ramp_fraction,
            "ramp_started": _iso(self.ramp_started),
            "reset_on": _iso(self.reset_on),
            "rebased_from": self.rebased_from,
            "kill_switch": self.kill_switch,
            "kill_reason": self.kill_reason,
            "manual_kill": self.manual_kill,
            "manual_reason": self.manual_reason,
            "manual_by": self.manual_by,
            "auto_kill_reason": self.auto_kill_reason,
            "last_date": _iso(self.last_date),
            "halved": dict(self.halved),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskState:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise.

        Raises
        ------
        ValueError
            An unknown key, or a value of the wrong shape (named in the message).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"risk state: unknown key(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = dict(data)
        if "level" in values:
            values["level"] = _parse_level(values["level"])
        for key in ("halted_since", "ramp_started", "reset_on", "last_date"):
            if key in values:
                values[key] = _parse_date(values[key], key)
        for key in ("peak_nav", "rebased_from"):
            if values.get(key) is not None:
                values[key] = float(values[key])
        if "ramp_fraction" in values:
            values["ramp_fraction"] = float(values["ramp_fraction"])
        if "low_vol_days" in values:
            values["low_vol_days"] = int(values["low_vol_days"])
        for key in ("halted", "kill_switch", "manual_kill"):
            if key in values:
                values[key] = bool(values[key])
        if "halved" in values:
            values["halved"] = {str(k): float(v) for k, v in dict(values["halved"]).items()}
        return cls(**values)
