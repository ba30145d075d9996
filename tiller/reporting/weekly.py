"""The weekly review document (schema ``1.0``, documented in ``reports/SCHEMA.md``).

Week figures use the week's NAV points (the last NAV before the week is used as
the base when the history has one) and the week's closed-trade P&L; the
GO/NO-GO gates use the whole paper-trading history.  Every gate reports its
``value``, ``threshold`` and a ``status`` of ``"pass"``, ``"fail"`` or
``"insufficient_data"``; the verdict is ``"GO"`` only when every gate passes.

The ``performance_gate`` section judges the same paper record against the technical
design's strategy performance targets and pre-paper gate
(:func:`tiller.backtest.gate.evaluate`); it is information next to the GO/NO-GO gates and
does not change their verdict.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tiller.backtest.gate import GateRecord, evaluate
from tiller.reporting import metrics
from tiller.reporting.daily import SCHEMA_VERSION, series_points, to_jsonable
from tiller.settings import GateConfig

NO_STRESS = "No stress test has been run yet."
NO_BACKTEST = "No backtest to compare yet."


@dataclass(frozen=True)
class Gates:
    """GO/NO-GO thresholds for moving from paper to live trading (fractions, not percent)."""

    min_trading_days: int = 63
    min_sharpe: float = 0.5
    """Sharpe must be strictly greater."""
    max_drawdown: float = 0.15
    """Max drawdown must be strictly less."""
    min_win_rate: float = 0.35
    min_uptime: float = 0.99
    min_fill_rate: float = 0.95
    require_all_levels: bool = True
    """Every risk level L1..L4 exercised at least once in paper trading or stress tests."""
    max_sharpe_deviation: float = 0.3
    """Paper-vs-backtest Sharpe difference above which the deviation is flagged."""
    max_point_deviation: float = 0.05
    """Paper-vs-backtest drawdown or return difference (fraction) flagged above this."""


@dataclass(frozen=True)
class WeeklyReportInputs:
    """Everything the weekly review needs (money USD, weights and rates fractions)."""

    week_start: dt.date
    week_end: dt.date
    nav_history: pd.Series
    """date -> NAV (USD) over the whole paper-trading history (the week is sliced out)."""
    week_trade_pnls: tuple[float, ...] = ()
    """Realised P&L (USD) of each trade closed this week."""
    all_trade_pnls: tuple[float, ...] = ()
    """Realised P&L (USD) of each trade closed since paper trading began (win-rate gate)."""
    week_trades_count: int = 0
    """Orders placed this week."""
    weights: dict[str, float] = field(default_factory=dict)
    """symbol -> actual weight at week end."""
    targets: dict[str, float] = field(default_factory=dict)
    """symbol -> target weight at week end."""
    risk_history: pd.Series = field(default_factory=lambda: pd.Series(dtype=int))
    """date -> risk level int 0..4 over the whole paper-trading history."""
    asset_returns: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Daily returns, one column per symbol (for the correlation matrix)."""
    stress_results: list[dict[str, Any]] = field(default_factory=list)
    """Rows with ``scenario, max_drawdown, limit, passed, l4_triggered, levels_reached``."""
    deviation: dict[str, Any] | None = None
    """``paper_sharpe, backtest_sharpe, paper_return, backtest_return, paper_drawdown,
    backtest_drawdown``; None when no backtest exists."""
    uptime: float | None = None
    """Fraction of scheduled runs that completed; None when not measured."""
    fill_rate: float | None = None
    """Fraction of submitted orders that filled; None when no order was submitted."""
    gates: Gates = field(default_factory=Gates)
    performance: GateRecord | None = None
    """The paper record for the performance targets and the pre-paper gate; None: the
    section says it was not evaluated."""
    trading: pd.DataFrame = field(default_factory=pd.DataFrame)
    """:func:`tiller.reporting.metrics.monthly_trading` of the paper record (turnover and
    costs per month); empty: none yet."""
    gate_config: GateConfig = field(default_factory=GateConfig)
    stress_scenarios: tuple[str, ...] = ()
    """The configured stress scenario names (each must be in the stress batch)."""


def _week_nav(nav: pd.Series, start: dt.date, end: dt.date) -> pd.Series:
    """The week's NAV points plus the last point before the week (the base), when present."""
    dates = pd.to_datetime(pd.Index(nav.index)).date
    inside = (dates >= start) & (dates <= end)
    before = np.flatnonzero(dates < start)
    mask = inside.copy()
    if len(before):
        mask[before[-1]] = True
    return nav[mask]


