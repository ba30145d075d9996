"""The drawdown ladder: NAV drawdown from its peak -> risk level L0..L4.

Definitions
-----------
``peak = max(peak_before, nav)`` (USD) and ``drawdown = 1 - nav / peak``, a
fraction in [0, 1).  The level is the highest ``Lk`` whose threshold (config
``risk.levels``, defaults 5%, 8%, 12%, 15%) the drawdown reaches::

    L0: drawdown < 5%    L1: >= 5%    L2: >= 8%    L3: >= 12%    L4: >= 15%

A comparison allows :data:`EPSILON` of floating-point slack, so that a NAV of
92,000 against a peak of 100,000 (``1 - 0.92`` is 0.07999999999999996 in
floating point) is the 8% it is meant to be.

The levels are hierarchical: each adds to the controls of the one below
(:func:`level_actions`), so every restriction only tightens as the drawdown
deepens.

Stepping down (hysteresis)
--------------------------
The peak is the true high-water mark: the highest NAV since the start, or since the
last reset a person confirmed after an L4 halt (the only rebase).  A level is never
below the one the drawdown calls for; on the way back it steps down only once the
drawdown is ``level_hysteresis`` (1 point) below the level's threshold, so a NAV
hovering at a threshold does not flip the level (and its trading rules) every day::

    level_t = max(ladder(d_t), floor_t, min(level_{t-1}, ladder(d_t + h)))

Example (h = 1 point): at L2 (8%) the drawdown recovers to 7.5%: ``ladder(8.5%)`` is
still L2, so the level stays L2; at 6.9% ``ladder(7.9%)`` is L1 and the level steps
down to L1.
"""

from __future__ import annotations

import math
from functools import lru_cache

from tiller.domain import RiskLevel
from tiller.settings import RiskConfig

EPSILON = 1e-9
"""Slack (drawdown points) in threshold comparisons."""


def thresholds(config: RiskConfig) -> dict[RiskLevel, float]:
    """The drawdown (fraction) at which each of L1..L4 starts."""
    return dict(_thresholds(tuple(config.levels.items())))


@lru_cache(maxsize=16)
def _thresholds(levels: tuple[tuple[str, float], ...]) -> tuple[tuple[RiskLevel, float], ...]:
    return tuple((RiskLevel[name], value) for name, value in levels)


def compute_drawdown(nav: float, peak: float) -> float:
    """``max(0, 1 - nav / peak)``: the fractional fall of ``nav`` (USD) below ``peak`` (USD).

    Raises
    ------
    ValueError
        ``nav`` or ``peak`` is not a positive finite number.
    """
    for name, value in (("nav", nav), ("peak", peak)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number (USD), got {value!r}")
    return max(0.0, 1.0 - nav / peak)


def drawdown_level(drawdown: float, config: RiskConfig) -> RiskLevel:
    """The highest level whose threshold ``drawdown`` reaches (L0 below L1's)."""
    level = RiskLevel.L0
    for candidate, threshold in _thresholds(tuple(config.levels.items())):
        if drawdown >= threshold - EPSILON:
            level = candidate
    return level


def stepped_level(
    previous: RiskLevel, drawdown: float, floor: RiskLevel, config: RiskConfig
) -> RiskLevel:
    """Today's level from yesterday's, with hysteresis on the way down (module docstring).

    ``max(ladder(drawdown), floor, min(previous, ladder(drawdown + level_hysteresis)))``;
    ``floor`` is a level imposed from elsewhere (the correlation monitor).  Never below
    ``drawdown_level(drawdown)``.
    """
    held = min(previous, drawdown_level(drawdown + config.level_hysteresis, config))
    return max(drawdown_level(drawdown, config), floor, held)


def distance_to_next(level: RiskLevel, drawdown: float, config: RiskConfig) -> float | None:
    """Drawdown points (fraction) left before the level above ``level``; None at L4.

    ``distance = threshold(level + 1) - drawdown``, floored at 0.  Example: peak
    100,000, NAV 91,500 -> drawdown 0.085 (L2) -> 0.12 - 0.085 = 0.035 to L3.
    """
    if level >= RiskLevel.L4:
        return None
    return max(0.0, thresholds(config)[RiskLevel(level + 1)] - drawdown)


def level_exposure_scale(level: RiskLevel, config: RiskConfig) -> float:
    """Cap on gross exposure as a multiple of the normal target.

    L0, L1: 1.0; L2: ``1 - l2_exposure_cut`` (0.75); L3: ``1 - l3_exposure_cut`` (0.5),
    never above L2's; L4: 0.
    """
    if level >= RiskLevel.L4:
        return 0.0
    if level == RiskLevel.L3:
        return min(1.0 - config.l3_exposure_cut, 1.0 - config.l2_exposure_cut)
    if level == RiskLevel.L2:
        return 1.0 - config.l2_exposure_cut
    return 1.0


def level_actions(level: RiskLevel, config: RiskConfig) -> list[str]:
    """The actions a level calls for (cumulative; a stronger action replaces a weaker one).

    ======  ============================================================================
    L1      ALERT, RAISE_CONFIDENCE_THRESHOLD, BLOCK_NEW_BTC
    L2      ALERT, RAISE_CONFIDENCE_THRESHOLD, REDUCE_EXPOSURE_25, CLOSE_BTC, SELL_ONLY
    L3      ALERT, RAISE_CONFIDENCE_THRESHOLD, REDUCE_EXPOSURE_50, CLOSE_BTC, SELL_ONLY,
            SAFE_HAVENS_ONLY, MANUAL_REVIEW
    L4      ALERT, MANUAL_REVIEW, LIQUIDATE, HALT
    ======  ============================================================================

    The percentages in ``REDUCE_EXPOSURE_<n>`` come from ``l2_exposure_cut`` and
    ``l3_exposure_cut`` (25 and 50 by default).  "BTC" stands for every asset of
    class ``crypto``.
    """
    if level == RiskLevel.L0:
        return []
    if level >= RiskLevel.L4:
        return ["ALERT", "MANUAL_REVIEW", "LIQUIDATE", "HALT"]
    actions = ["ALERT", "RAISE_CONFIDENCE_THRESHOLD"]
    if level == RiskLevel.L1:
        return [*actions, "BLOCK_NEW_BTC"]
    if level == RiskLevel.L2:
        cut = round(config.l2_exposure_cut * 100)
        return [*actions, f"REDUCE_EXPOSURE_{cut}", "CLOSE_BTC", "SELL_ONLY"]
    cut = round(config.l3_exposure_cut * 100)
    return [
        *actions,
        f"REDUCE_EXPOSURE_{cut}",
        "CLOSE_BTC",
        "SELL_ONLY",
        "SAFE_HAVENS_ONLY",
        "MANUAL_REVIEW",
    ]
