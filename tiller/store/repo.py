"""The store's read/write operations, mapping frames and domain types to the tables.

Every write takes a :class:`sqlalchemy.Connection` so a stage can put its
output and its checkpoint in one transaction (``with store.transaction() as
tx: ...``): either both land or neither does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

import models
from tiller.store.engine import connect
from tiller.store.migrate import upgrade

BARS: Table = models.Bar.__table__  # type: ignore[attr-defined]
MACRO: Table = models.MacroObservation.__table__  # type: ignore[attr-defined]
QUARANTINE: Table = models.QuarantinedBar.__table__  # type: ignore[attr-defined]
RUNS: Table = models.FlowRun.__table__  # type: ignore[attr-defined]
CHECKPOINTS: Table = models.StageCheckpoint.__table__  # type: ignore[attr-defined]
INGEST_LOG: Table = models.IngestLog.__table__  # type: ignore[attr-defined]
CROSS_CHECKS: Table = models.CrossSourceCheck.__table__  # type: ignore[attr-defined]
DQ_REPORTS: Table = models.DataQualityReport.__table__  # type: ignore[attr-defined]
DQ_FINDINGS: Table = models.DataQualityFinding.__table__  # type: ignore[attr-defined]
FACTORS: Table = models.FactorValue.__table__  # type: ignore[attr-defined]
FACTOR_GAPS: Table = models.FactorGap.__table__  # type: ignore[attr-defined]
REGIMES: Table = models.RegimeRecord.__table__  # type: ignore[attr-defined]
SIGNALS: Table = models.SignalRecord.__table__  # type: ignore[attr-defined]
RISK_STATE: Table = models.RiskStateRecord.__table__  # type: ignore[attr-defined]
RISK_DECISIONS: Table = models.RiskDecisionRecord.__table__  # type: ignore[attr-defined]
RISK_EVENTS: Table = models.RiskEvent.__table__  # type: ignore[attr-defined]
TARGETS: Table = models.TargetWeight.__table__  # type: ignore[attr-defined]
OPTIMIZATIONS: Table = models.OptimizationRecord.__table__  # type: ignore[attr-defined]
ORDERS: Table = models.OrderRecord.__table__  # type: ignore[attr-defined]
ORDER_REJECTIONS: Table = models.OrderRejection.__table__  # type: ignore[attr-defined]
FILLS: Table = models.FillRecord.__table__  # type: ignore[attr-defined]
BOOK_STATE: Table = models.BookState.__table__  # type: ignore[attr-defined]
NAV_SNAPSHOTS: Table = models.NavSnapshotRecord.__table__  # type: ignore[attr-defined]
POSITION_SNAPSHOTS: Table = models.PositionSnapshot.__table__  # type: ignore[attr-defined]
RECONCILIATIONS: Table = models.Reconciliation.__table__  # type: ignore[attr-defined]
AUDIT_EVENTS: Table = models.AuditEvent.__table__  # type: ignore[attr-defined]
REPORTS: Table = models.ReportRecord.__table__  # type: ignore[attr-defined]
BACKTEST_RUNS: Table = models.BacktestRun.__table__  # type: ignore[attr-defined]
BACKTEST_DAYS: Table = models.BacktestDay.__table__  # type: ignore[attr-defined]
BACKTEST_TRADES: Table = models.BacktestTrade.__table__  # type: ignore[attr-defined]
BACKTEST_EVENTS: Table = models.BacktestEvent.__table__  # type: ignore[attr-defined]
STRESS_RESULTS: Table = models.StressResult.__table__  # type: ignore[attr-defined]
SWEEP_RUNS: Table = models.SweepRun.__table__  # type: ignore[attr-defined]
SWEEP_POINTS: Table = models.SweepPoint.__table__  # type: ignore[attr-defined]

_CHUNK = 5_000


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Checkpoint:
    """A stage's persisted state for (flow, as_of)."""

    flow: str
    as_of: date
    stage: str
    status: str
    run_id: str
    attempts: int
    input_fingerprint: str
    output_ref: str | None
    duration_ms: float
    error: str | None


