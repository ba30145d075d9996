"""The daily report document (schema ``1.0``, documented in ``reports/SCHEMA.md``).

:func:`build_daily_report` turns a :class:`DailyReportInputs` (plain values the
flow has already gathered) into a JSON-serialisable dict: dates as ISO strings,
undefined numbers as ``None`` (never NaN), and a ``notes`` list in each section
that explains, in words, whatever is missing (first-ever run, empty portfolio,
no trades, ...).

Annualised figures (Sharpe, Sortino, CAGR, volatility) are those of
:func:`tiller.reporting.metrics.annualised`, the functions the weekly review uses, and
stay ``None`` ("n/a: fewer than 60 sessions") until the record has
:data:`~tiller.reporting.metrics.MIN_ANNUALISED_SESSIONS` daily returns.  Every signal
that was not executed carries a reason.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tiller.reporting import metrics

SCHEMA_VERSION = "1.0"

DEFAULT_THRESHOLDS: dict[str, float] = {"L1": 0.05, "L2": 0.08, "L3": 0.12, "L4": 0.15}
"""Drawdown (fraction) at which each risk level starts (the ladder's defaults)."""


def to_jsonable(value: Any) -> Any:
    """Recursively convert ``value`` to JSON-safe Python: NaN/inf -> None, dates -> ISO."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        out = float(value)
        return out if math.isfinite(out) else None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.date().isoformat()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | pd.Index | np.ndarray):
        return [to_jsonable(v) for v in value]
    if isinstance(value, pd.Series):
        return [to_jsonable(v) for v in value.tolist()]
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _date_key(value: Any) -> str:
    out = to_jsonable(value)
    return out if isinstance(out, str) else str(value)


def series_points(series: pd.Series, name: str) -> list[dict[str, Any]]:
    """``[{"date": ISO, name: value}, ...]`` in date order."""
    if series is None or len(series) == 0:
        return []
    ordered = series.sort_index()
    return [{"date": _date_key(k), name: to_jsonable(v)} for k, v in ordered.items()]


@dataclass(frozen=True)
class DailyReportInputs:
    """Everything the daily report needs, for one ``as_of`` trading date.

    Money is USD, weights and drawdowns are fractions (0.05 = 5%).
    """

    as_of: dt.date
    nav_history: pd.Series
    """date -> NAV (USD), including ``as_of``; one point on a first-ever run."""
    cash: float
    positions: list[dict[str, Any]] = field(default_factory=list)
    """Rows with ``symbol, qty, price, value, weight``."""
    targets: dict[str, float] = field(default_factory=dict)
    """symbol -> target weight."""
    trades: list[dict[str, Any]] = field(default_factory=list)
    """Orders: ``symbol, side, qty, status, fill_price, client_order_id``."""
    fills: list[dict[str, Any]] = field(default_factory=list)
    """Fills: ``symbol, side, qty, price, commission``."""
    risk: dict[str, Any] = field(default_factory=dict)
    """``level ('L0'..'L4'), drawdown, peak_nav, distance_to_next, kill_switch, actions,
    thresholds {L1: 0.05, ...}``."""
    risk_history: pd.Series = field(default_factory=lambda: pd.Series(dtype=int))
    """date -> risk level as int 0..4."""
    signals: list[dict[str, Any]] = field(default_factory=list)
    """``symbol, signal, confidence, reason, executed (bool), rejection_reason (str | None)``."""
    data_quality: dict[str, Any] = field(default_factory=dict)
    """``status, blocking, warnings, findings (list)``."""
    health: dict[str, Any] = field(default_factory=dict)
    """``stage_timings {stage: ms}`` (or ``stage_timings_ms``), ``retries``,
    ``errors (list)``, ``notification_failures (list)``."""
    trade_pnls: tuple[float, ...] = ()
    """Realised P&L (USD) of each trade closed since paper trading began (for the win rate);
    empty when no trade has closed yet."""
    trading: pd.DataFrame = field(default_factory=pd.DataFrame)
    """:func:`tiller.reporting.metrics.monthly_trading` of the paper record up to
    ``as_of`` (turnover and costs per month); empty: none yet."""
    regime: dict[str, Any] = field(default_factory=dict)
    """``regime`` (NORMAL | ELEVATED | HIGH_VOL | EXTREME), ``vix`` (the close it came from),
    ``vix_date``, ``reason``, ``effect`` (what it changes, in words) and ``thresholds``
    ({ELEVATED: 20, HIGH_VOL: 30, EXTREME: 40}); empty when no regime was recorded."""


NOT_EXECUTED = "not executed; no reason was recorded"
"""The rejection reason of a signal that was not executed when its inputs give none."""

_BUYS = ("BUY", "STRONG_BUY")
_SELLS = ("SELL", "STRONG_SELL")


def why_not_executed(
    signal: str,
    long_eligible: bool | None,
    held_weight: float | None,
    target: float | None,
    skipped: str | None = None,
    hold: str | None = None,
) -> str:
    """Why a signal led to no order, from what the day decided.

    Parameters
    ----------
    signal:
        ``BUY``, ``STRONG_BUY``, ``HOLD``, ``SELL`` or ``STRONG_SELL``.
    long_eligible:
        The cross-sectional rule's verdict (None: unknown).
    held_weight:
        Weight of the position at the close (fraction of NAV); None or 0 when not held.
    target:
        The optimiser's target weight; None or 0 when it gave none.
    skipped:
        Why the optimiser left the trade out (``turnover``, ``max trades``, ...), if it did.
    hold:
        Why the day kept its last targets (a day off the cadence), if it did.

    The checks that refuse an order outright (pre-trade rejections, failed orders, the
    risk stage's buy blocks) are the caller's: they come first.
    """
    kind = str(signal).upper()
    weight = float(held_weight or 0.0)
    goal = float(target or 0.0)
    held = weight > 0
    if skipped:
        return f"{kind}: the optimiser left the trade out ({skipped})"
    if kind in _SELLS and not held:
        return f"{kind}: nothing to sell, no position is held (Tiller never sells short)"
    if hold:
        return f"{kind}: {hold}"
    if kind in _SELLS:
        return (
            f"{kind}: still held at {weight:.1%} of NAV against a target of {goal:.1%}; the "
            "sell is under one lot or inside the no-trade band"
        )
    if kind in _BUYS:
        if long_eligible is False:
            return (
                f"{kind} but not long-eligible (12-1 momentum rank and SMA200, see the signal's "
                "reason): not bought"
            )
        if goal <= 0:
            return f"{kind} but the optimiser gave it no target weight: not bought"
        if held:
            return (
                f"{kind}: already held at {weight:.1%} of NAV against a target of {goal:.1%}; "
                "the difference is under one lot or inside the no-trade band"
            )
        return f"{kind}: target {goal:.1%} but the buy is under one lot at today's price"
    if held:
        return f"{kind}: the position is kept at {weight:.1%} of NAV; no trade needed"
    return f"{kind}: no position and no buy signal, nothing to trade"


def _summary(inputs: DailyReportInputs, nav: pd.Series) -> dict[str, Any]:
    returns = metrics.returns_from_nav(nav)
    notes: list[str] = []
    nav_now = float(nav.iloc[-1]) if len(nav) else None
    daily_pnl = float(nav.iloc[-1] - nav.iloc[-2]) if len(nav) >= 2 else None
    daily_return = float(returns.iloc[-1]) if len(returns) else None
    cumulative_pnl = float(nav.iloc[-1] - nav.iloc[0]) if len(nav) >= 2 else None
    cumulative_return = float(nav.iloc[-1] / nav.iloc[0] - 1) if len(nav) >= 2 else None
    if len(nav) < 2:
        notes.append(
            "First run: no earlier NAV, so daily and cumulative P&L are not available yet."
        )
    minimum = metrics.MIN_ANNUALISED_SESSIONS
    sessions = len(metrics.clean_returns(returns))
    enough = sessions >= minimum
    if not enough:
        notes.append(
            f"Sharpe, Sortino, CAGR and volatility are annualised: they are shown from "
            f"{minimum} sessions of returns ({sessions} so far)."
        )
    filled = [t for t in inputs.trades if str(t.get("status", "")).lower() == "filled"]
    if not inputs.trades:
        notes.append("No trades today.")
    if not inputs.trade_pnls:
        notes.append("No closed trades yet, so the win rate is not available.")
    annual = metrics.annualised(returns, minimum)
    if enough and annual["sharpe"] is None:
        notes.append("Returns have zero variance, so Sharpe is undefined.")
    return {
        "nav": nav_now,
        "cash": inputs.cash,
        "daily_pnl": daily_pnl,
        "daily_return": daily_return,
        "cumulative_pnl": cumulative_pnl,
        "cumulative_return": cumulative_return,
        "trades_count": len(inputs.trades),
        "filled_count": len(filled),
        "fills_count": len(inputs.fills),
        "commission": sum(float(f.get("commission") or 0.0) for f in inputs.fills),
        "win_rate": metrics.win_rate(inputs.trade_pnls),
        "win_rate_basis": "closed trades since inception (realised P&L > 0)",
        "closed_trades": len(inputs.trade_pnls),
        "sharpe": annual["sharpe"],
        "sortino": annual["sortino"],
        "max_drawdown": metrics.max_drawdown(returns) if len(returns) else None,
        "annual_return": annual["annual_return"],
        "annual_volatility": annual["annual_volatility"],
        "annualised": {
            "available": enough,
            "sessions": sessions,
            "min_sessions": minimum,
            "note": None if enough else f"n/a: fewer than {minimum} sessions",
        },
        "history_days": len(nav),
        "notes": notes,
    }


def _positions(inputs: DailyReportInputs) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    held = set()
    for pos in sorted(inputs.positions, key=lambda p: str(p.get("symbol"))):
        symbol = str(pos.get("symbol"))
        held.add(symbol)
        weight = to_jsonable(pos.get("weight"))
        target = to_jsonable(inputs.targets.get(symbol, 0.0))
        rows.append(
            {
                "symbol": symbol,
                "qty": to_jsonable(pos.get("qty")),
                "price": to_jsonable(pos.get("price")),
                "value": to_jsonable(pos.get("value")),
                "weight": weight,
                "target": target,
                "deviation": None if weight is None or target is None else weight - target,
            }
        )
    nav = float(inputs.nav_history.iloc[-1]) if len(inputs.nav_history) else None
    if "CASH" in inputs.targets:
        held.add("CASH")
        weight = inputs.cash / nav if nav else None
        target = to_jsonable(inputs.targets["CASH"])
        rows.append(
            {
                "symbol": "CASH",
                "qty": None,
                "price": None,
                "value": to_jsonable(inputs.cash),
                "weight": to_jsonable(weight),
                "target": target,
                "deviation": None if weight is None or target is None else weight - target,
            }
        )
    for symbol in sorted(set(inputs.targets) - held):
        target = to_jsonable(inputs.targets[symbol])
        rows.append(
            {
                "symbol": symbol,
                "qty": 0.0,
                "price": None,
                "value": 0.0,
                "weight": 0.0,
                "target": target,
                "deviation": None if target is None else -target,
            }
        )
    notes = []
    if not inputs.positions:
        notes.append("The portfolio is empty: no open positions.")
    if not inputs.targets:
        notes.append("No target weights were produced.")
    invested = sum(float(r["value"] or 0.0) for r in rows if r["symbol"] != "CASH")
    return {"count": len(inputs.positions), "invested": invested, "rows": rows, "notes": notes}


def _risk(inputs: DailyReportInputs) -> dict[str, Any]:
    risk = dict(inputs.risk)
    raw_level = risk.get("level", "L0")
    level = f"L{int(raw_level)}" if isinstance(raw_level, int) else str(raw_level)
    thresholds = {**DEFAULT_THRESHOLDS, **dict(risk.get("thresholds") or {})}
    level_no = int(level[1:]) if level[1:].isdigit() else 0
    next_level = f"L{level_no + 1}" if level_no < 4 else None
    history = [
        {"date": _date_key(k), "level": to_jsonable(v)}
        for k, v in inputs.risk_history.sort_index().items()
    ]
    return {
        "level": level,
        "drawdown": risk.get("drawdown"),
        "peak_nav": risk.get("peak_nav"),
        "distance_to_next": risk.get("distance_to_next"),
        "next_level": next_level,
        "kill_switch": bool(risk.get("kill_switch", False)),
        "actions": list(risk.get("actions") or []),
        "thresholds": thresholds,
        "history": history,
        "notes": [] if history else ["No risk-level history yet."],
    }


def _regime(inputs: DailyReportInputs) -> dict[str, Any]:
    regime = dict(inputs.regime)
    keys = ("regime", "vix", "vix_date", "reason", "effect")
    out: dict[str, Any] = {k: regime.get(k) for k in keys}
    out["thresholds"] = dict(regime.get("thresholds") or {})
    out["notes"] = [] if out["regime"] else ["No regime was recorded for this date."]
    return out


def _signals(inputs: DailyReportInputs) -> dict[str, Any]:
    keys = ("symbol", "signal", "confidence", "reason", "executed", "rejection_reason")
    rows = [{k: s.get(k) for k in keys} for s in inputs.signals]
    for row in rows:
        if not row["executed"] and not row["rejection_reason"]:
            row["rejection_reason"] = NOT_EXECUTED
    executed = [r for r in rows if r["executed"]]
    rejected = [r for r in rows if not r["executed"]]
    notes = [] if rows else ["No signals were generated."]
    return {
        "executed_count": len(executed),
        "rejected_count": len(rejected),
        "executed": executed,
        "rejected": rejected,
        "notes": notes,
    }


def _health(inputs: DailyReportInputs) -> dict[str, Any]:
    health = dict(inputs.health)
    timings = dict(health.get("stage_timings") or health.get("stage_timings_ms") or {})
    return {
        "stage_timings_ms": timings,
        "total_ms": sum(float(v) for v in timings.values() if v is not None) if timings else None,
        "retries": int(health.get("retries") or 0),
        "errors": list(health.get("errors") or []),
        "notification_failures": list(health.get("notification_failures") or []),
    }


def build_daily_report(inputs: DailyReportInputs) -> dict[str, Any]:
    """The daily report as a JSON-serialisable dict (schema ``1.0``, see ``reports/SCHEMA.md``)."""
    nav = pd.Series(inputs.nav_history, dtype=float).sort_index()
    nav = nav[np.isfinite(nav.to_numpy())]
    dq = dict(inputs.data_quality)
    report = {
        "schema_version": SCHEMA_VERSION,
        "kind": "daily",
        "as_of": inputs.as_of,
        "summary": _summary(inputs, nav),
        "trades": list(inputs.trades),
        "fills": list(inputs.fills),
        "positions": _positions(inputs),
        "risk": _risk(inputs),
        "regime": _regime(inputs),
        "signals": _signals(inputs),
        "trading": metrics.trading_section(inputs.trading),
        "data_quality": {
            "status": dq.get("status", "unknown"),
            "blocking": bool(dq.get("blocking", False)),
            "warnings": dq.get("warnings", 0),
            "findings": list(dq.get("findings") or []),
        },
        "health": _health(inputs),
        "series": {
            "nav": series_points(nav, "nav"),
            "drawdown": series_points(metrics.drawdown_series(nav), "drawdown"),
        },
    }
    out: dict[str, Any] = to_jsonable(report)
    return out
