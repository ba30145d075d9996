"""The strategy performance targets and the pre-paper gate, judged on a record (pure).

The technical design (``shared/seeds``) sets two bars a strategy must clear before paper
trading.  Its "7.1 Strategy Performance Targets" table gives each figure a target and a
minimum acceptable value; its "8.1 Pre-Paper Trading Requirements" (Gate 1, backtest
validation) asks for a 5-year backtest with Sharpe > 0.7, max drawdown < 20%, every stress
scenario passing and no Level 4 trigger in any.  The thresholds are ``gate`` settings
(``config/gate.yaml``); :func:`evaluate` judges a :class:`GateRecord` (a backtest via
:func:`record_from_backtest`, or the paper book, built by the weekly review) against them.

Figures (money in USD, the rest fractions: ``0.05`` = 5%)
--------------------------------------------------------
``r_t = NAV_t / NAV_{t-1} - 1`` are the daily returns, the first one from the initial
capital; ``years = (last session - first session + 1 day) / 365.25``.  The first four are
the backtest headline's own figures (:func:`tiller.backtest.metrics.headline`):

* ``annual_return`` (CAGR) ``= (NAV_last / initial_capital) ** (1 / years) - 1``;
* ``volatility = std(r, ddof=1) * sqrt(252)``; ``sharpe = mean(r) / std(r) * sqrt(252)``
  (risk-free rate 0);
* ``max_drawdown = max_t (1 - NAV_t / max_{s <= t} NAV_s)`` (the true peak);
* ``calmar = annual_return / max_drawdown`` (undefined without a drawdown);
* ``win_rate`` and ``profit_factor``: see below;
* ``monthly_turnover`` is one-way turnover per month: ``sum_t (traded_t / NAV_t) / 2 /
  years / 12`` with ``traded_t`` the USD bought plus sold on session ``t``, i.e. the
  headline's annual one-way turnover / 12 (the first purchase of the book counts);
* ``cost_drag`` is the costs per year over the average NAV: ``(commission + slippage) /
  years / mean_t(NAV_t)``.

Win rate and profit factor are measured on **closed trades**, as the seeds mean them: the
paper-trading plan's weekly report counts ``winning_trades`` of ``total_trades`` and
derives the profit factor from the average win and loss, the knowledge base's
``TradingMetrics`` computes ``win_rate = winning trades / trades`` and ``profit_factor =
sum(winning P&L) / sum(|losing P&L|)`` from each trade's P&L, and Tiller's paper reports
already use this basis.  A closed trade is a **sell fill** (a position reduced or closed);
its realised P&L is ``(fill price - average cost before the fill) x qty - the sell's
commission``, the average cost being the cost basis / quantity held, with the basis the
buys' notionals (commission excluded) less what earlier sells released pro rata (the
average-cost method of :mod:`tiller.execution.accounting`, the paper record's
``trade_pnls``).  ``win_rate = #(P&L > 0) / #closed trades`` (break-even is not a win);
``profit_factor = sum(P&L > 0) / |sum(P&L < 0)|``, undefined without a losing trade.
Dividends are not part of a trade's P&L.  With ``gate.win_rate_basis: daily_returns`` the
same two formulas apply to the daily returns ``r_t`` instead.

Each target row is ``target`` (the figure clears the target), ``minimum`` (it clears only
the minimum acceptable), ``fail`` or ``insufficient_data`` (the figure is undefined); all
comparisons are strict (``> 10%``, ``< 15%``), as the design writes them.  The pre-paper
rows are ``pass``, ``fail`` or ``insufficient_data``.  The verdict passes when every
pre-paper row passes and, with ``gate.require_minimums`` (the default), every target row
clears at least its minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tiller.backtest.metrics import ratios
from tiller.backtest.result import BacktestResult
from tiller.settings import GateConfig

MONTHS_PER_YEAR = 12
EPSILON = 1e-9
"""Shares: a position below this is closed."""

# name -> (label, direction: +1 higher is better / -1 lower is better, unit)
TARGET_ROWS: dict[str, tuple[str, int, str]] = {
    "annual_return": ("Annual return (CAGR)", 1, "percent"),
    "volatility": ("Annual volatility", -1, "percent"),
    "sharpe": ("Sharpe ratio", 1, "number"),
    "max_drawdown": ("Max drawdown", -1, "percent"),
    "calmar": ("Calmar ratio", 1, "number"),
    "win_rate": ("Win rate", 1, "percent"),
    "profit_factor": ("Profit factor", 1, "number"),
    "monthly_turnover": ("Monthly turnover (one-way)", -1, "percent"),
    "cost_drag": ("Annual cost drag", -1, "percent"),
}
"""The targets table's rows in the design's order."""


@dataclass(frozen=True)
class GateRecord:
    """A trading record to judge (money in USD, dates are session dates).

    Attributes
    ----------
    label:
        What the record is (``"backtest bt-..."``, ``"paper"``).
    nav:
        End-of-day NAV per session, ascending.
    initial_capital:
        USD before the first session (the base of the first return and of the CAGR).
    traded:
        USD bought plus sold per session (missing sessions count as 0).
    costs:
        Commission plus slippage over the whole record.
    trade_pnls:
        Realised P&L of each closed trade (see the module docstring).
    levels:
        Risk level 0-4 per session (empty when unknown).
    """

    label: str
    nav: pd.Series
    initial_capital: float
    traded: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    costs: float = 0.0
    trade_pnls: tuple[float, ...] = ()
    levels: pd.Series = field(default_factory=lambda: pd.Series(dtype=int))


def closed_trade_pnls(trades: pd.DataFrame) -> list[float]:
    """Realised P&L (USD) of each sell fill, at average cost (module docstring).

    Parameters
    ----------
    trades : pd.DataFrame
        Fills in the order they happened, with ``symbol``, ``side`` (``buy``/``sell``),
        ``qty`` (> 0), ``price`` (USD, slippage included) and ``commission`` (USD); a
        ``date`` column, when present, orders them (stable within a date).

    Returns
    -------
    list of float
        One P&L per sell fill of a held position, in fill order.
    """
    if trades.empty:
        return []
    frame = trades.sort_values("date", kind="stable") if "date" in trades else trades
    held: dict[str, tuple[float, float]] = {}  # symbol -> (qty, cost basis USD)
    pnls: list[float] = []
    for symbol, side, qty, price, commission in zip(
        frame["symbol"],
        frame["side"],
        frame["qty"].astype(float),
        frame["price"].astype(float),
        frame["commission"].astype(float),
        strict=True,
    ):
        quantity, basis = held.get(symbol, (0.0, 0.0))
        if side == "buy":
            held[symbol] = (quantity + qty, basis + qty * price)
            continue
        if quantity <= EPSILON:
            continue  # nothing held: not a closed trade (never happens in a long-only book)
        sold = min(qty, quantity)
        released = basis * sold / quantity
        pnls.append(sold * price - released - commission)
        remaining = quantity - sold
        held[symbol] = (remaining, basis - released) if remaining > EPSILON else (0.0, 0.0)
    return pnls


def record_from_backtest(result: BacktestResult) -> GateRecord:
    """The gate's view of a backtest: its daily NAV, traded notional, costs, fills and
    risk levels."""
    daily = result.daily
    costs = float(daily["commission"].sum() + daily["slippage"].sum()) if len(daily) else 0.0
    return GateRecord(
        label=f"{result.label} {result.run_id}",
        nav=daily["nav"].astype(float),
        initial_capital=float(result.initial_capital),
        traded=daily["traded"].astype(float),
        costs=costs,
        trade_pnls=tuple(closed_trade_pnls(result.trades)),
        levels=daily["level"].astype(int),
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def win_rate(values: Sequence[float]) -> float | None:
    """Fraction of values > 0 (break-even is not a win); None when there are none."""
    return sum(1 for v in values if v > 0) / len(values) if len(values) else None


def profit_factor(values: Sequence[float]) -> float | None:
    """Sum of the positive values / |sum of the negative values|; None without a negative."""
    loss = -math.fsum(v for v in values if v < 0)
    return math.fsum(v for v in values if v > 0) / loss if loss > 0 else None


def _dated(series: pd.Series) -> pd.Series:
    out = pd.Series(series, dtype=float).copy()
    out.index = pd.to_datetime(out.index)
    return out.sort_index()


def figures(record: GateRecord, basis: str = "closed_trades") -> dict[str, Any]:
    """The targets table's figures of ``record`` (module docstring), plus the span.

    Returns
    -------
    dict
        ``annual_return, volatility, sharpe, max_drawdown, calmar, win_rate, profit_factor,
        monthly_turnover, cost_drag`` (None when undefined), ``closed_trades`` (count),
        ``sessions``, ``years``, ``start``, ``end`` (dates or None), ``final_nav``,
        ``costs``, ``max_level`` (int or None).
    """
    nav = _dated(record.nav)
    nav = nav[np.isfinite(nav.to_numpy())]
    empty: dict[str, Any] = dict.fromkeys(TARGET_ROWS)
    if nav.empty:
        return {
            **empty,
            "closed_trades": len(record.trade_pnls),
            "sessions": 0,
            "years": 0.0,
            "start": None,
            "end": None,
            "final_nav": None,
            "costs": record.costs,
            "max_level": None,
        }
    first, last = nav.index[0], nav.index[-1]
    years = max((last - first).days + 1, 1) / 365.25
    values = nav.to_numpy(dtype=float)
    path = np.concatenate([[record.initial_capital], values])
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = path[1:] / path[:-1] - 1.0
    final = float(values[-1])
    cagr = (final / record.initial_capital) ** (1.0 / years) - 1.0 if final > 0 else -1.0
    stats = ratios(returns)
    drawdown = float((1.0 - values / np.maximum.accumulate(values)).max())
    traded = _dated(record.traded).groupby(level=0).sum().reindex(nav.index, fill_value=0.0)
    share = (traded / nav.where(nav > 0)).fillna(0.0)
    one_way_per_year = float(share.sum()) / 2.0 / years
    mean_nav = float(values.mean())
    if basis == "daily_returns":
        sample: Sequence[float] = [float(r) for r in returns if math.isfinite(r)]
    else:
        sample = [float(p) for p in record.trade_pnls if math.isfinite(p)]
    levels = pd.Series(record.levels).dropna()
    return {
        "annual_return": _finite(cagr),
        "volatility": stats["volatility"],
        "sharpe": stats["sharpe"],
        "max_drawdown": drawdown,
        "calmar": _finite(cagr / drawdown) if drawdown > 0 else None,
        "win_rate": win_rate(sample),
        "profit_factor": profit_factor(sample),
        "monthly_turnover": one_way_per_year / MONTHS_PER_YEAR,
        "cost_drag": record.costs / years / mean_nav if mean_nav > 0 else None,
        "closed_trades": len(record.trade_pnls),
        "sessions": len(nav),
        "years": years,
        "start": first.date(),
        "end": last.date(),
        "final_nav": final,
        "costs": record.costs,
        "max_level": int(levels.max()) if len(levels) else None,
    }


def _better(value: float, bound: float, direction: int) -> bool:
    """Strictly beyond ``bound`` on the good side (``>`` when higher is better)."""
    return value > bound if direction > 0 else value < bound


def target_status(value: float | None, target: float, minimum: float, direction: int) -> str:
    """``target``, ``minimum``, ``fail``, or ``insufficient_data`` when ``value`` is None."""
    if value is None:
        return "insufficient_data"
    if _better(value, target, direction):
        return "target"
    return "minimum" if _better(value, minimum, direction) else "fail"


def _row(
    name: str, label: str, value: Any, threshold: Any, rule: str, passed: bool | None, unit: str
) -> dict[str, Any]:
    status = "insufficient_data" if passed is None else ("pass" if passed else "fail")
    return {
        "name": name,
        "label": label,
        "value": value,
        "threshold": threshold,
        "rule": rule,
        "unit": unit,
        "status": status,
        "passed": bool(passed),
        "detail": "",
    }


def _stress_row(stress: Sequence[dict[str, Any]], scenarios: Sequence[str]) -> dict[str, Any]:
    """The "every stress scenario passes" row: every configured scenario is in the batch
    and passed its limit."""
    ran = {str(r["scenario"]): r for r in stress}
    label = "Every stress scenario passes"
    expected = list(scenarios) or sorted(ran)
    if not ran:
        row = _row("stress", label, None, expected, "all", None, "text")
        row["detail"] = "no stress batch: run `tiller stress` (or `tiller gate --run-stress`)"
        return row
    failed = [name for name, r in ran.items() if not r["passed"]]
    missing = [s for s in scenarios if s not in ran]
    passed = len(ran) - len(failed)
    row = _row(
        "stress",
        label,
        f"{passed} of {len(ran)} passed",
        expected,
        "all",
        not failed and not missing,
        "text",
    )
    problems = [f"{name}: {ran[name].get('reason') or 'failed'}" for name in failed]
    problems += [f"{name}: not in the batch" for name in missing]
    row["detail"] = "; ".join(problems)
    return row


def _l4_row(record_l4: bool, stress: Sequence[dict[str, Any]], allow_l4: bool) -> dict[str, Any]:
    """The "no L4 in any" row: neither the record nor a stress scenario reached L4."""
    reached = ["the record"] if record_l4 else []
    reached += [
        str(r["scenario"])
        for r in stress
        if r.get("l4_triggered") or 4 in (r.get("levels_reached") or [])
    ]
    passed: bool | None = not reached
    if allow_l4:
        passed = True
    elif not reached and not stress:
        passed = None  # the stress side is unknown
    row = _row(
        "no_l4", "No L4 in the record or any stress scenario", reached, [], "none", passed, "list"
    )
    if reached:
        row["detail"] = "L4 reached in " + ", ".join(reached) + (" (allowed)" if allow_l4 else "")
    elif not stress:
        row["detail"] = "no stress batch to check"
    return row


def evaluate(
    record: GateRecord,
    config: GateConfig,
    stress: Sequence[dict[str, Any]] = (),
    scenarios: Sequence[str] = (),
) -> dict[str, Any]:
    """Judge ``record`` against the targets and the pre-paper gate.

    Parameters
    ----------
    record : GateRecord
        The backtest or paper record.
    config : GateConfig
        Thresholds (``config/gate.yaml``).
    stress : sequence of dict
        The stress batch to judge (:func:`tiller.backtest.service.stress_rows`): each
        ``scenario``, ``max_drawdown``, ``limit``, ``passed``, ``l4_triggered``,
        ``levels_reached``, ``reason``; empty when none ran.
    scenarios : sequence of str
        The configured scenario names, each of which must be in the batch.

    Returns
    -------
    dict
        ``record`` (label and span), ``figures`` (:func:`figures`), ``targets`` (one row
        per target: ``name, label, value, target, minimum, rule, unit, status, passed``),
        ``pre_paper`` (``name, label, value, threshold, rule, unit, status, passed,
        detail``), ``stress`` (the batch's scenarios) and ``verdict`` (``passed``,
        ``verdict`` "PASS"/"FAIL", ``reasons``).
    """
    figs = figures(record, config.win_rate_basis)
    targets = []
    for name, (label, direction, unit) in TARGET_ROWS.items():
        threshold = getattr(config.targets, name)
        status = target_status(figs[name], threshold.target, threshold.minimum, direction)
        targets.append(
            {
                "name": name,
                "label": label,
                "value": figs[name],
                "target": threshold.target,
                "minimum": threshold.minimum,
                "rule": ">" if direction > 0 else "<",
                "unit": unit,
                "status": status,
                "passed": status in ("target", "minimum"),
            }
        )
    gate = config.pre_paper
    sharpe, drawdown = figs["sharpe"], figs["max_drawdown"]
    record_l4 = figs["max_level"] is not None and figs["max_level"] >= 4
    pre_paper = [
        _row(
            "years",
            f"{gate.years}-year record",
            figs["years"],
            gate.min_years,
            ">=",
            figs["years"] >= gate.min_years,
            "years",
        ),
        _row(
            "sharpe",
            "Sharpe ratio",
            sharpe,
            gate.min_sharpe,
            ">",
            None if sharpe is None else sharpe > gate.min_sharpe,
            "number",
        ),
        _row(
            "max_drawdown",
            "Max drawdown",
            drawdown,
            gate.max_drawdown,
            "<",
            None if drawdown is None else drawdown < gate.max_drawdown,
            "percent",
        ),
        _stress_row(stress, scenarios),
        _l4_row(record_l4, stress, gate.allow_l4),
    ]
    reasons = []
    for row in pre_paper:
        if row["passed"]:
            continue
        if row["status"] == "insufficient_data":
            why = f"{row['label']}: not known"
        else:
            figure = format_value(row["value"], row["unit"])
            why = f"{row['label']}: {figure}, needs {format_threshold(row)}"
        reasons.append(why + (f" ({row['detail']})" if row["detail"] else ""))
    if config.require_minimums:
        for row in targets:
            if not row["passed"]:
                reasons.append(
                    f"{row['label']}: {format_value(row['value'], row['unit'])}, minimum "
                    f"acceptable {format_threshold(row, 'minimum')}"
                )
    return {
        "record": {
            "label": record.label,
            "start": figs["start"],
            "end": figs["end"],
            "sessions": figs["sessions"],
            "years": figs["years"],
        },
        "figures": figs,
        "win_rate_basis": config.win_rate_basis,
        "targets": targets,
        "pre_paper": pre_paper,
        "stress": [dict(r) for r in stress],
        "verdict": {
            "passed": not reasons,
            "verdict": "PASS" if not reasons else "FAIL",
            "reasons": reasons,
        },
        "config": config.model_dump(),
    }


# --------------------------------------------------------------------------- text


def format_value(value: Any, unit: str) -> str:
    """A figure as the tables show it: ``percent`` -> ``12.34%``, ``number`` -> ``1.23``,
    ``years`` -> ``4.99 years``; None -> ``n/a``."""
    if value is None:
        return "n/a"
    if unit == "percent":
        return f"{value:.2%}"
    if unit == "number":
        return f"{value:.2f}"
    if unit == "years":
        return f"{value:.2f} years"
    if unit == "list":
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _short_percent(value: float) -> str:
    """``0.07`` -> ``7%``, ``0.015`` -> ``1.5%``."""
    return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"


def format_threshold(row: dict[str, Any], key: str = "threshold") -> str:
    """``> 10%``, ``< 0.7``, ``>= 4.95 years``, ``all of a, b``, ``none``."""
    value, unit = row[key], row["unit"]
    if unit == "percent":
        return f"{row['rule']} {_short_percent(value)}"
    if unit == "number":
        return f"{row['rule']} {value:g}"
    if unit == "years":
        return f"{row['rule']} {value:g} years"
    if row["rule"] == "all":
        return f"all {len(value)} configured" if value else "all configured"
    return str(row["rule"])


def print_report(report: dict[str, Any], header: str) -> None:
    """Print the evaluation as two rich tables and the verdict (``tiller gate``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    style = {"target": "green", "minimum": "yellow", "pass": "green", "fail": "bold red"}
    console.print(header, markup=False)
    targets = Table(title="Performance targets (design 7.1)", title_justify="left")
    for column in ("Metric", "Figure", "Target", "Minimum", "Result"):
        targets.add_column(column, justify="left" if column == "Metric" else "right")
    for row in report["targets"]:
        status = row["status"]
        targets.add_row(
            row["label"],
            format_value(row["value"], row["unit"]),
            format_threshold(row, "target"),
            format_threshold(row, "minimum"),
            f"[{style.get(status, 'yellow')}]{_status_word(status)}[/]",
        )
    console.print(targets)
    basis = report["win_rate_basis"].replace("_", " ")
    console.print(
        f"Win rate and profit factor on {basis} ({report['figures']['closed_trades']} closed "
        "trades); monthly turnover one-way; cost drag = costs / average NAV per year."
    )
    gate = Table(title="Pre-paper gate (design 8.1)", title_justify="left")
    for column in ("Criterion", "Figure", "Rule", "Result", "Detail"):
        gate.add_column(column, justify="right" if column in ("Figure", "Rule") else "left")
    for row in report["pre_paper"]:
        status = row["status"]
        gate.add_row(
            row["label"],
            format_value(row["value"], row["unit"]),
            format_threshold(row),
            f"[{style.get(status, 'yellow')}]{_status_word(status)}[/]",
            row["detail"],
        )
    console.print(gate)
    if report["stress"]:
        stress = Table(title="Stress batch", title_justify="left")
        for column in ("Scenario", "Max drawdown", "Limit", "Worst level", "Result"):
            stress.add_column(column, justify="left" if column == "Scenario" else "right")
        for r in report["stress"]:
            levels = r.get("levels_reached") or [0]
            stress.add_row(
                str(r["scenario"]),
                f"{r['max_drawdown']:.2%}",
                f"{r['limit']:.0%}",
                f"L{max(levels)}",
                "[green]pass[/]" if r["passed"] else "[bold red]FAIL[/]",
            )
        console.print(stress)
    verdict = report["verdict"]
    colour = "green" if verdict["passed"] else "bold red"
    console.print(f"Verdict: [{colour}]{verdict['verdict']}[/]")
    for reason in verdict["reasons"]:
        console.print(f"  - {reason}", markup=False)


def _status_word(status: str) -> str:
    return {
        "target": "target met",
        "minimum": "minimum met",
        "fail": "FAIL",
        "pass": "pass",
        "insufficient_data": "n/a",
    }.get(status, status)
