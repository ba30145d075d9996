"""Stress tests (SPEC "Backtest and stress tests"), pure: scenario data and pass criteria.

A scenario is a backtest over a historical window (2008-09, 2020, 2022) or over a calm
window with a synthetic shock: every asset's prices from ``shock_date`` on multiplied by
``1 + shock`` (e.g. -20%: open, high, low, close and adjusted close), so the portfolio
meets the fall at that session's open with no warning.

Pass criteria (``stress`` settings): each scenario's max drawdown <= its limit; the mean
of the scenarios' max drawdowns <= ``max_mean_drawdown`` (18%); no scenario reaches L4
(unless ``allow_l4``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tiller.backtest.engine import MarketHistory
from tiller.backtest.result import BacktestResult
from tiller.settings import StressConfig, StressScenario

PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")


def shocked(market: MarketHistory, scenario: StressScenario) -> MarketHistory:
    """``market`` with the scenario's shock applied (unchanged when it has none).

    Worked example: SPY closes at 200 the day before a -20% shock on ``shock_date``; every
    price of SPY from ``shock_date`` on is x 0.8, so that day opens at ``0.8 * open`` and
    the close-to-close return is ``0.8 * close / 200 - 1`` (-20% when the close equals 200).
    """
    if scenario.shock is None or scenario.shock_date is None:
        return market
    bars = market.bars.copy()
    hit = bars["date"] >= pd.Timestamp(scenario.shock_date)
    columns = [c for c in PRICE_COLUMNS if c in bars.columns]
    bars.loc[hit, columns] = bars.loc[hit, columns] * (1.0 + scenario.shock)
    return MarketHistory(bars=bars, vix=market.vix)


def evaluate(
    result: BacktestResult, scenario: StressScenario, config: StressConfig
) -> dict[str, Any]:
    """One scenario's outcome: max drawdown vs its limit, worst risk level, pass or fail."""
    drawdown = float(result.daily["drawdown"].max()) if not result.daily.empty else 0.0
    level = int(result.daily["level"].max()) if not result.daily.empty else 0
    problems = []
    if drawdown > scenario.max_drawdown:
        problems.append(f"max drawdown {drawdown:.2%} > limit {scenario.max_drawdown:.2%}")
    if level >= 4 and not config.allow_l4:
        problems.append("L4 was triggered")
    reason = "; ".join(problems) or (
        f"max drawdown {drawdown:.2%} <= limit {scenario.max_drawdown:.2%}, worst level L{level}"
    )
    return {
        "scenario": scenario.name,
        "run_id": result.run_id,
        "description": scenario.description,
        "start": result.start,
        "end": result.end,
        "max_drawdown": drawdown,
        "drawdown_limit": scenario.max_drawdown,
        "max_level": level,
        "passed": not problems,
        "reason": reason,
    }


def verdict(outcomes: Sequence[dict[str, Any]], config: StressConfig) -> dict[str, Any]:
    """The overall pass/fail of a set of scenario outcomes (module docstring criteria)."""
    if not outcomes:
        return {"passed": False, "mean_drawdown": None, "reasons": ["no scenario ran"]}
    mean = math.fsum(o["max_drawdown"] for o in outcomes) / len(outcomes)
    reasons = [f"{o['scenario']}: {o['reason']}" for o in outcomes if not o["passed"]]
    if mean > config.max_mean_drawdown:
        reasons.append(f"mean scenario drawdown {mean:.2%} > {config.max_mean_drawdown:.2%}")
    return {"passed": not reasons, "mean_drawdown": mean, "reasons": reasons}
