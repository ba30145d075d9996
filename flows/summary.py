"""The run summary printed by ``tiller run daily --json`` and returned by the flow."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from tiller.store.repo import (
    DQ_REPORTS,
    NAV_SNAPSHOTS,
    ORDERS,
    POSITION_SNAPSHOTS,
    REGIMES,
    REPORTS,
    RISK_DECISIONS,
    SIGNALS,
    TARGETS,
    Store,
)


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
    report = store.select(
        select(DQ_REPORTS.c.status, DQ_REPORTS.c.blocking, DQ_REPORTS.c.warnings).where(
            DQ_REPORTS.c.as_of == run["as_of"]
        )
    )
    quality = None
    if not report.empty:
        row = report.iloc[0]
        quality = {
            "status": str(row["status"]),
            "blocking": int(row["blocking"]),
            "warnings": int(row["warnings"]),
        }
    as_of = run["as_of"]
    regime = store.select(select(REGIMES.c.regime).where(REGIMES.c.as_of == as_of))
    decision = store.select(
        select(RISK_DECISIONS.c.level, RISK_DECISIONS.c.kill_switch).where(
            RISK_DECISIONS.c.as_of == as_of
        )
    )
    signals = store.select(
        select(SIGNALS.c.symbol, SIGNALS.c.signal).where(SIGNALS.c.as_of == as_of)
    )
    targets = store.select(
        select(TARGETS.c.symbol, TARGETS.c.weight).where(TARGETS.c.as_of == as_of)
    )
    order_rows = store.select(
        select(
            ORDERS.c.symbol,
            ORDERS.c.side,
            ORDERS.c.qty,
            ORDERS.c.status,
            ORDERS.c.client_order_id,
            ORDERS.c.filled_avg_price,
        )
        .where(ORDERS.c.as_of == as_of)
        .order_by(ORDERS.c.created_at, ORDERS.c.client_order_id)
    )
    nav = store.select(
        select(NAV_SNAPSHOTS.c.nav, NAV_SNAPSHOTS.c.cash).where(NAV_SNAPSHOTS.c.as_of == as_of)
    )
    positions = store.select(
        select(POSITION_SNAPSHOTS.c.symbol, POSITION_SNAPSHOTS.c.qty).where(
            POSITION_SNAPSHOTS.c.as_of == as_of
        )
    )
    reports = store.select(
        select(REPORTS.c.kind, REPORTS.c.json_path, REPORTS.c.html_path).where(
            REPORTS.c.as_of == as_of
        )
    )
    return {
        "flow": run["flow"],
        "as_of": run["as_of"].isoformat(),
        "status": run["status"],
        "stages": run["stages"],
        "error": run["error"],
        "run_id": run_id,
        "data_quality": quality,
        "regime": None if regime.empty else str(regime.iloc[0, 0]),
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
