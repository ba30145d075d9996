"""The report stage (SPEC stage 9) and the weekly review's report.

Loads what the run stored, builds the JSON report with the pure builders in
``tiller.reporting``, renders the self-contained HTML, writes both under
``TILLER_HOME/reports/{daily,weekly}/``, registers them in ``reports`` and sends
the summary through the notifier (the flows publish the Prefect artifacts after the
run: ``flows/artifacts.py``).  A notification failure never fails the stage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tiller.errors import ConfigError
from tiller.reporting.daily import DailyReportInputs, build_daily_report, why_not_executed
from tiller.reporting.metrics import monthly_trading
from tiller.reporting.render import Kind, render_html, summary_text
from tiller.store import Tx
from tiller.store import reports as db
from tiller.store.repo import Store

FINAL_FAILURES = ("rejected", "failed", "canceled", "expired")

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class PaperTrading:
    """What the paper book's fills traded up to a date: USD bought plus sold and the
    commission charged, each by fill date (the slippage is inside the fill price: a
    paper record's costs are its commissions)."""

    traded: pd.Series
    costs: pd.Series

    @classmethod
    def load(cls, store: Store, as_of: date) -> PaperTrading:
        fills = db.fills_between(store, date.min, as_of)
        index = pd.to_datetime(fills["as_of"])
        notional = fills["qty"].astype(float) * fills["price"].astype(float)
        return cls(
            traded=pd.Series(notional.to_numpy(), index=index, dtype=float),
            costs=pd.Series(fills["commission"].astype(float).to_numpy(), index=index),
        )

    def monthly(self, nav: pd.Series) -> pd.DataFrame:
        """:func:`tiller.reporting.metrics.monthly_trading` of these fills against ``nav``."""
        return monthly_trading(nav, self.traded, self.costs)


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


def check_ran(store: Store, flow: str, as_of: date) -> None:
    """A report is only rendered for a session ``flow`` ran (whatever its outcome).

    Raises
    ------
    ConfigError
        One line naming the sessions that did run (or saying none has).
    """
    runs = db.flow_runs(store, flow, date.max)
    days = sorted({pd.Timestamp(d).date() for d in runs["as_of"]}) if len(runs) else []
    if as_of in days:
        return
    if not days:
        ran = f"no {flow} run is stored yet; start with `tiller run daily`"
    else:
        before = [d for d in days if d < as_of]
        after = [d for d in days if d > as_of]
        around = ", ".join(
            part
            for part in (
                f"the last before it is {before[-1]}" if before else "",
                f"the next after it is {after[0]}" if after else "",
            )
            if part
        )
        ran = f"{len(days)} session(s) ran from {days[0]} to {days[-1]}; {around}"
    raise ConfigError(f"no {flow} run for {as_of}, so there is no report to render: {ran}")


def daily_inputs(
    store: Store, settings: Any, flow: str, as_of: date, require_run: bool = True
) -> DailyReportInputs:
    """Everything the daily report shows for ``as_of``, read from the store.

    Raises
    ------
    ConfigError
        ``require_run`` and ``flow`` never ran for ``as_of`` (:func:`check_ran`): a report
        of a date that never ran would invent one (a "first run" at the initial capital).
    """
    if require_run:
        check_ran(store, flow, as_of)
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
    stages = db.stage_runs(store, flow, as_of)
    signals = _signals(store, flow, as_of, trades, positions, targets, stages)
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
    health = {
        "stage_timings_ms": {str(r.stage): float(r.duration_ms) for r in stages.itertuples()},
        "retries": int(sum(max(int(t.get("attempts") or 1) - 1, 0) for t in trades)),
        "errors": [str(r.error) for r in stages.itertuples() if r.status == "failed"],
        "notification_failures": _notification_failures(store, as_of),
    }
    return DailyReportInputs(
        as_of=as_of,
        nav_history=nav_history,
        trading=PaperTrading.load(store, as_of).monthly(nav_history),
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
        regime=_regime(store, settings, as_of),
    )


def _signals(
    store: Store,
    flow: str,
    as_of: date,
    trades: list[dict[str, Any]],
    positions: list[dict[str, Any]],
    targets: pd.DataFrame,
    stages: pd.DataFrame,
) -> list[dict[str, Any]]:
    """The day's signals, each with whether an order went out and, if none did, why: a
    pre-trade rejection, a failed order, the risk stage's buy block, an orders stage that
    did not complete, or what the targets and the book say (:func:`why_not_executed`)."""
    rejected = db.rejections_on(store, as_of)
    why_not = dict(zip(rejected["symbol"], rejected["reason"], strict=False))
    for trade in trades:
        if trade["status"] in FINAL_FAILURES and trade["reason"]:
            why_not.setdefault(trade["symbol"], trade["reason"])
    blocks = db.risk_events_on(store, as_of, "buy_block")
    blocked = {str(r.symbol): f"risk: {r.reason}" for r in blocks.itertuples() if r.symbol}
    executed = {t["symbol"] for t in trades if t["status"] not in FINAL_FAILURES}
    orders_done = bool(((stages["stage"] == "orders") & (stages["status"] == "completed")).any())
    optimization = db.optimization_on(store, as_of) or {}
    hold = optimization.get("reason") if optimization.get("method") == "hold" else None
    skipped: dict[str, str] = {}
    for item in json.loads(optimization.get("skipped") or "[]"):
        if isinstance(item, list | tuple) and len(item) == 2:
            skipped.setdefault(str(item[0]), str(item[1]))
    weights = {str(p["symbol"]): float(p.get("weight") or 0.0) for p in positions}
    goals = {str(r.symbol): float(r.weight) for r in targets.itertuples()}
    rows = []
    for row in _records(db.signals_on(store, as_of)):
        symbol = str(row["symbol"])
        reason = why_not.get(symbol)
        if symbol not in executed and not reason:
            if str(row["signal"]).upper() in ("BUY", "STRONG_BUY") and symbol in blocked:
                reason = blocked[symbol]
            elif not orders_done:
                reason = "no orders were placed: the orders stage did not complete this day"
            else:
                eligible = row.get("long_eligible")
                reason = why_not_executed(
                    str(row["signal"]),
                    None if eligible is None else bool(eligible),
                    weights.get(symbol),
                    goals.get(symbol),
                    skipped.get(symbol),
                    hold,
                )
        row.pop("long_eligible", None)
        rows.append(
            {
                **row,
                "executed": symbol in executed,
                "rejection_reason": reason,
            }
        )
    return rows


def _regime(store: Store, settings: Any, as_of: date) -> dict[str, Any]:
    """The regime of ``as_of``, the VIX close it came from and what it changes."""
    from tiller.strategy.signals import regime_effect

    record = db.regime_record_on(store, as_of)
    if record is None:
        return {}
    config = settings.strategy
    vix = None if record["vix"] is None else float(record["vix"])
    return {
        "regime": str(record["regime"]),
        "vix": vix,
        "vix_date": record["vix_date"],
        "reason": str(record["reason"]),
        "effect": regime_effect(
            str(record["regime"]), vix, config.signals, settings.risk.l1_min_confidence
        ),
        "thresholds": {
            "ELEVATED": config.regime.elevated,
            "HIGH_VOL": config.regime.high_vol,
            "EXTREME": config.regime.extreme,
        },
    }


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


def notify(settings: Any, store: Store, rendered: RenderedReport, html_path: Path) -> str:
    """Send the summary; returns the outcome's status (never raises).

    Each channel gets a short message in the format it shows (email: an HTML table and a
    text part; Slack: markdown; a webhook: plain text) naming the full report's files, and
    a light copy of the report is attached: its tables without charts or plotly.js (tens of
    kilobytes; the full page is about 5 MB and stays on the Tiller host).
    """
    import tempfile

    from tiller.alerts import Notifier, summary
    from tiller.reporting.message import build_message

    kind, as_of = rendered.kind, rendered.as_of
    json_path = html_path.with_suffix(".json")
    links = [("Full report (HTML)", str(html_path))]
    if json_path.is_file():
        links.append(("JSON", str(json_path)))
    with tempfile.TemporaryDirectory(prefix="tiller-summary-") as folder:
        light = Path(folder) / f"{kind}-{as_of.isoformat()}-tables.html"
        try:
            message = build_message(rendered.report, kind, links)
            light.write_text(render_html(rendered.report, kind, charts=False), encoding="utf-8")
            alert = summary(kind, as_of, message.text, light, message.html, message.markdown)
        except Exception:  # a summary that cannot be built still says where the report is
            log.exception("could not build the %s summary of %s", kind, as_of)
            text = summary_text(rendered.report, kind) + f"\n\nFull report: {html_path}"
            alert = summary(kind, as_of, text)
        return Notifier(settings, store).send(alert).status


def report_stage(ctx: RunContext) -> StageOutcome:
    """Build, render, save, register and send the daily report of ``as_of`` (the flow
    publishes it as Prefect artifacts: :func:`flows.artifacts.publish_run`)."""
    inputs = daily_inputs(ctx.store, ctx.settings, ctx.flow, ctx.as_of)
    key = fingerprint(ctx.as_of, str(inputs.nav_history.to_dict()), inputs.trades, inputs.risk)
    return run_report_stage(ctx, "daily", key, lambda: build_daily_report(inputs))


def run_report_stage(
    ctx: RunContext, kind: Kind, key: str, build: Callable[[], dict[str, Any]]
) -> StageOutcome:
    """The ``report`` stage of a daily or weekly run: ``build`` the report, render its
    HTML, write and register both in one checkpointed step, then send the summary (a
    notification failure never fails the stage)."""

    def compute() -> RenderedReport:
        report = build()
        return RenderedReport(kind, ctx.as_of, report, render_html(report, kind))

    paths: dict[str, Path] = {}

    def persist(tx: Tx, rendered: RenderedReport) -> tuple[str, str]:
        _, html = write_report(ctx.settings.home_dir, ctx.store, tx, rendered, ctx.run_id)
        paths["html"] = html
        return "completed", str(html)

    outcome = run_stage(ctx, "report", key, compute, persist)
    if outcome.status == "completed" and "html" in paths:
        notify(ctx.settings, ctx.store, outcome.value, paths["html"])
    return outcome
