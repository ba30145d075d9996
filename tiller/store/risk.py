"""Risk reads and writes the command line needs beyond :meth:`Store.load_risk_state` and
:meth:`Store.save_risk_state`: the NAV of the latest risk decision and operator events."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, select

from tiller.store.repo import RISK_DECISIONS, RISK_EVENTS, Store, utcnow


def latest_decision_nav(store: Store, portfolio: str) -> float | None:
    """The NAV (USD) the newest risk decision of ``portfolio`` saw; None before the first."""
    decisions = store.select(
        select(RISK_DECISIONS.c.nav)
        .where(RISK_DECISIONS.c.portfolio == portfolio)
        .order_by(RISK_DECISIONS.c.as_of.desc())
        .limit(1)
    )
    return None if decisions.empty else float(decisions.iloc[0]["nav"])


def record_risk_event(
    store: Store,
    tx: Connection,
    *,
    as_of: date,
    portfolio: str,
    kind: str,
    reason: str,
    symbol: str | None = None,
    run_id: str | None = None,
) -> None:
    """Insert one ``risk_events`` row in ``tx`` (e.g. ``reset`` or ``kill_switch`` by an
    operator: no run, no symbol)."""
    store.insert(
        tx,
        RISK_EVENTS,
        [
            {
                "as_of": as_of,
                "portfolio": portfolio,
                "kind": kind,
                "symbol": symbol,
                "reason": reason,
                "run_id": run_id,
                "created_at": utcnow(),
            }
        ],
    )