def _summary(inputs: WeeklyReportInputs, week_nav: pd.Series) -> dict[str, Any]:
    returns = metrics.returns_from_nav(week_nav)
    daily_pnl = week_nav.diff().iloc[1:]
    pnls = inputs.week_trade_pnls
    notes: list[str] = []
    if not pnls:
        notes.append("No trades closed this week: win rate, averages and profit factor are n/a.")
    if inputs.week_trades_count == 0:
        notes.append("No orders were placed this week.")
    sharpe = metrics.annualised(returns)["sharpe"]
    if sharpe is None:
        notes.append(
            f"Sharpe n/a: a week has {len(returns)} daily returns, fewer than the "
            f"{metrics.MIN_ANNUALISED_SESSIONS} an annualised figure needs (the paper "
            "record's Sharpe is in the GO/NO-GO gates)."
        )
    return {
        "pnl": float(week_nav.iloc[-1] - week_nav.iloc[0]) if len(week_nav) >= 2 else None,
        "return": float(week_nav.iloc[-1] / week_nav.iloc[0] - 1) if len(week_nav) >= 2 else None,
        "nav_end": float(week_nav.iloc[-1]) if len(week_nav) else None,
        "trades_count": inputs.week_trades_count,
        "closed_trades": len(pnls),
        "win_rate": metrics.win_rate(pnls),
        "average_win": metrics.average_win(pnls),
        "average_loss": metrics.average_loss(pnls),
        "profit_factor": metrics.profit_factor(pnls),
        "sharpe": sharpe,
        "max_drawdown": metrics.max_drawdown(returns),
        "best_day": metrics.best_day(daily_pnl),
        "worst_day": metrics.worst_day(daily_pnl),
        "best_worst_basis": "daily NAV change (USD)",
        "notes": notes,
    }


def _gate(name: str, value: Any, threshold: Any, rule: str, passed: bool | None) -> dict[str, Any]:
    status = "insufficient_data" if passed is None else ("pass" if passed else "fail")
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "rule": rule,
        "status": status,
        "missing": [],
    }


def _levels_exercised(inputs: WeeklyReportInputs) -> list[int]:
    seen = {int(v) for v in inputs.risk_history.dropna().tolist()}
    for row in inputs.stress_results:
        seen.update(int(v) for v in row.get("levels_reached") or [])
    return sorted(seen)


def _gates(inputs: WeeklyReportInputs) -> dict[str, Any]:
    g = inputs.gates
    nav = pd.Series(inputs.nav_history, dtype=float).sort_index()
    returns = metrics.returns_from_nav(nav)
    sharpe = metrics.sharpe(returns)
    mdd = metrics.max_drawdown(returns)
    win = metrics.win_rate(inputs.all_trade_pnls)
    levels = _levels_exercised(inputs)
    missing = [f"L{k}" for k in range(1, 5) if k not in levels]
    gates = [
        _gate("trading_days", len(nav), g.min_trading_days, ">=", len(nav) >= g.min_trading_days),
        _gate(
            "sharpe", sharpe, g.min_sharpe, ">", None if sharpe is None else sharpe > g.min_sharpe
        ),
        _gate(
            "max_drawdown", mdd, g.max_drawdown, "<", None if mdd is None else mdd < g.max_drawdown
        ),
        _gate(
            "win_rate", win, g.min_win_rate, ">=", None if win is None else win >= g.min_win_rate
        ),
        _gate(
            "uptime",
            inputs.uptime,
            g.min_uptime,
            ">=",
            None if inputs.uptime is None else inputs.uptime >= g.min_uptime,
        ),
        _gate(
            "fill_rate",
            inputs.fill_rate,
            g.min_fill_rate,
            ">=",
            None if inputs.fill_rate is None else inputs.fill_rate >= g.min_fill_rate,
        ),
    ]
    if g.require_all_levels:
        levels_gate = _gate(
            "risk_levels_exercised",
            [f"L{k}" for k in levels if k > 0],
            ["L1", "L2", "L3", "L4"],
            "all",
            not missing,
        )
        levels_gate["missing"] = missing
        gates.append(levels_gate)
    verdict = "GO" if all(x["status"] == "pass" for x in gates) else "NO-GO"
    return {"verdict": verdict, "gates": gates, "thresholds": asdict(g)}


