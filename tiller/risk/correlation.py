"""Correlation monitor: Pearson correlations of daily returns over the last window.

Rules (SPEC stage 6, thresholds from ``config/risk.yaml``)
----------------------------------------------------------
With ``rho(a, b)`` the Pearson correlation of the daily returns of ``a`` and ``b``
over the last ``correlation_window`` (60) rows of the returns frame:

* any pair with ``rho > pair_correlation_cap`` (0.7): the pair's combined weight
  is capped at ``pair_combined_weight`` (40% of NAV);
* ``mean(rho)`` over all pairs ``> average_correlation_l1`` (0.5): at least L1;
* every pair ``> all_pairs_correlation_l2`` (0.8): at least L2.

At least two assets are needed.  A pair needs ``max(10, window // 2)`` rows where
both returns are present (fewer, or a constant series, gives no correlation);
a pair without a correlation does not count towards the average and means
"not every pair is above 0.8".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from tiller.domain import RiskLevel
from tiller.risk.model import RiskEvent
from tiller.risk.window import ReturnWindow, pairwise_correlation
from tiller.settings import RiskConfig

Pair = tuple[str, str, float]


@dataclass(frozen=True)
class CorrelationReport:
    """What the monitor found.

    Attributes
    ----------
    symbols:
        The monitored assets present in the returns frame (sorted).
    matrix:
        Their correlation matrix (NaN where a pair has too little data), rows and
        columns in ``symbols`` order.
    pair_index:
        Every pair with a correlation as arrays: row and column in ``symbols`` and ``rho``
        (see :attr:`pairs`).
    average:
        Mean pairwise correlation, None without any pair.
    capped_pairs:
        Pairs above ``pair_correlation_cap``: ``(a, b, combined_cap)`` (fraction of NAV).
    level_floor:
        L2 if every pair is above ``all_pairs_correlation_l2``, L1 if the average is above
        ``average_correlation_l1``, else L0.
    events:
        One :class:`RiskEvent` per finding, with the numbers.
    """

    symbols: tuple[str, ...]
    matrix: np.ndarray
    pair_index: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False)
    average: float | None
    capped_pairs: tuple[Pair, ...]
    level_floor: RiskLevel
    events: tuple[RiskEvent, ...] = field(default=())

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """Every pair with a correlation, ``(a, b, rho)`` with ``a < b`` (built on demand:
        a 150-asset universe has 11,175 pairs a day)."""
        i, j, rho = self.pair_index
        return tuple(
            (self.symbols[a], self.symbols[b], r)
            for a, b, r in zip(i.tolist(), j.tolist(), rho.tolist(), strict=True)
        )


@lru_cache(maxsize=256)
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pairs ``i < j`` of ``n`` assets."""
    return np.triu_indices(n, k=1)


def correlation_report(
    returns: ReturnWindow | pd.DataFrame, symbols: Iterable[str], config: RiskConfig
) -> CorrelationReport:
    """Correlations of ``symbols`` over the last ``config.correlation_window`` rows.

    Parameters
    ----------
    returns:
        Daily simple returns (fraction), one column per asset, rows in date order.
    symbols:
        The assets to monitor (held and candidate); those missing from ``returns`` are
        skipped.
    config:
        Thresholds and window.
    """
    window = config.correlation_window
    if isinstance(returns, pd.DataFrame):
        returns = ReturnWindow.from_frame(returns)
    columns = set(returns.columns)
    present = sorted({s for s in symbols if s in columns})
    recent = returns.tail(window)
    block = recent.select(present)
    values = pairwise_correlation(block, max(10, window // 2))
    upper_i, upper_j = _upper(len(present))
    rhos = values[upper_i, upper_j]
    finite = np.isfinite(rhos)
    missing_pair = not bool(finite.all())
    pair_i, pair_j, pair_rho = upper_i[finite], upper_j[finite], rhos[finite]
    average = float(pair_rho.mean()) if len(pair_rho) else None
    rows = len(recent)
    events: list[RiskEvent] = []
    capped: list[Pair] = []
    for k in np.flatnonzero(pair_rho > config.pair_correlation_cap).tolist():
        a, b, rho = present[pair_i[k]], present[pair_j[k]], float(pair_rho[k])
        capped.append((a, b, config.pair_combined_weight))
        events.append(
            RiskEvent(
                "pair_cap",
                f"{a}+{b}",
                f"{a}-{b} correlation {rho:.2f} > {config.pair_correlation_cap:.2f} over "
                f"the last {rows} days: combined weight capped at "
                f"{config.pair_combined_weight:.0%} of NAV",
            )
        )
    floor = RiskLevel.L0
    if (
        len(pair_rho)
        and not missing_pair
        and bool((pair_rho > config.all_pairs_correlation_l2).all())
    ):
        floor = RiskLevel.L2
        events.append(
            RiskEvent(
                "correlation",
                None,
                f"all {len(pair_rho)} pairs of {', '.join(present)} correlated above "
                f"{config.all_pairs_correlation_l2:.2f} (lowest {float(pair_rho.min()):.2f}) "
                f"over the last {rows} days: at least L2",
            )
        )
    elif average is not None and average > config.average_correlation_l1:
        floor = RiskLevel.L1
        events.append(
            RiskEvent(
                "correlation",
                None,
                f"average pairwise correlation {average:.2f} of {', '.join(present)} > "
                f"{config.average_correlation_l1:.2f} over the last {rows} days: at least L1",
            )
        )
    return CorrelationReport(
        symbols=tuple(present),
        matrix=values,
        pair_index=(pair_i, pair_j, pair_rho),
        average=average,
        capped_pairs=tuple(capped),
        level_floor=floor,
        events=tuple(events),
    )
