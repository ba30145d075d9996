"""Walk-forward: choose on a train window, run the choice on the next test window, roll.

Windows (calendar years, :func:`windows`): train ``[a, a + T)``, test ``[a + T, a + T +
S)`` clipped to the grid's period end, then ``a`` moves on by ``S`` (rolling windows of
fixed length).  On each train window every grid configuration is backtested (points of
the study, persisted and resumable like a sweep's) and the one with the best objective
score is chosen (ties: grid order); that configuration is then backtested on the test
window.  Nothing of a test window reaches a choice: a train backtest reads no bar after
its window's end (the engine cuts the history at ``end``), and the choice reads only the
train scores.

The out-of-sample record is the test windows' daily returns, compounded from the
capital of the first: each test backtest starts from cash on its first session (its
entry trades and costs are in the record).  In-sample vs out-of-sample: per step, the
chosen configuration's train score beside its test score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from tiller.backtest.metrics import ratios
from tiller.research.executor import Executor
from tiller.research.grid import Grid, GridError, Point
from tiller.research.sweep import PlannedPoint, Progress, StudyRun, compute_points, plan
from tiller.store.repo import Store
from tiller.store.research import ensure_sweep, load_points


@dataclass(frozen=True)
class Step:
    """One train window and the test window after it."""

    train_start: date
    train_end: date
    test_start: date
    test_end: date


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def windows(start: date, end: date, train_years: int, test_years: int) -> list[Step]:
    """The rolling train/test windows over ``[start, end]`` (module docstring).

    Raises
    ------
    GridError
        Non-positive lengths, or a period too short for one train and one test window.
    """
    if train_years < 1 or test_years < 1:
        raise GridError(f"--train {train_years} --test {test_years}: both must be >= 1 year")
    steps = []
    anchor = start
    while True:
        train_end = _years_after(anchor, train_years) - timedelta(days=1)
        test_start = train_end + timedelta(days=1)
        if test_start > end:
            break
        test_end = min(_years_after(test_start, test_years) - timedelta(days=1), end)
        steps.append(Step(anchor, train_end, test_start, test_end))
        anchor = _years_after(anchor, test_years)
    if not steps:
        raise GridError(
            f"the period {start}..{end} is shorter than one train window of {train_years} "
            f"year(s) plus a test window; lengthen the grid's period or shorten --train"
        )
    return steps


@dataclass
class WalkForward:
    """The outcome: each step's choice, the stitched out-of-sample NAV and its figures."""

    sweep_id: str
    steps: list[dict[str, Any]]
    nav: pd.Series
    metrics: dict[str, Any]
    runs: list[StudyRun]
    planned: list[PlannedPoint]

    @property
    def degradation(self) -> float | None:
        """Mean out-of-sample score minus mean in-sample score (negative: worse out of
        sample, the usual case)."""
        pairs = [
            (s["is_score"], s["oos_score"])
            for s in self.steps
            if math.isfinite(s["is_score"]) and math.isfinite(s["oos_score"])
        ]
        if not pairs:
            return None
        return float(np.mean([o for _, o in pairs]) - np.mean([i for i, _ in pairs]))


def run_walkforward(
    grid: Grid,
    train_years: int,
    test_years: int,
    store: Store,
    executor: Executor,
    base: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> WalkForward:
    """Run (or resume) a walk-forward study of ``grid`` over its first period."""
    start, end = grid.periods[0]
    steps = windows(start, end, train_years, test_years)
    configurations = grid.configurations()
    sweep_id = f"wf-{grid.digest(train_years, test_years)}"
    ensure_sweep(store, sweep_id, grid.name, "walkforward", grid.raw)

    train = plan([c.on(s.train_start, s.train_end) for s in steps for c in configurations], base)
    first = compute_points(store, sweep_id, train, executor, progress)
    scores = _scores(store, sweep_id, grid)
    chosen: list[tuple[Step, Point, float, dict[str, Any]]] = []
    for i, step in enumerate(steps):
        candidates = train[i * len(configurations) : (i + 1) * len(configurations)]
        best_score, best = -math.inf, candidates[0]
        for candidate in candidates:  # grid order: the first of equal scores wins
            score = scores.get(candidate.point_hash, (-math.inf, {}))[0]
            if score > best_score:
                best_score, best = score, candidate
        chosen.append((step, best.point, best_score, scores.get(best.point_hash, (0, {}))[1]))

    test = plan([p.on(s.test_start, s.test_end) for s, p, _, _ in chosen], base)
    second = compute_points(store, sweep_id, test, executor, progress)
    stored = load_points(store, sweep_id, with_nav=True)
    navs = {row.point_hash: row.nav for row in stored.itertuples()}
    metrics = {row.point_hash: row.metrics for row in stored.itertuples()}

    rows, pieces = [], []
    capital = float(test[0].settings.optimize.initial_capital)
    for (step, point, is_score, is_metrics), planned in zip(chosen, test, strict=True):
        oos = metrics.get(planned.point_hash, {})
        rows.append(
            {
                "train": f"{step.train_start}..{step.train_end}",
                "test": f"{step.test_start}..{step.test_end}",
                "chosen": point.label.split(" | ")[1],
                "profile": point.profile,
                "params": dict(point.params),
                "is_score": is_score,
                "oos_score": grid.objective.score(oos) if oos else -math.inf,
                "is_sharpe": is_metrics.get("sharpe"),
                "oos_sharpe": oos.get("sharpe"),
                "oos_return": oos.get("total_return"),
                "oos_max_drawdown": oos.get("max_drawdown"),
                "oos_turnover": oos.get("turnover_two_way"),
            }
        )
        nav = navs.get(planned.point_hash)
        if nav is not None and len(nav):
            start_capital = float(planned.settings.optimize.initial_capital)
            pieces.append(nav / nav.shift(1).fillna(start_capital) - 1.0)
    returns = pd.concat(pieces) if pieces else pd.Series(dtype=float)
    stitched = capital * (1.0 + returns).cumprod()
    return WalkForward(
        sweep_id, rows, stitched, _figures(stitched, capital), [first, second], train + test
    )


def _scores(store: Store, sweep_id: str, grid: Grid) -> dict[str, tuple[float, dict[str, Any]]]:
    stored = load_points(store, sweep_id)
    if stored.empty:
        return {}
    return {
        row.point_hash: (grid.objective.score(row.metrics), dict(row.metrics))
        for row in stored.itertuples()
    }


def _figures(nav: pd.Series, capital: float) -> dict[str, Any]:
    """CAGR, volatility, Sharpe and max drawdown of the stitched record."""
    if len(nav) < 2:
        return {}
    years = max((nav.index[-1] - nav.index[0]).days + 1, 1) / 365.25
    returns = np.concatenate([[nav.iloc[0] / capital - 1.0], nav.pct_change().iloc[1:]])
    final = float(nav.iloc[-1])
    return {
        "final_nav": final,
        "cagr": (final / capital) ** (1 / years) - 1 if final > 0 else -1.0,
        **ratios(returns),
        "max_drawdown": float((1 - nav / nav.cummax()).max()),
        "start": nav.index[0].date().isoformat(),
        "end": nav.index[-1].date().isoformat(),
    }