def _targets_vs_actual(inputs: WeeklyReportInputs) -> dict[str, Any]:
    symbols = sorted(set(inputs.weights) | set(inputs.targets))
    rows = []
    for s in symbols:
        actual = float(inputs.weights.get(s, 0.0))
        target = float(inputs.targets.get(s, 0.0))
        rows.append({"symbol": s, "actual": actual, "target": target, "deviation": actual - target})
    notes = [] if rows else ["No positions and no targets this week."]
    return {"rows": rows, "notes": notes}


def _correlation(inputs: WeeklyReportInputs) -> dict[str, Any]:
    frame = inputs.asset_returns
    if frame.empty or frame.shape[1] < 2 or len(frame.dropna(how="all")) < 3:
        return {"symbols": [], "matrix": {}, "notes": ["Not enough history yet for correlations."]}
    corr = frame.astype(float).corr()
    symbols = [str(c) for c in corr.columns]
    matrix = {str(r): {str(c): corr.loc[r, c] for c in corr.columns} for r in corr.index}
    rows = frame.dropna(how="all")
    window = {
        "sessions": len(rows),
        "start": str(pd.Timestamp(rows.index[0]).date()),
        "end": str(pd.Timestamp(rows.index[-1]).date()),
    }
    return {"symbols": symbols, "matrix": matrix, "window": window, "notes": []}


def _stress(inputs: WeeklyReportInputs) -> dict[str, Any]:
    rows = list(inputs.stress_results)
    return {"results": rows, "notes": [] if rows else [NO_STRESS]}


def _deviation(inputs: WeeklyReportInputs) -> dict[str, Any]:
    d = inputs.deviation
    if d is None:
        return {"available": False, "notes": [NO_BACKTEST]}
    g = inputs.gates
    out: dict[str, Any] = {"available": True, "notes": []}
    for key, limit in (
        ("sharpe", g.max_sharpe_deviation),
        ("return", g.max_point_deviation),
        ("drawdown", g.max_point_deviation),
    ):
        paper, back = d.get(f"paper_{key}"), d.get(f"backtest_{key}")
        diff = None if paper is None or back is None else float(paper) - float(back)
        out[key] = {
            "paper": paper,
            "backtest": back,
            "difference": diff,
            "limit": limit,
            "flagged": None if diff is None else abs(diff) > limit,
        }
    return out


def _performance_gate(inputs: WeeklyReportInputs) -> dict[str, Any]:
    if inputs.performance is None:
        return {"available": False, "notes": ["The performance gate was not evaluated."]}
    report = evaluate(
        inputs.performance, inputs.gate_config, inputs.stress_results, inputs.stress_scenarios
    )
    notes = [
        "The paper record against the strategy performance targets and the pre-paper gate "
        "(the technical design's 7.1 and 8.1); information only, the GO/NO-GO verdict above "
        "is separate.",
        "Cost drag counts commissions: the paper fills' slippage is inside their prices.",
    ]
    if report["record"]["sessions"] == 0:
        notes.append("No NAV recorded yet: every figure is n/a.")
    return {"available": True, **report, "notes": notes}


def build_weekly_report(inputs: WeeklyReportInputs) -> dict[str, Any]:
    """The weekly review as a JSON-serialisable dict (schema ``1.0``, see ``reports/SCHEMA.md``)."""
    nav = pd.Series(inputs.nav_history, dtype=float).sort_index()
    nav = nav[np.isfinite(nav.to_numpy())]
    week_nav = _week_nav(nav, inputs.week_start, inputs.week_end)
    report = {
        "schema_version": SCHEMA_VERSION,
        "kind": "weekly",
        "week_start": inputs.week_start,
        "week_end": inputs.week_end,
        "summary": _summary(inputs, week_nav),
        "targets_vs_actual": _targets_vs_actual(inputs),
        "go_no_go": _gates(inputs),
        "correlation": _correlation(inputs),
        "stress_tests": _stress(inputs),
        "deviation": _deviation(inputs),
        "performance_gate": _performance_gate(inputs),
        "trading": metrics.trading_section(inputs.trading),
        "series": {"daily_pnl": series_points(week_nav.diff().iloc[1:], "pnl")},
    }
    out: dict[str, Any] = to_jsonable(report)
    return out
