"""Backtest use cases for the CLI, the weekly review and notebooks: run, persist, render.

These functions touch the store and the file system; the replay itself is the pure
:func:`tiller.backtest.engine.run_backtest`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from tiller.backtest.data import load_market, market_from_store
from tiller.backtest.engine import BacktestError, MarketHistory, run_backtest
from tiller.backtest.metrics import headline
from tiller.backtest.result import BacktestResult
from tiller.backtest.stress import evaluate, shocked, verdict
from tiller.portfolio.cadence import Cadence
from tiller.settings import Settings
from tiller.store.backtests import latest_stress, risk_levels, save_result, save_stress
from tiller.store.repo import Store
from tiller.store.reports import nav_history


@dataclass(frozen=True)
class SavedRun:
    """A persisted run and where its tearsheet is."""

    result: BacktestResult
    tearsheet: Path

    def summary(self) -> dict[str, Any]:
        """The run id, window, cadence, headline metrics and tearsheet path (``--json``)."""
        r = self.result
        return {
            "run_id": r.run_id,
            "label": r.label,
            "start": r.start.isoformat(),
            "end": r.end.isoformat(),
            "cadence": r.cadence,
            "metrics": r.metrics,
            "delisted": dict(r.config.get("delisted", {})),
            "no_data": list(r.config.get("no_data", [])),
            "tearsheet": str(self.tearsheet),
        }


def write_tearsheet(settings: Settings, result: BacktestResult) -> Path:
    """Render the tearsheet to ``TILLER_HOME/backtests/<run_id>.html``."""
    from tiller.reporting.tearsheet import render_tearsheet

    folder = settings.home_dir / "backtests"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.run_id}.html"
    path.write_text(render_tearsheet(result), encoding="utf-8")
    return path


def backtest(
    settings: Settings,
    start: date,
    end: date,
    *,
    cadence: Cadence | None = None,
    label: str = "backtest",
    store: Store | None = None,
    market: MarketHistory | None = None,
) -> SavedRun:
    """Replay ``[start, end]`` on the configured data sources, save the run, write its
    tearsheet."""
    market = market or load_market(settings, start, end)
    result = run_backtest(settings, market, start, end, cadence=cadence, label=label)
    store = store or Store.open(settings.db_url)
    save_result(store, result, "backtest")
    return SavedRun(result, write_tearsheet(settings, result))


def stress(
    settings: Settings, names: Sequence[str] | None = None, store: Store | None = None
) -> dict[str, Any]:
    """Run the configured stress scenarios (all, or ``names``), save the runs and the batch.

    Returns
    -------
    dict
        ``batch_id``, ``scenarios`` (one outcome each, see
        :func:`tiller.backtest.stress.evaluate`) and the ``verdict``.

    Raises
    ------
    BacktestError
        An unknown scenario name (the message lists the configured ones).
    """
    scenarios = list(settings.stress.scenarios)
    if names:
        known = {s.name for s in scenarios}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise BacktestError(
                f"unknown stress scenario {', '.join(unknown)}; configured: "
                f"{', '.join(sorted(known))} (config/backtest.yaml)"
            )
        scenarios = [s for s in scenarios if s.name in names]
    if not scenarios:
        raise BacktestError("no stress scenario configured (config/backtest.yaml, stress)")
    store = store or Store.open(settings.db_url)
    market = load_market(settings, min(s.start for s in scenarios), max(s.end for s in scenarios))
    batch_id = f"st-{uuid.uuid4().hex[:12]}"
    outcomes = []
    for scenario in scenarios:
        result = run_backtest(
            settings,
            shocked(market, scenario),
            scenario.start,
            scenario.end,
            label=f"stress {scenario.name}",
        )
        save_result(store, result, "stress")
        write_tearsheet(settings, result)
        outcomes.append(evaluate(result, scenario, settings.stress))
    save_stress(store, batch_id, outcomes)
    return {
        "batch_id": batch_id,
        "scenarios": outcomes,
        "verdict": verdict(outcomes, settings.stress),
    }


def stress_rows(store: Store) -> list[dict[str, Any]]:
    """The latest stress batch as the weekly review shows it (with the levels reached)."""
    frame = latest_stress(store)
    rows = []
    for r in frame.to_dict("records"):
        reached = sorted(v for v in risk_levels(store, r["run_id"]) if v > 0)
        rows.append(
            {
                "scenario": r["scenario"],
                "max_drawdown": float(r["max_drawdown"]),
                "limit": float(r["drawdown_limit"]),
                "passed": bool(r["passed"]),
                "l4_triggered": 4 in reached,
                "levels_reached": reached,
                "reason": r["reason"],
            }
        )
    return rows


def paper_deviation(store: Store, settings: Settings, as_of: date) -> dict[str, Any] | None:
    """Paper record vs a backtest over the same sessions, on the same stored bars.

    The backtest rebalances daily like the paper flow.  Returns the weekly review's
    ``deviation`` inputs (Sharpe, total return and max drawdown of each) plus the run id,
    or None with fewer than two paper sessions.
    """
    navs = nav_history(store, as_of)
    if len(navs) < 2:
        return None
    first = pd.Timestamp(navs["as_of"].iloc[0]).date()
    market = market_from_store(store, settings, first, as_of)
    result = run_backtest(settings, market, first, as_of, cadence="daily", label="paper compare")
    save_result(store, result, "compare")
    paper_daily = pd.DataFrame(
        {
            "nav": navs["nav"].astype(float).to_numpy(),
            "drawdown": 0.0,
            "traded": 0.0,
            "commission": 0.0,
            "slippage": 0.0,
            "level": 0,
        },
        index=[pd.Timestamp(d).date() for d in navs["as_of"]],
    )
    peak = paper_daily["nav"].cummax()
    paper_daily["drawdown"] = 1.0 - paper_daily["nav"] / peak
    paper = headline(paper_daily, pd.DataFrame(), settings.optimize.initial_capital)
    back = result.metrics
    return {
        "run_id": result.run_id,
        "paper_sharpe": paper.get("sharpe"),
        "backtest_sharpe": back.get("sharpe"),
        "paper_return": paper.get("total_return"),
        "backtest_return": back.get("total_return"),
        "paper_drawdown": paper.get("max_drawdown"),
        "backtest_drawdown": back.get("max_drawdown"),
    }
