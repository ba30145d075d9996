"""The paper flow's daily report, for any date of a saved backtest.

A backtest stores per session its NAV, cash, weights, fills and risk decisions; the
report shows those in the daily report's format (:mod:`tiller.reporting.daily`).  What a
backtest does not keep per date (signal reasons, target weights of non-rebalance days,
data-quality findings) is said so in the report rather than left blank.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from tiller.backtest.engine import BacktestError
from tiller.backtest.result import BacktestResult
from tiller.settings import Settings


def daily_report(result: BacktestResult, as_of: date, settings: Settings) -> dict[str, Any]:
    """The daily report dict of ``as_of`` (a session of the run).

    Raises
    ------
    BacktestError
        ``as_of`` is not a session of the run (the message gives its range).
    """
    from tiller.reporting.daily import DailyReportInputs, build_daily_report

    if as_of not in result.daily.index:
        raise BacktestError(
            f"{as_of} is not a session of backtest {result.run_id} "
            f"({result.start}..{result.end}); pick a trading day in that range"
        )
    daily = result.daily.loc[:as_of]
    day = daily.iloc[-1]
    nav = float(day["nav"])
    weights = result.weights.loc[as_of]
    positions = [
        {"symbol": s, "qty": None, "price": None, "value": float(w) * nav, "weight": float(w)}
        for s, w in weights.items()
        if s != "CASH" and w
    ]
    fills = result.trades[result.trades["date"] == as_of]
    events = result.risk_events[result.risk_events["date"] == as_of]
    thresholds = dict(settings.risk.levels)
    level = int(day["level"])
    nxt = f"L{level + 1}" if level < 4 else None
    inputs = DailyReportInputs(
        as_of=as_of,
        nav_history=pd.Series(
            daily["nav"].to_numpy(dtype=float), index=pd.to_datetime(daily.index)
        ),
        cash=float(day["cash"]),
        positions=positions,
        targets={},
        trades=[
            {
                "symbol": f.symbol,
                "side": f.side,
                "qty": f.qty,
                "status": "filled",
                "fill_price": f.price,
                "client_order_id": f.client_order_id,
            }
            for f in fills.itertuples()
        ],
        fills=[
            {
                "symbol": f.symbol,
                "side": f.side,
                "qty": f.qty,
                "price": f.price,
                "commission": f.commission,
            }
            for f in fills.itertuples()
        ],
        risk={
            "level": f"L{level}",
            "drawdown": float(day["drawdown"]),
            "peak_nav": float(day["peak_nav"]),
            "distance_to_next": (thresholds[nxt] - float(day["drawdown"])) if nxt else None,
            "kill_switch": bool((events["kind"] == "kill_switch").any()),
            "actions": sorted(set(events["kind"])),
            "thresholds": thresholds,
        },
        risk_history=pd.Series(
            daily["level"].astype(int).to_numpy(), index=pd.to_datetime(daily.index)
        ),
        data_quality={"status": "backtest", "blocking": False, "warnings": 0, "findings": []},
        health={"errors": [], "retries": 0},
    )
    report = build_daily_report(inputs)
    report["backtest"] = {"run_id": result.run_id, "label": result.label, "regime": day["regime"]}
    return report


def write_daily_report(
    settings: Settings, result: BacktestResult, as_of: date
) -> tuple[Path, Path]:
    """Write ``TILLER_HOME/backtests/<run_id>/daily-<date>.json`` and ``.html``."""
    from tiller.reporting.render import render_html

    report = daily_report(result, as_of, settings)
    folder = settings.home_dir / "backtests" / result.run_id
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"daily-{as_of.isoformat()}.json"
    html_path = folder / f"daily-{as_of.isoformat()}.html"
    json_path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    html_path.write_text(render_html(report, "daily"), encoding="utf-8")
    return json_path, html_path
