"""Tables of the foundation: market data, data quality, flow runs and stage checkpoints.

Units: prices in the instrument's quote currency (USD), volume in shares or
coins, timestamps in UTC (timezone-aware), ``as_of``/``date`` are session dates.
The schema is versioned by the Alembic migrations under ``sql/migrations``;
``sql/schema.sql`` is the generated DDL for reading.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


def _utc_column(nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


class Bar(SQLModel, table=True):
    """One daily OHLCV bar of a tradable asset or index, with the source that served it."""

    __tablename__ = "bars"

    symbol: str = Field(primary_key=True, max_length=20)
    date: dt.date = Field(primary_key=True)
    open: float
    high: float
    low: float
    close: float
    adj_close: float | None = None
    volume: float | None = None
    source: str = Field(max_length=300)
    ingested_at: dt.datetime = Field(sa_column=_utc_column())


class QuarantinedBar(SQLModel, table=True):
    """A bar a data-quality check refused: kept here, never in ``bars``, so no stage and no
    later session uses it.  Ingest fetches the session again on the next run; a corrected
    source replaces it (and its quarantine row is removed)."""

    __tablename__ = "quarantined_bars"

    symbol: str = Field(primary_key=True, max_length=20)
    date: dt.date = Field(primary_key=True)
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    adj_close: float | None = None
    volume: float | None = None
    source: str = Field(max_length=300)
    check: str = Field(max_length=40)
    severity: str = Field(max_length=20)  # blocking | quarantine
    reason: str = Field(sa_column=Column(Text, nullable=False))
    as_of: dt.date  # the run that found it
    run_id: str = Field(max_length=36)
    quarantined_at: dt.datetime = Field(sa_column=_utc_column())


class MacroObservation(SQLModel, table=True):
    """One observation of a macro series (FRED id); ``value`` is null where the source has none."""

    __tablename__ = "macro_observations"

    series_id: str = Field(primary_key=True, max_length=40)
    date: dt.date = Field(primary_key=True)
    value: float | None = None
    source: str = Field(max_length=300)
    ingested_at: dt.datetime = Field(sa_column=_utc_column())


class FlowRun(SQLModel, table=True):
    """One run of a flow (daily-rebalance, weekly-review) for one ``as_of``."""

    __tablename__ = "flow_runs"
    __table_args__ = (Index("ix_flow_runs_flow_as_of", "flow", "as_of"),)

    id: str = Field(primary_key=True, max_length=36)
    flow: str = Field(max_length=60)
    as_of: dt.date
    status: str = Field(max_length=20)  # running | completed | blocked | failed
    force: bool = False
    started_at: dt.datetime = Field(sa_column=_utc_column())
    finished_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    prefect_flow_run_id: str | None = Field(default=None, max_length=36)
    # {"stage": "completed" | "skipped" | "blocked" | "failed"} for the stages this run reached
    stages: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class StageCheckpoint(SQLModel, table=True):
    """The state of one stage of one flow for one ``as_of``; written with the stage's output.

    One row per (flow, as_of, stage): a rerun updates it, never adds a second.
    """

    __tablename__ = "stage_checkpoints"
    __table_args__ = (UniqueConstraint("flow", "as_of", "stage", name="uq_checkpoint_stage"),)

    id: int | None = Field(default=None, primary_key=True)
    flow: str = Field(max_length=60)
    as_of: dt.date
    stage: str = Field(max_length=40)
    status: str = Field(max_length=20)  # completed | failed
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)
    attempts: int = 1
    started_at: dt.datetime = Field(sa_column=_utc_column())
    finished_at: dt.datetime = Field(sa_column=_utc_column())
    duration_ms: float
    input_fingerprint: str = Field(max_length=64)
    output_ref: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class IngestLog(SQLModel, table=True):
    """What ingest did for one series in one run: the source that served it, how many rows."""

    __tablename__ = "ingest_log"
    __table_args__ = (Index("ix_ingest_log_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)
    as_of: dt.date
    series: str = Field(max_length=40)
    kind: str = Field(max_length=10)  # bar | macro
    status: str = Field(max_length=20)  # ingested | up_to_date | no_data | failed
    source: str | None = Field(default=None, max_length=300)
    rows: int = 0
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    attempts: str = Field(default="", sa_column=Column(Text, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class CrossSourceCheck(SQLModel, table=True):
    """A close served by two sources on the same session, and their relative deviation."""

    __tablename__ = "cross_source_checks"
    __table_args__ = (Index("ix_cross_source_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)
    as_of: dt.date
    series: str = Field(max_length=40)
    date: dt.date
    primary_source: str = Field(max_length=300)
    secondary_source: str = Field(max_length=300)
    primary_close: float
    secondary_close: float
    deviation: float  # |secondary / primary - 1|


class DataQualityReport(SQLModel, table=True):
    """The outcome of one validate stage: counts per severity and the overall status."""

    __tablename__ = "data_quality_reports"
    __table_args__ = (Index("ix_dq_reports_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)
    as_of: dt.date
    status: str = Field(max_length=20)  # passed | warnings | blocked
    series_checked: int
    rows_checked: int
    expectations_run: int
    blocking: int
    warnings: int
    created_at: dt.datetime = Field(sa_column=_utc_column())


class DataQualityFinding(SQLModel, table=True):
    """One failed check: which series, which date (if any), which check, and how bad."""

    __tablename__ = "data_quality_findings"
    __table_args__ = (Index("ix_dq_findings_report", "report_id"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="data_quality_reports.id")
    series: str = Field(max_length=40)
    date: dt.date | None = None
    check: str = Field(max_length=40)
    severity: str = Field(max_length=10)  # blocking | warning
    observed: float | None = None
    threshold: float | None = None
    message: str = Field(sa_column=Column(Text, nullable=False))