class Store:
    """The database behind Tiller: market data, runs, checkpoints and stage outputs."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, url: str, migrate: bool = True) -> Store:
        """Connect to ``url`` and (by default) bring its schema to the newest revision."""
        engine = connect(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as connection:
            yield connection

    # ----------------------------------------------------------------- upserts
    def _insert(self, table: Table) -> Any:
        return (postgresql if self.dialect == "postgresql" else sqlite).insert(table)

    def upsert(
        self, tx: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> int:
        """Insert ``rows`` into ``table``, updating the non-key columns where ``keys`` exist."""
        if not rows:
            return 0
        stmt = self._insert(table)
        updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)
        for i in range(0, len(rows), _CHUNK):
            tx.execute(stmt, list(rows[i : i + _CHUNK]))
        return len(rows)

    def insert_new(
        self, tx: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> None:
        """Insert ``rows`` whose ``keys`` are not in ``table`` yet; existing rows stay."""
        if rows:
            statement = self._insert(table).on_conflict_do_nothing(index_elements=list(keys))
            tx.execute(statement, list(rows))

    def upsert_bars(self, tx: Connection, symbol: str, frame: pd.DataFrame, source: str) -> int:
        """Insert or update the bars of ``symbol`` (canonical bar frame); returns rows written."""
        now = utcnow()
        records = _records(frame, ["open", "high", "low", "close", "adj_close", "volume"])
        rows = [{"symbol": symbol, **r, "source": source, "ingested_at": now} for r in records]
        return self.upsert(tx, BARS, rows, ("symbol", "date"))

    def upsert_macro(self, tx: Connection, series_id: str, frame: pd.DataFrame, source: str) -> int:
        """Insert or update the observations of macro series ``series_id``."""
        now = utcnow()
        records = _records(frame, ["value"])
        rows = [
            {"series_id": series_id, **r, "source": source, "ingested_at": now} for r in records
        ]
        return self.upsert(tx, MACRO, rows, ("series_id", "date"))

    def quarantine_bars(
        self,
        tx: Connection,
        refused: Sequence[tuple[str, date, str, str, str]],
        as_of: date,
        run_id: str,
    ) -> int:
        """Move bars out of ``bars`` into ``quarantined_bars``.

        ``refused`` holds ``(symbol, date, check, severity, reason)``, one per bar (the
        first reason wins).  A bar no longer stored (already quarantined by an earlier run)
        has its quarantine row refreshed.  Returns the number of bars moved.
        """
        if not refused:
            return 0
        wanted = {(s, d): (c, sev, r) for s, d, c, sev, r in reversed(refused)}
        symbols = sorted({s for s, _ in wanted})
        days = [d for _, d in wanted]
        stored = self.load_bars(symbols, min(days), max(days), tx=tx)
        stored["day"] = stored["date"].dt.date
        rows = []
        moved = 0
        now = utcnow()
        by_key = {(r.symbol, r.day): r for r in stored.itertuples()}
        for (symbol, day), (check, severity, reason) in wanted.items():
            bar = by_key.get((symbol, day))
            values = (
                {
                    c: (None if pd.isna(getattr(bar, c)) else float(getattr(bar, c)))
                    for c in ("open", "high", "low", "close", "adj_close", "volume")
                }
                if bar is not None
                else {}
            )
            rows.append(
                {
                    "symbol": symbol,
                    "date": day,
                    "open": values.get("open"),
                    "high": values.get("high"),
                    "low": values.get("low"),
                    "close": values.get("close"),
                    "adj_close": values.get("adj_close"),
                    "volume": values.get("volume"),
                    "source": str(bar.source) if bar is not None else "",
                    "check": check,
                    "severity": severity,
                    "reason": reason,
                    "as_of": as_of,
                    "run_id": run_id,
                    "quarantined_at": now,
                }
            )
            if bar is not None:
                tx.execute(BARS.delete().where(BARS.c.symbol == symbol, BARS.c.date == day))
                moved += 1
        self.upsert(tx, QUARANTINE, rows, ("symbol", "date"))
        return moved

    def release_quarantine(self, tx: Connection, accepted: Sequence[tuple[str, date]]) -> None:
        """Forget the quarantine of bars a later run accepted (a corrected source)."""
        for symbol, day in accepted:
            tx.execute(
                QUARANTINE.delete().where(QUARANTINE.c.symbol == symbol, QUARANTINE.c.date == day)
            )

    def quarantined(self, as_of: date | None = None) -> pd.DataFrame:
        """The quarantined bars (of the run for ``as_of``, or all), newest first."""
        query = select(QUARANTINE)
        if as_of is not None:
            query = query.where(QUARANTINE.c.as_of == as_of)
        return self._frame(query.order_by(QUARANTINE.c.date.desc()), None)

    # ------------------------------------------------------------------- reads
    def last_bar_dates(self, on_or_before: date | None = None) -> dict[str, date]:
        """The newest stored bar date per symbol (optionally not after ``on_or_before``)."""
        query = select(BARS.c.symbol, func.max(BARS.c.date))
        if on_or_before is not None:
            query = query.where(BARS.c.date <= on_or_before)
        with self.engine.connect() as connection:
            rows = connection.execute(query.group_by(BARS.c.symbol)).all()
        return {str(symbol): last for symbol, last in rows}

    def last_macro_dates(self, on_or_before: date | None = None) -> dict[str, date]:
        """The newest stored observation date per macro series."""
        query = select(MACRO.c.series_id, func.max(MACRO.c.date))
        if on_or_before is not None:
            query = query.where(MACRO.c.date <= on_or_before)
        with self.engine.connect() as connection:
            rows = connection.execute(query.group_by(MACRO.c.series_id)).all()
        return {str(series): last for series, last in rows}

    def load_bars(
        self,
        symbols: Sequence[str],
        start: date | None = None,
        end: date | None = None,
        tx: Connection | None = None,
    ) -> pd.DataFrame:
        """Bars of ``symbols`` in ``[start, end]`` as a long frame sorted by symbol, date.

        Columns: ``symbol, date (datetime64), open, high, low, close, adj_close, volume, source``.
        """
        query = select(
            BARS.c.symbol,
            BARS.c.date,
            BARS.c.open,
            BARS.c.high,
            BARS.c.low,
            BARS.c.close,
            BARS.c.adj_close,
            BARS.c.volume,
            BARS.c.source,
        ).where(BARS.c.symbol.in_(list(symbols)))
        if start is not None:
            query = query.where(BARS.c.date >= start)
        if end is not None:
            query = query.where(BARS.c.date <= end)
        query = query.order_by(BARS.c.symbol, BARS.c.date)
        frame = self._frame(query, tx)
        frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
        for column in ("open", "high", "low", "close", "adj_close", "volume"):
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
        return frame

    def load_macro(self, series: Sequence[str], end: date | None = None) -> pd.DataFrame:
        """Macro observations as a long frame ``series_id, date, value, source``."""
        query = select(MACRO.c.series_id, MACRO.c.date, MACRO.c.value, MACRO.c.source).where(
            MACRO.c.series_id.in_(list(series))
        )
        if end is not None:
            query = query.where(MACRO.c.date <= end)
        frame = self._frame(query.order_by(MACRO.c.series_id, MACRO.c.date), None)
        frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
        frame["value"] = pd.to_numeric(frame["value"]).astype("float64")
        return frame

    def _frame(self, query: Any, tx: Connection | None) -> pd.DataFrame:
        def run(connection: Connection) -> pd.DataFrame:
            result = connection.execute(query)
            columns = list(result.keys())
            # plain tuples: pandas probes SQLAlchemy Row objects attribute by attribute (slow)
            return pd.DataFrame.from_records([tuple(row) for row in result], columns=columns)

        if tx is not None:
            return run(tx)
        with self.engine.connect() as connection:
            return run(connection)

    # ------------------------------------------------------- runs, checkpoints
    def start_run(
        self,
        flow: str,
        as_of: date,
        force: bool,
        prefect_id: str | None,
        run_id: str | None = None,
    ) -> str:
        """Record a new flow run (its own transaction) and return its id.

        Earlier runs of the same (flow, as_of) still marked ``running`` were
        killed mid-way; they are marked ``interrupted``.
        """
        run_id = run_id or str(uuid.uuid4())
        with self.transaction() as tx:
            tx.execute(
                update(RUNS)
                .where(RUNS.c.flow == flow, RUNS.c.as_of == as_of, RUNS.c.status == "running")
                .values(status="interrupted")
            )
            tx.execute(
                RUNS.insert().values(
                    id=run_id,
                    flow=flow,
                    as_of=as_of,
                    status="running",
                    force=force,
                    started_at=utcnow(),
                    prefect_flow_run_id=prefect_id,
                    stages="{}",
                )
            )
        return run_id

    def running_runs(self, flow: str, as_of: date) -> list[dict[str, Any]]:
        """Runs of (flow, as_of) still marked ``running`` (a new run will mark them
        ``interrupted``): their ids and Prefect flow-run ids."""
        query = select(RUNS.c.id, RUNS.c.prefect_flow_run_id).where(
            RUNS.c.flow == flow, RUNS.c.as_of == as_of, RUNS.c.status == "running"
        )
        return self._frame(query, None).to_dict("records")

    def finish_run(
        self, run_id: str, status: str, stages: dict[str, str], error: str | None = None
    ) -> None:
        """Record how a run ended and what each stage it reached did."""
        with self.transaction() as tx:
            tx.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id)
                .values(status=status, finished_at=utcnow(), stages=json.dumps(stages), error=error)
            )

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The flow run row (``stages`` decoded), or None."""
        with self.engine.connect() as connection:
            row = connection.execute(select(RUNS).where(RUNS.c.id == run_id)).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["stages"] = json.loads(out["stages"] or "{}")
        return out

    def checkpoint(
        self, flow: str, as_of: date, stage: str, tx: Connection | None = None
    ) -> Checkpoint | None:
        """The stored checkpoint of ``stage`` for (flow, as_of), if any."""
        query = select(CHECKPOINTS).where(
            CHECKPOINTS.c.flow == flow, CHECKPOINTS.c.as_of == as_of, CHECKPOINTS.c.stage == stage
        )

        def read(connection: Connection) -> Checkpoint | None:
            row = connection.execute(query).mappings().first()
            if row is None:
                return None
            return Checkpoint(
                flow=row["flow"],
                as_of=row["as_of"],
                stage=row["stage"],
                status=row["status"],
                run_id=row["run_id"],
                attempts=row["attempts"],
                input_fingerprint=row["input_fingerprint"],
                output_ref=row["output_ref"],
                duration_ms=row["duration_ms"],
                error=row["error"],
            )

        if tx is not None:
            return read(tx)
        with self.engine.connect() as connection:
            return read(connection)

    def checkpoints(self, flow: str, as_of: date) -> list[Checkpoint]:
        with self.engine.connect() as connection:
            stages = connection.execute(
                select(CHECKPOINTS.c.stage)
                .where(CHECKPOINTS.c.flow == flow, CHECKPOINTS.c.as_of == as_of)
                .order_by(CHECKPOINTS.c.id)
            ).scalars()
            names = list(stages)
        return [c for s in names if (c := self.checkpoint(flow, as_of, s)) is not None]

    def write_checkpoint(
        self,
        tx: Connection,
        *,
        flow: str,
        as_of: date,
        stage: str,
        status: str,
        run_id: str,
        started_at: datetime,
        input_fingerprint: str,
        output_ref: str | None,
        error: str | None = None,
    ) -> None:
        """Insert or update the one checkpoint row of (flow, as_of, stage)."""
        finished = utcnow()
        previous = self.checkpoint(flow, as_of, stage, tx)
        values = {
            "flow": flow,
            "as_of": as_of,
            "stage": stage,
            "status": status,
            "run_id": run_id,
            "attempts": (previous.attempts + 1) if previous else 1,
            "started_at": started_at,
            "finished_at": finished,
            "duration_ms": (finished - started_at).total_seconds() * 1000.0,
            "input_fingerprint": input_fingerprint,
            "output_ref": output_ref,
            "error": error,
        }
        self.upsert(tx, CHECKPOINTS, [values], ("flow", "as_of", "stage"))

    # -------------------------------------------------------------- risk state
    def load_risk_state(self, portfolio: str) -> dict[str, Any] | None:
        """The persisted risk state of ``portfolio`` (a JSON dict); None before the first run."""
        query = select(RISK_STATE.c.state).where(RISK_STATE.c.portfolio == portfolio)
        with self.engine.connect() as connection:
            raw = connection.execute(query).scalar()
        return None if raw is None else dict(json.loads(raw))

    def save_risk_state(
        self, tx: Connection, portfolio: str, as_of: date | None, state: dict[str, Any]
    ) -> None:
        """Insert or replace the one risk-state row of ``portfolio``."""
        row = {
            "portfolio": portfolio,
            "as_of": as_of,
            "state": json.dumps(state, sort_keys=True, default=str),
            "updated_at": utcnow(),
        }
        self.upsert(tx, RISK_STATE, [row], ("portfolio",))

    def replace_for_as_of(self, tx: Connection, table: Table, as_of: date) -> None:
        """Delete a stage's earlier rows for ``as_of`` (a forced rerun replaces them)."""
        tx.execute(table.delete().where(table.c.as_of == as_of))

    # ---------------------------------------------------------------- generic
    def insert(self, tx: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Plain multi-row insert (stage outputs)."""
        if rows:
            tx.execute(table.insert(), list(rows))

    def insert_one(self, tx: Connection, table: Table, values: dict[str, Any]) -> int:
        """Insert one row and return its integer primary key."""
        result = tx.execute(table.insert().values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def select(self, query: Any) -> pd.DataFrame:
        """Run a read query and return a frame (reports, notebooks, tests)."""
        return self._frame(query, None)


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Frame rows as dicts with python ``date`` and floats (NaN -> None), built column-wise."""
    if frame.empty:
        return []
    values = [pd.to_datetime(frame["date"]).dt.date.tolist()]
    for column in columns:
        floats = frame[column].astype("float64").tolist()
        values.append([None if v != v else v for v in floats])  # v != v only for NaN
    names = ["date", *columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
