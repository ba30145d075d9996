"""The run summary printed by ``tiller run daily --json`` and returned by the flow."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tiller.store import reports as db
from tiller.store.repo import Store


def summarize(store: Store, run_id: str) -> dict[str, Any]:
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
    return {
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
