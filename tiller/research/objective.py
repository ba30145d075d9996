"""What "best" means for a sweep or a walk-forward step: a score from a run's headline
metrics (:func:`tiller.backtest.metrics.headline`), higher is better.

``score = metric - turnover_penalty x turnover_two_way - drawdown_penalty x max_drawdown``

with ``metric`` one of ``sharpe``, ``sortino``, ``cagr``, ``calmar`` (CAGR / max
drawdown) or ``total_return``; turnover is two-way per year (2.0 = twice the NAV), the
drawdown a fraction (0.2 = 20%).  In a grid file::

    objective: sharpe
    objective: {metric: sharpe, turnover_penalty: 0.05, drawdown_penalty: 1.0}

A run whose metric is undefined (no variance, no drawdown for Calmar) scores minus
infinity: it is never chosen over a run with a figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

METRICS = ("sharpe", "sortino", "cagr", "calmar", "total_return")


@dataclass(frozen=True)
class Objective:
    """A metric with optional penalties (module docstring)."""

    metric: str = "sharpe"
    turnover_penalty: float = 0.0
    drawdown_penalty: float = 0.0

    def score(self, metrics: Mapping[str, Any]) -> float:
        """The score of one run's headline metrics."""
        value = _metric(self.metric, metrics)
        if value is None or not math.isfinite(value):
            return -math.inf
        turnover = float(metrics.get("turnover_two_way") or 0.0)
        drawdown = float(metrics.get("max_drawdown") or 0.0)
        return value - self.turnover_penalty * turnover - self.drawdown_penalty * drawdown

    def describe(self) -> str:
        parts = [self.metric]
        if self.turnover_penalty:
            parts.append(f"- {self.turnover_penalty:g} x turnover")
        if self.drawdown_penalty:
            parts.append(f"- {self.drawdown_penalty:g} x max drawdown")
        return " ".join(parts)


def _metric(name: str, metrics: Mapping[str, Any]) -> float | None:
    if name == "calmar":
        cagr, drawdown = metrics.get("cagr"), metrics.get("max_drawdown")
        if cagr is None or not drawdown:
            return None
        return float(cagr) / float(drawdown)
    value = metrics.get(name)
    return None if value is None else float(value)


def parse_objective(value: Any) -> Objective:
    """An :class:`Objective` from a name or a mapping (module docstring).

    Raises
    ------
    ValueError
        An unknown metric or key, a negative penalty.
    """
    if isinstance(value, str):
        value = {"metric": value}
    if not isinstance(value, dict):
        raise ValueError(f"expected a metric name or a mapping, got {value!r}")
    unknown = set(value) - {"metric", "turnover_penalty", "drawdown_penalty"}
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(sorted(unknown))}; allowed: metric, "
            "turnover_penalty, drawdown_penalty"
        )
    metric = str(value.get("metric", "sharpe"))
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    penalties = {k: float(value.get(k, 0.0)) for k in ("turnover_penalty", "drawdown_penalty")}
    if any(p < 0 for p in penalties.values()):
        raise ValueError(f"penalties must be >= 0, got {penalties}")
    return Objective(metric, **penalties)
