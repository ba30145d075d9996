"""What the reports, the weekly review and the run summary read from the store, and the
``reports`` table they register their files in.

Reads take the :class:`~tiller.store.repo.Store` and return frames (one row per record,
the columns named in each docstring) or plain values; the one write takes a transaction
so a stage registers its report together with its checkpoint.  Money is in USD, weights
are fractions of NAV, dates are session dates.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select

from tiller.store.repo import (
    BARS,
    CHECKPOINTS,
    DQ_FINDINGS,
    DQ_REPORTS,
    FILLS,
    NAV_SNAPSHOTS,
    OPTIMIZATIONS,
    ORDER_REJECTIONS,
    ORDERS,
    POSITION_SNAPSHOTS,
    REGIMES,
    REPORTS,
    RISK_DECISIONS,
    RISK_EVENTS,
    RUNS,
    SIGNALS,
    TARGETS,
    Store,
    utcnow,
)

# ------------------------------------------------------------------- reports table


def save_report(
    store: Store,
    tx: Connection,
    *,
    kind: str,
    as_of: date,
    schema_version: str,
    json_path: str,
    html_path: str,
    run_id: str | None,
) -> None:
    """Insert or replace the ``reports`` row of (``kind``, ``as_of``) in ``tx``.

    Parameters
    ----------
    kind
        ``daily`` or ``weekly``.
    json_path, html_path
        Where the report's files were written.
    run_id
        The flow run that built it; None for a re-render from the command line.
    """
    store.upsert(
        tx,
        REPORTS,
        [
            {
                "kind": kind,
                "as_of": as_of,
                "schema_version": schema_version,
                "json_path": json_path,
                "html_path": html_path,
                "created_at": utcnow(),
                "run_id": run_id,
            }
        ],
        ("kind", "as_of"),
    )


def reports_on(store: Store, as_of: date) -> pd.DataFrame:
    """The reports registered for ``as_of``: ``kind, json_path, html_path``."""
    return store.select(
        select(REPORTS.c.kind, REPORTS.c.json_path, REPORTS.c.html_path).where(
            REPORTS.c.as_of == as_of
        )
    )


# --------------------------------------------------------------------- NAV, book


def nav_history(store: Store, as_of: date) -> pd.DataFrame:
    """The NAV snapshots up to ``as_of``, oldest first: ``as_of, nav, cash`` (USD)."""
    return store.select(
        select(NAV_SNAPSHOTS.c.as_of, NAV_SNAPSHOTS.c.nav, NAV_SNAPSHOTS.c.cash)
        .where(NAV_SNAPSHOTS.c.as_of <= as_of)
        .order_by(NAV_SNAPSHOTS.c.as_of)
    )


def nav_on(store: Store, as_of: date) -> pd.DataFrame:
    """The NAV snapshot of ``as_of`` (no row before the book stage ran): ``nav, cash`` (USD)."""
    return store.select(
        select(NAV_SNAPSHOTS.c.nav, NAV_SNAPSHOTS.c.cash).where(NAV_SNAPSHOTS.c.as_of == as_of)
    )


def latest_nav(store: Store) -> dict[str, Any] | None:
    """The newest NAV snapshot row (every column; ``nav``, ``cash`` in USD), or None."""
    frame = store.select(select(NAV_SNAPSHOTS).order_by(NAV_SNAPSHOTS.c.as_of.desc()).limit(1))
    return None if frame.empty else dict(frame.iloc[0])


def positions_on(store: Store, as_of: date) -> pd.DataFrame:
    """The holdings at the close of ``as_of``: ``symbol, qty, price, value`` (USD) and
    ``weight`` (fraction of NAV)."""
    return store.select(
        select(
            POSITION_SNAPSHOTS.c.symbol,
            POSITION_SNAPSHOTS.c.qty,
            POSITION_SNAPSHOTS.c.price,
            POSITION_SNAPSHOTS.c.value,
            POSITION_SNAPSHOTS.c.weight,
        ).where(POSITION_SNAPSHOTS.c.as_of == as_of)
    )


def latest_positions_date(store: Store, as_of: date) -> date | None:
    """The newest position-snapshot date on or before ``as_of``, or None."""
    latest: date | None = store.select(
        select(func.max(POSITION_SNAPSHOTS.c.as_of)).where(POSITION_SNAPSHOTS.c.as_of <= as_of)
    ).iloc[0, 0]
    return latest


def avg_cost_before(store: Store, symbol: str, as_of: date) -> float | None:
    """The average cost (USD per share) of ``symbol`` in the newest position snapshot
    strictly before ``as_of``; None when it was not held before."""
    cost = store.select(
        select(POSITION_SNAPSHOTS.c.avg_cost)
        .where(POSITION_SNAPSHOTS.c.symbol == symbol, POSITION_SNAPSHOTS.c.as_of < as_of)
        .order_by(POSITION_SNAPSHOTS.c.as_of.desc())
        .limit(1)
    )
    return float(cost.iloc[0, 0]) if len(cost) else None


def sell_fills(store: Store, start: date, end: date) -> pd.DataFrame:
    """The sell fills of ``[start, end]``: ``as_of, symbol, qty, price`` (USD per share) and
    ``commission`` (USD)."""
    return store.select(
        select(FILLS.c.as_of, FILLS.c.symbol, FILLS.c.qty, FILLS.c.price, FILLS.c.commission).where(
            FILLS.c.side == "sell", FILLS.c.as_of >= start, FILLS.c.as_of <= end
        )
    )


def fills_between(store: Store, start: date, end: date) -> pd.DataFrame:
    """The fills of ``[start, end]`` in the order they were booked: ``as_of, symbol, side,
    qty, price`` (USD per share), ``commission`` (USD)."""
    return store.select(
        select(
            FILLS.c.as_of,
            FILLS.c.symbol,
            FILLS.c.side,
            FILLS.c.qty,
            FILLS.c.price,
            FILLS.c.commission,
        )
        .where(FILLS.c.as_of >= start, FILLS.c.as_of <= end)
        .order_by(FILLS.c.as_of, FILLS.c.id)
    )


def fills_on(store: Store, as_of: date) -> pd.DataFrame:
    """The fills of ``as_of``: ``symbol, side, qty, price`` (USD per share), ``commission``
    (USD)."""
    return store.select(
        select(FILLS.c.symbol, FILLS.c.side, FILLS.c.qty, FILLS.c.price, FILLS.c.commission).where(
            FILLS.c.as_of == as_of
        )
    )


# ------------------------------------------------------------------------- orders


def orders_on(store: Store, as_of: date) -> pd.DataFrame:
    """The orders of ``as_of`` as the daily report lists them: ``symbol, side, qty, status,
    fill_price`` (average fill price, USD, null until filled), ``client_order_id, reason``."""
    return store.select(
        select(
            ORDERS.c.symbol,
            ORDERS.c.side,
            ORDERS.c.qty,
            ORDERS.c.status,
            ORDERS.c.filled_avg_price.label("fill_price"),
            ORDERS.c.client_order_id,
            ORDERS.c.reason,
        ).where(ORDERS.c.as_of == as_of)
    )


def orders_in_sequence(store: Store, as_of: date) -> pd.DataFrame:
    """The orders of ``as_of`` in the order they were created: ``symbol, side, qty, status,
    client_order_id, filled_avg_price`` (USD, null until filled)."""
    return store.select(
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


def order_count(store: Store, start: date, end: date) -> int:
    """How many orders were planned for the sessions in ``[start, end]``."""
    counted = store.select(
        select(func.count())
        .select_from(ORDERS)
        .where(ORDERS.c.as_of >= start, ORDERS.c.as_of <= end)
    )
    return int(counted.iloc[0, 0])


def sent_order_statuses(store: Store) -> pd.DataFrame:
    """The ``status`` of every order ever sent to the broker (all but ``planned``)."""
    return store.select(select(ORDERS.c.status).where(ORDERS.c.status != "planned"))


def rejections_on(store: Store, as_of: date) -> pd.DataFrame:
    """The orders the checks refused on ``as_of``: ``symbol, reason``."""
    return store.select(
        select(ORDER_REJECTIONS.c.symbol, ORDER_REJECTIONS.c.reason).where(
            ORDER_REJECTIONS.c.as_of == as_of
        )
    )


# ---------------------------------------------------------- targets, signals, risk


def targets_on(store: Store, as_of: date) -> pd.DataFrame:
    """The target weights of ``as_of``: ``symbol, weight`` (fraction of NAV, ``CASH``
    included)."""
    return store.select(select(TARGETS.c.symbol, TARGETS.c.weight).where(TARGETS.c.as_of == as_of))


def latest_targets_date(store: Store, as_of: date) -> date | None:
    """The newest date with target weights on or before ``as_of``, or None."""
    latest: date | None = store.select(
        select(func.max(TARGETS.c.as_of)).where(TARGETS.c.as_of <= as_of)
    ).iloc[0, 0]
    return latest


def signals_on(store: Store, as_of: date) -> pd.DataFrame:
    """The strategy signals of ``as_of``: ``symbol, signal, confidence, reason,
    long_eligible``."""
    return store.select(
        select(
            SIGNALS.c.symbol,
            SIGNALS.c.signal,
            SIGNALS.c.confidence,
            SIGNALS.c.reason,
            SIGNALS.c.long_eligible,
        ).where(SIGNALS.c.as_of == as_of)
    )


def signals_before(store: Store, as_of: date) -> pd.DataFrame:
    """The signals of the newest session before ``as_of`` that has any: ``as_of, symbol,
    signal`` (empty on the first session)."""
    previous = store.select(select(func.max(SIGNALS.c.as_of)).where(SIGNALS.c.as_of < as_of))
    day = previous.iloc[0, 0]
    if day is None or pd.isna(day):
        return pd.DataFrame(columns=["as_of", "symbol", "signal"])
    return store.select(
        select(SIGNALS.c.as_of, SIGNALS.c.symbol, SIGNALS.c.signal).where(SIGNALS.c.as_of == day)
    )


def regime_record_on(store: Store, as_of: date) -> dict[str, Any] | None:
    """The regime row of ``as_of``: ``regime, vix`` (the close it came from), ``vix_date``,
    ``reason``; None before the regime stage ran."""
    rows = store.select(
        select(REGIMES.c.regime, REGIMES.c.vix, REGIMES.c.vix_date, REGIMES.c.reason).where(
            REGIMES.c.as_of == as_of
        )
    )
    return None if rows.empty else dict(rows.iloc[0])


def optimization_on(store: Store, as_of: date) -> dict[str, Any] | None:
    """How the targets of ``as_of`` were built: ``method, reason, skipped`` (JSON list of
    ``[symbol, why]``); None before the optimize stage ran."""
    rows = store.select(
        select(OPTIMIZATIONS.c.method, OPTIMIZATIONS.c.reason, OPTIMIZATIONS.c.skipped).where(
            OPTIMIZATIONS.c.as_of == as_of
        )
    )
    return None if rows.empty else dict(rows.iloc[0])


def risk_events_on(store: Store, as_of: date, kind: str) -> pd.DataFrame:
    """The risk events of one ``kind`` on ``as_of`` (e.g. ``buy_block``: a buy signal the
    risk stage turned down), in order: ``symbol, reason``."""
    return store.select(
        select(RISK_EVENTS.c.symbol, RISK_EVENTS.c.reason)
        .where(RISK_EVENTS.c.as_of == as_of, RISK_EVENTS.c.kind == kind)
        .order_by(RISK_EVENTS.c.id)
    )


def regime_on(store: Store, as_of: date) -> str | None:
    """The market regime recorded for ``as_of``, or None."""
    regime = store.select(select(REGIMES.c.regime).where(REGIMES.c.as_of == as_of))
    return None if regime.empty else str(regime.iloc[0, 0])


def risk_decisions(store: Store, as_of: date) -> pd.DataFrame:
    """Every risk decision up to ``as_of``, oldest first (all columns: ``level``,
    ``drawdown`` and ``distance_to_next`` as fractions, ``peak_nav``/``nav`` in USD,
    ``kill_switch``, ``actions`` JSON, ...)."""
    return store.select(
        select(RISK_DECISIONS)
        .where(RISK_DECISIONS.c.as_of <= as_of)
        .order_by(RISK_DECISIONS.c.as_of)
    )


def risk_decision_on(store: Store, as_of: date) -> pd.DataFrame:
    """The risk decision of ``as_of`` (no row before the risk stage ran): ``level,
    kill_switch, drawdown`` (a fraction of the peak NAV), ``peak_nav`` (USD)."""
    return store.select(
        select(
            RISK_DECISIONS.c.level,
            RISK_DECISIONS.c.kill_switch,
            RISK_DECISIONS.c.drawdown,
            RISK_DECISIONS.c.peak_nav,
        ).where(RISK_DECISIONS.c.as_of == as_of)
    )


# ------------------------------------------------------------- data quality, runs


def quality_report_on(store: Store, as_of: date) -> pd.DataFrame:
    """The data-quality report of ``as_of`` (every column: ``id, status, blocking,
    warnings``, ...); empty before validation ran."""
    return store.select(select(DQ_REPORTS).where(DQ_REPORTS.c.as_of == as_of))


def quality_findings(store: Store, report_id: int) -> pd.DataFrame:
    """The findings of data-quality report ``report_id``: ``series, date, check, severity,
    message``."""
    return store.select(
        select(
            DQ_FINDINGS.c.series,
            DQ_FINDINGS.c.date,
            DQ_FINDINGS.c.check,
            DQ_FINDINGS.c.severity,
            DQ_FINDINGS.c.message,
        ).where(DQ_FINDINGS.c.report_id == report_id)
    )


def stage_runs(store: Store, flow: str, as_of: date) -> pd.DataFrame:
    """The stage checkpoints of (``flow``, ``as_of``): ``stage, duration_ms`` (milliseconds),
    ``status, attempts, error``."""
    return store.select(
        select(
            CHECKPOINTS.c.stage,
            CHECKPOINTS.c.duration_ms,
            CHECKPOINTS.c.status,
            CHECKPOINTS.c.attempts,
            CHECKPOINTS.c.error,
        ).where(CHECKPOINTS.c.flow == flow, CHECKPOINTS.c.as_of == as_of)
    )


def flow_runs(store: Store, flow: str, as_of: date) -> pd.DataFrame:
    """Every run of ``flow`` for a session up to ``as_of``: ``as_of, status``."""
    return store.select(
        select(RUNS.c.as_of, RUNS.c.status).where(RUNS.c.flow == flow, RUNS.c.as_of <= as_of)
    )


# ---------------------------------------------------------------------- totals


def row_counts(store: Store) -> dict[str, int]:
    """How many rows ``data_quality_reports``, ``orders`` and ``fills`` hold (by table name)."""
    return {
        table.name: int(store.select(select(func.count()).select_from(table)).iloc[0, 0])
        for table in (DQ_REPORTS, ORDERS, FILLS)
    }


def bar_counts(store: Store) -> pd.DataFrame:
    """How many bars are stored per series: ``symbol, n``."""
    return store.select(select(BARS.c.symbol, func.count().label("n")).group_by(BARS.c.symbol))
