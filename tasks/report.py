"""The report stage (SPEC stage 9) and the weekly review's report.

Loads what the run stored, builds the JSON report with the pure builders in
``tiller.reporting``, renders the self-contained HTML, writes both under
``TILLER_HOME/reports/{daily,weekly}/``, registers them in ``reports``,
publishes Prefect artifacts (inside a flow run) and sends the summary through
the notifier.  A notification failure never fails the stage.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tiller.reporting.daily import DailyReportInputs, build_daily_report
from tiller.reporting.render import render_html, render_markdown_summary, summary_text
from tiller.store import Tx
from tiller.store import reports as db
from tiller.store.repo import Store

FINAL_FAILURES = ("rejected", "failed", "canceled", "expired")


@dataclass(frozen=True)
class RenderedReport:
    """A report ready to write: its JSON dict and its HTML."""

    kind: str
    as_of: date
    report: dict[str, Any]
    html: str


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    return [dict(r) for r in clean.to_dict("records")]


def trade_pnls(store: Store, start: date, end: date) -> tuple[float, ...]:
    """Realized P&L of each sell fill in ``[start, end]`` (USD): (price - average cost the day
    before) x qty - commission, the average cost from the previous position snapshot."""
    sells = db.sell_fills(store, start, end)
    pnls = []
    for row in sells.itertuples():
        avg = db.avg_cost_before(store, row.symbol, row.as_of)
        if avg is not None:
            pnls.append((float(row.price) - avg) * float(row.qty) - float(row.commission))
    return tuple(pnls)


def daily_inputs(store: Store, settings: Any, flow: str, as_of: date) -> DailyReportInputs:
    """Everything the daily report shows for ``as_of``, read from the store."""
    navs = db.nav_history(store, as_of)
    nav_history = pd.Series(navs["nav"].astype(float).values, index=pd.to_datetime(navs["as_of"]))
    cash = float(navs["cash"].iloc[-1]) if len(navs) else settings.optimize.initial_capital
    positions = _records(db.positions_on(store, as_of))
    targets = db.targets_on(store, as_of)
    trades = _records(db.orders_on(store, as_of))
    fills = _records(db.fills_on(store, as_of))
    decisions = db.risk_decisions(store, as_of)
    risk: dict[str, Any] = {"thresholds": dict(settings.risk.levels)}
    risk_history = pd.Series(dtype="int64")
    if len(decisions):
        last = decisions.iloc[-1]
        risk.update(
            level=f"L{int(last['level'])}",
            drawdown=float(last["drawdown"]),
            peak_nav=float(last["peak_nav"]),
            distance_to_next=None
            if pd.isna(last["distance_to_next"])
            else float(last["distance_to_next"]),
            kill_switch=bool(last["kill_switch"]),
            actions=json.loads(last["actions"]),
        )
        risk_history = pd.Series(
            decisions["level"].astype(int).values, index=pd.to_datetime(decisions["as_of"])
        )
    rejected = db.rejections_on(store, as_of)
    why_not = dict(zip(rejected["symbol"], rejected["reason"], strict=False))
    for trade in trades:
        if trade["status"] in FINAL_FAILURES and trade["reason"]:
            why_not.setdefault(trade["symbol"], trade["reason"])
    executed = {t["symbol"] for t in trades if t["status"] not in FINAL_FAILURES}
    signals = [
        {
            **row,
            "executed": row["symbol"] in executed,
            "rejection_reason": why_not.get(row["symbol"]),
        }
        for row in _records(db.signals_on(store, as_of))
    ]
    report = db.quality_report_on(store, as_of)
    quality: dict[str, Any] = {"status": "not run", "blocking": 0, "warnings": 0, "findings": []}
    if len(report):
        row = report.iloc[0]
        findings = db.quality_findings(store, int(row["id"]))
        quality = {
            "status": str(row["status"]),
            "blocking": int(row["blocking"]),
            "warnings": int(row["warnings"]),
            "findings": _records(findings),
        }
    stages = db.stage_runs(store, flow, as_of)
    health = {
        "stage_timings_ms": {str(r.stage): float(r.duration_ms) for r in stages.itertuples()},
        "retries": int(sum(max(int(t.get("attempts") or 1) - 1, 0) for t in trades)),
        "errors": [str(r.error) for r in stages.itertuples() if r.status == "failed"],
        "notification_failures": _notification_failures(store, as_of),
    }
    return DailyReportInputs(
        as_of=as_of,
        nav_history=nav_history,
        cash=cash,
        positions=positions,
        targets={str(r.symbol): float(r.weight) for r in targets.itertuples()},
        trades=trades,
        fills=fills,
        risk=risk,
        risk_history=risk_history,
        signals=signals,
        data_quality=quality,
        health=health,
    )


def _notification_failures(store: Store, as_of: date) -> list[dict[str, Any]]:
    from tiller.alerts import recent_failures

    return recent_failures(store, as_of - timedelta(days=7))


def write_report(
    ctx_home: Path, store: Store, tx: Tx, rendered: RenderedReport, run_id: str | None
) -> tuple[Path, Path]:
    """Write ``<home>/reports/<kind>/<as_of>.{json,html}`` and register them (in ``tx``)."""
    folder = ctx_home / "reports" / rendered.kind
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{rendered.as_of.isoformat()}.json"
    html_path = folder / f"{rendered.as_of.isoformat()}.html"
    json_path.write_text(json.dumps(rendered.report, indent=2, sort_keys=True, default=str))
    html_path.write_text(rendered.html, encoding="utf-8")
    db.save_report(
        store,
        tx,
        kind=rendered.kind,
        as_of=rendered.as_of,
        schema_version=str(rendered.report.get("schema_version", "")),
        json_path=str(json_path),
        html_path=str(html_path),
        run_id=run_id,
    )
    return json_path, html_path


def publish(rendered: RenderedReport, html_path: Path) -> None:
    """Prefect artifacts (a markdown summary and a table) when running inside a flow."""
    if "prefect" not in sys.modules:  # a local run (no Prefect imported): nothing to publish
        return
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = f"{rendered.kind}-report"
    create_markdown_artifact(
        render_markdown_summary(rendered.report, rendered.kind) + f"\n\nHTML: `{html_path}`",
        key=key,
        description=f"{rendered.kind} report {rendered.as_of}",
    )
    rows = rendered.report.get("positions") or rendered.report.get("targets_vs_actual") or []
    if isinstance(rows, list) and rows:
        create_table_artifact(rows, key=f"{key}-table", description="positions / targets")


def notify(settings: Any, store: Store, rendered: RenderedReport, html_path: Path) -> str:
    """Send the summary with the HTML attached; returns the outcome's status (never raises)."""
    from tiller.alerts import Notifier, summary

    alert = summary(
        rendered.kind, rendered.as_of, summary_text(rendered.report, rendered.kind), html_path
    )
    return Notifier(settings, store).send(alert).status


def report_stage(ctx: RunContext) -> StageOutcome:
    """Build, render, save, register, publish and send the daily report of ``as_of``."""
    inputs = daily_inputs(ctx.store, ctx.settings, ctx.flow, ctx.as_of)
    key = fingerprint(ctx.as_of, str(inputs.nav_history.to_dict()), inputs.trades, inputs.risk)

    def compute() -> RenderedReport:
        report = build_daily_report(inputs)
        return RenderedReport("daily", ctx.as_of, report, render_html(report, "daily"))

    paths: dict[str, Path] = {}

    def persist(tx: Tx, rendered: RenderedReport) -> tuple[str, str]:
        _, html = write_report(ctx.settings.home_dir, ctx.store, tx, rendered, ctx.run_id)
        paths["html"] = html
        return "completed", str(html)

    outcome = run_stage(ctx, "report", key, compute, persist)
    if outcome.status == "completed" and "html" in paths:
        publish(outcome.value, paths["html"])
        notify(ctx.settings, ctx.store, outcome.value, paths["html"])
    return outcome
