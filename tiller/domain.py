"""Domain types handed from stage to stage (frozen dataclasses and enums).

The strategy core is LEAN-shaped: universe -> alpha (factors, regime,
signals) -> risk -> portfolio (optimize) -> execution.  Each hand-off is one of
these types, so the daily flow and the backtest pass the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Regime(StrEnum):
    """Market regime from the VIX close (SPEC stage 4)."""

    NORMAL = "NORMAL"
    ELEVATED = "ELEVATED"
    HIGH_VOL = "HIGH_VOL"
    EXTREME = "EXTREME"


class SignalType(StrEnum):
    """Per-asset signal (SPEC stage 5)."""

    STRONG_BUY = "STRONG_BUY"
    BUY = "BUY"
    HOLD = "HOLD"
    SELL = "SELL"
    STRONG_SELL = "STRONG_SELL"

    @property
    def is_buy(self) -> bool:
        return self in (SignalType.STRONG_BUY, SignalType.BUY)


@dataclass(frozen=True)
class Signal:
    """One asset's signal for one ``as_of``.

    Attributes
    ----------
    symbol, signal:
        The asset and its rule outcome after the regime filter.
    confidence:
        In [0, 1].
    reason:
        Human-readable: which rule fired with the numbers, and any filter applied.
    long_eligible:
        Whether the cross-sectional rule lets the asset be held long (top group and
        above SMA200, or a defensive asset in defensive mode); never a short.
    """

    symbol: str
    signal: SignalType
    confidence: float
    reason: str
    long_eligible: bool


class RiskLevel(IntEnum):
    """Hierarchical risk level from NAV drawdown (SPEC stage 6)."""

    L0 = 0
    L1 = 1
    L2 = 2
    L3 = 3
    L4 = 4
