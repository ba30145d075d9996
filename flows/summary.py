"""What a run did, read back from the store: the summary ``tiller run daily/weekly``
prints (as JSON with ``--json``, as a few lines without), the flow returns and logs, and
the markdown artifact a Prefect run publishes.

:func:`summarize` gathers it (one dict, JSON-ready); :func:`render_summary` and
:func:`summary_markdown` lay that dict out for a terminal and for the Prefect UI.  Both
the CLI and the flows use these, so a run says the same thing wherever it ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tiller.store import reports as db
from tiller.store.repo import Store


def summarize(store: Store, run_id: str, initial_capital: float | None = None) -> dict[str, Any]:
    """One JSON-ready dict describing run ``run_id`` from what the store recorded.

    Keys: ``flow``, ``as_of``, ``status`` (completed | blocked | failed |
    running | interrupted), ``stages`` (stage -> completed | skipped | blocked
    | failed), ``error`` (null or the message), ``run_id``, ``data_quality``
    (status and counts of the as_of's report, or null), ``regime``, ``risk_level``
    (``L0``..``L4``), ``kill_switch``, ``signals`` (symbol -> signal) and
    ``target_weights`` (symbol -> weight, ``CASH`` included), ``orders`` (symbol, side,
    qty, status, client_order_id, fill_price), ``nav``, ``cash`` (USD) and
    ``positions`` (symbol -> qty at the close); null/empty until the
    stage that writes them has run.

    Also: ``reports`` (kind -> ``json``/``html`` paths), ``vix`` and ``vix_date`` (the
    close the regime came from), ``drawdown`` (fraction below the peak NAV),
    ``signal_changes`` (symbol -> ``{"from", "to"}``, the signals that differ from
    ``previous_signals_as_of``'s; ``from`` null for a symbol new that day), ``fills``
    (``count``, ``notional`` and ``commission`` in USD), ``day_pnl``/``day_return``
    (against the previous NAV snapshot, or the initial capital on the first one),
    ``since_start_pnl``/``since_start_return`` (against ``initial_capital``, default
    ``optimize.initial_capital`` of the settings) and, for the weekly review, ``gate``
    (the GO/NO-GO verdict, its failing rows and the performance gate's verdict, read
    from the weekly JSON report).
    """
    run = store.run(run_id)
    if run is None:
        raise KeyError(f"no flow run {run_id} in the store")
    report = db.quality_report_on(store, run["as_of"])
    quality = None
    if not report.empty:
        row = report.iloc[0]
        quality = {
            "status": str(row["status"]),
            "blocking": int(row["blocking"]),
            "warnings": int(row["warnings"]),
        }
    as_of = run["as_of"]
    regime = db.regime_on(store, as_of)
    decision = db.risk_decision_on(store, as_of)
    signals = db.signals_on(store, as_of)
    targets = db.targets_on(store, as_of)
    order_rows = db.orders_in_sequence(store, as_of)
    nav = db.nav_on(store, as_of)
    positions = db.positions_on(store, as_of)
    reports = db.reports_on(store, as_of)
    summary = {
        "flow": run["flow"],
        "as_of": run["as_of"].isoformat(),
        "status": run["status"],
        "stages": run["stages"],
        "error": run["error"],
        "run_id": run_id,
        "data_quality": quality,
        "regime": regime,
        "risk_level": None if decision.empty else f"L{int(decision.iloc[0]['level'])}",
        "kill_switch": None if decision.empty else bool(decision.iloc[0]["kill_switch"]),
        "signals": {str(r.symbol): str(r.signal) for r in signals.itertuples()},
        "target_weights": {str(r.symbol): round(float(r.weight), 6) for r in targets.itertuples()},
        "orders": [
            {
                "symbol": str(r.symbol),
                "side": str(r.side),
                "qty": float(r.qty),
                "status": str(r.status),
                "client_order_id": str(r.client_order_id),
                "fill_price": None if pd.isna(r.filled_avg_price) else float(r.filled_avg_price),
            }
            for r in order_rows.itertuples()
        ],
        "nav": None if nav.empty else float(nav.iloc[0]["nav"]),
        "cash": None if nav.empty else float(nav.iloc[0]["cash"]),
        "positions": {str(r.symbol): float(r.qty) for r in positions.itertuples()},
        "reports": {
            str(r.kind): {"json": str(r.json_path), "html": str(r.html_path)}
            for r in reports.itertuples()
        },
    }
    if initial_capital is None:
        from tiller.settings import load_settings

        initial_capital = float(load_settings().optimize.initial_capital)
    summary.update(_regime(store, as_of))
    summary["drawdown"] = None if decision.empty else _float(decision.iloc[0]["drawdown"])
    summary.update(_signal_changes(store, as_of, summary["signals"]))
    summary["fills"] = _fills(store, as_of)
    summary.update(_pnl(store, as_of, float(initial_capital)))
    if run["flow"] == "weekly-review":
        summary["gate"] = _gate(summary["reports"].get("weekly", {}).get("json"))
    return summary


def _float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _regime(store: Store, as_of: Any) -> dict[str, Any]:
    record = db.regime_record_on(store, as_of)
    if record is None:
        return {"vix": None, "vix_date": None}
    vix_date = record.get("vix_date")
    return {
        "vix": _float(record.get("vix")),
        "vix_date": None if vix_date is None or pd.isna(vix_date) else str(vix_date)[:10],
    }


def _signal_changes(store: Store, as_of: Any, today: dict[str, str]) -> dict[str, Any]:
    before = db.signals_before(store, as_of)
    previous = {str(r.symbol): str(r.signal) for r in before.itertuples()}
    day = None if before.empty else str(before.iloc[0]["as_of"])[:10]
    changes = {
        symbol: {"from": previous.get(symbol), "to": signal}
        for symbol, signal in sorted(today.items())
        if previous.get(symbol) != signal
    }
    return {"previous_signals_as_of": day, "signal_changes": changes}


def _fills(store: Store, as_of: Any) -> dict[str, Any]:
    fills = db.fills_on(store, as_of)
    if fills.empty:
        return {"count": 0, "notional": 0.0, "commission": 0.0}
    notional = (fills["qty"].astype(float) * fills["price"].astype(float)).abs().sum()
    return {
        "count": len(fills),
        "notional": round(float(notional), 2),
        "commission": round(float(fills["commission"].astype(float).sum()), 2),
    }


def _pnl(store: Store, as_of: Any, capital: float) -> dict[str, Any]:
    navs = db.nav_history(store, as_of)
    empty = {"day_pnl": None, "day_return": None, "since_start_pnl": None}
    if navs.empty or pd.Timestamp(navs["as_of"].iloc[-1]).date() != pd.Timestamp(as_of).date():
        return {**empty, "since_start_return": None, "initial_capital": capital}
    nav = float(navs["nav"].iloc[-1])
    before = float(navs["nav"].iloc[-2]) if len(navs) > 1 else capital
    return {
        "day_pnl": round(nav - before, 2),
        "day_return": nav / before - 1.0 if before else None,
        "since_start_pnl": round(nav - capital, 2),
        "since_start_return": nav / capital - 1.0 if capital else None,
        "initial_capital": capital,
    }


def _gate(json_path: str | None) -> dict[str, Any] | None:
    """The weekly review's verdicts from its JSON report: GO/NO-GO with the gates that did
    not pass, and the performance gate's PASS/FAIL with its reasons."""
    if not json_path or not Path(json_path).is_file():
        return None
    report = json.loads(Path(json_path).read_text(encoding="utf-8"))
    go = report.get("go_no_go") or {}
    failing = [
        {
            "name": g.get("name"),
            "value": g.get("value"),
            "threshold": g.get("threshold"),
            "rule": g.get("rule"),
            "status": g.get("status"),
            **({"missing": g["missing"]} if g.get("missing") else {}),
        }
        for g in go.get("gates") or []
        if g.get("status") != "pass"
    ]
    performance = report.get("performance_gate") or {}
    verdict = performance.get("verdict") or {}
    return {
        "verdict": go.get("verdict"),
        "failing": failing,
        "performance_gate": None
        if not performance.get("available")
        else {"verdict": verdict.get("verdict"), "reasons": list(verdict.get("reasons") or [])},
    }


# ------------------------------------------------------------------------ layout


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return ("-" if value < 0 else "") + f"${abs(value):,.2f}"


def _signed(value: float | None) -> str:
    if value is None:
        return "n/a"
    return ("+" if value >= 0 else "-") + f"${abs(value):,.2f}"


def _pct(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _qty(value: float) -> str:
    return f"{value:,.6f}".rstrip("0").rstrip(".")


def _stages(stages: dict[str, str]) -> str:
    """``ingest..report completed`` or the stages grouped by outcome, in run order."""
    if not stages:
        return "none ran"
    groups: dict[str, list[str]] = {}
    for stage, status in stages.items():
        groups.setdefault(status, []).append(stage)
    if len(groups) == 1:
        (status,) = groups
        names = list(stages)
        span = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
        return f"{span} {status}"
    return "; ".join(f"{status}: {', '.join(names)}" for status, names in groups.items())


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (label, text) rows, in the order a reader wants them: what ran, the
    market and risk, the decisions, the trades, the money, where the report is."""
    rows = [("stages", _stages(summary.get("stages") or {}))]
    quality = summary.get("data_quality")
    if quality:
        rows.append(
            (
                "data",
                f"{quality['status']} ({quality['blocking']} blocking, "
                f"{quality['warnings']} warnings)",
            )
        )
    if summary.get("error"):
        rows.append(("error", str(summary["error"])))
    if summary["flow"] == "weekly-review":
        return rows + _weekly_rows(summary)
    if summary.get("regime"):
        vix = summary.get("vix")
        when = f" on {summary['vix_date']}" if summary.get("vix_date") else ""
        rows.append(
            ("regime", summary["regime"] + ("" if vix is None else f" (VIX {vix:.2f}{when})"))
        )
    if summary.get("risk_level"):
        risk = f"{summary['risk_level']}, drawdown {_pct(summary.get('drawdown'), False)}"
        if summary.get("kill_switch"):
            risk += ", KILL SWITCH ON"
        rows.append(("risk", risk))
    signals = summary.get("signals") or {}
    if signals:
        rows.append(("signals", _signal_text(summary)))
    targets = summary.get("target_weights") or {}
    if targets:
        ordered = sorted(targets.items(), key=lambda kv: (kv[0] == "CASH", -kv[1], kv[0]))
        rows.append(("targets", ", ".join(f"{s} {w:.1%}" for s, w in ordered)))
    orders = summary.get("orders") or []
    if orders or "orders" in (summary.get("stages") or {}):
        rows.append(("orders", _order_text(orders)))
        fills = summary.get("fills") or {}
        if fills.get("count"):
            rows.append(
                (
                    "fills",
                    f"{fills['count']}, {_money(fills['notional'])} traded, "
                    f"{_money(fills['commission'])} commission",
                )
            )
    if summary.get("nav") is not None:
        rows.append(
            (
                "NAV",
                f"{_money(summary['nav'])} (cash {_money(summary.get('cash'))})   "
                f"day {_signed(summary.get('day_pnl'))} ({_pct(summary.get('day_return'))})   "
                f"since start {_signed(summary.get('since_start_pnl'))} "
                f"({_pct(summary.get('since_start_return'))})",
            )
        )
    html = (summary.get("reports") or {}).get("daily", {}).get("html")
    if html:
        rows.append(("report", str(html)))
    return rows


def _signal_text(summary: dict[str, Any]) -> str:
    changes = summary.get("signal_changes") or {}
    previous = summary.get("previous_signals_as_of")
    if previous is None:
        today = sorted((summary.get("signals") or {}).items())
        return "first session: " + ", ".join(f"{s} {v}" for s, v in today)
    if not changes:
        return f"unchanged since {previous}"
    moved = ", ".join(f"{s} {c['from'] or 'none'} -> {c['to']}" for s, c in sorted(changes.items()))
    return f"{len(changes)} changed since {previous}: {moved}"


def _order_text(orders: list[dict[str, Any]]) -> str:
    if not orders:
        return "none"
    filled = sum(1 for o in orders if o["status"] == "filled")
    parts = []
    for order in orders:
        text = f"{order['side']} {_qty(order['qty'])} {order['symbol']}"
        if order.get("fill_price") is not None:
            text += f" @ {order['fill_price']:,.2f}"
        if order["status"] != "filled":
            text += f" ({order['status']})"
        parts.append(text)
    return f"{len(orders)} ({filled} filled): " + ", ".join(parts)


def _weekly_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    gate = summary.get("gate")
    if gate:
        failing = gate.get("failing") or []
        verdict = str(gate.get("verdict"))
        if failing:
            verdict += f" ({len(failing)} gate(s) not passed)"
        rows.append(("GO/NO-GO", verdict))
        for row in failing:
            missing = f", missing {', '.join(row['missing'])}" if row.get("missing") else ""
            rows.append(
                (
                    f"  {row['name']}",
                    f"{row['status']}: {_figure(row['value'])}, needs {row['rule']} "
                    f"{_figure(row['threshold'])}{missing}",
                )
            )
        performance = gate.get("performance_gate")
        if performance:
            rows.append(("performance gate", str(performance.get("verdict"))))
            rows += [("  reason", str(r)) for r in performance.get("reasons") or []]
    if summary.get("nav") is not None:
        rows.append(
            (
                "NAV",
                f"{_money(summary['nav'])}   since start "
                f"{_signed(summary.get('since_start_pnl'))} "
                f"({_pct(summary.get('since_start_return'))})",
            )
        )
    html = (summary.get("reports") or {}).get("weekly", {}).get("html")
    if html:
        rows.append(("report", str(html)))
    return rows


def _figure(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _title(summary: dict[str, Any]) -> str:
    how = summary.get("orchestrator")
    return f"{summary['flow']} {summary['as_of']}: {summary['status']}" + (
        f" ({how})" if how else ""
    )


def render_summary(summary: dict[str, Any]) -> str:
    """The summary for a terminal or a log: a title line, then one indented line per topic
    (a text of several lines, such as a blocking error, continues under its first line)."""
    rows = summary_rows(summary)
    width = max((len(label) for label, _ in rows), default=0)
    indent = "\n" + " " * (width + 4)
    lines = [f"  {label:<{width}}  {indent.join(text.splitlines())}" for label, text in rows]
    return "\n".join([_title(summary), *lines])


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as markdown for a Prefect artifact: a title and a two-column table."""
    lines = [f"## {_title(summary)}", "", "| | |", "|---|---|"]
    for label, text in summary_rows(summary):
        cell = text.replace("|", "\\|").replace("\n", "<br>")
        lines.append(f"| {label.strip()} | {cell} |")
    return "\n".join(lines) + "\n"
