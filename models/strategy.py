"""Tables of the strategy core: factors, regime, signals, risk state and decisions, targets.

Keyed by ``as_of`` (one current row set per session; a forced rerun replaces
it) and carrying the ``run_id`` that wrote them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel


class FactorValue(SQLModel, table=True):
    """One factor of one asset at ``as_of`` (long format)."""

    __tablename__ = "factor_values"

    as_of: dt.date = Field(primary_key=True)
    symbol: str = Field(primary_key=True, max_length=20)
    factor: str = Field(primary_key=True, max_length=40)
    value: float
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)


class FactorGap(SQLModel, table=True):
    """A factor an asset does not have at ``as_of``, and why (e.g. too little history)."""

    __tablename__ = "factor_gaps"

    as_of: dt.date = Field(primary_key=True)
    symbol: str = Field(primary_key=True, max_length=20)
    factor: str = Field(primary_key=True, max_length=40)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)


class RegimeRecord(SQLModel, table=True):
    """The market regime of ``as_of`` and the VIX close it came from."""

    __tablename__ = "regimes"

    as_of: dt.date = Field(primary_key=True)
    regime: str = Field(max_length=10)
    vix: float
    vix_date: dt.date
    reason: str = Field(sa_column=Column(Text, nullable=False))
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)


class SignalRecord(SQLModel, table=True):
    """One asset's signal at ``as_of`` with its confidence and reason."""

    __tablename__ = "signals"

    as_of: dt.date = Field(primary_key=True)
    symbol: str = Field(primary_key=True, max_length=20)
    signal: str = Field(max_length=12)
    confidence: float
    long_eligible: bool
    reason: str = Field(sa_column=Column(Text, nullable=False))
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)


class RiskStateRecord(SQLModel, table=True):
    """The persisted risk state of a portfolio (one row per portfolio); survives restarts."""

    __tablename__ = "risk_state"

    portfolio: str = Field(primary_key=True, max_length=40)
    as_of: dt.date | None = None
    state: str = Field(sa_column=Column(Text, nullable=False))  # JSON of RiskState.to_dict()
    updated_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RiskDecisionRecord(SQLModel, table=True):
    """The risk stage's decision for ``as_of``: level, drawdown, limits, kill switch."""

    __tablename__ = "risk_decisions"

    as_of: dt.date = Field(primary_key=True)
    portfolio: str = Field(primary_key=True, max_length=40)
    level: int
    drawdown: float
    nav: float
    peak_nav: float
    distance_to_next: float | None = None
    exposure_scale: float
    buy_allowed: bool
    kill_switch: bool
    halted: bool
    actions: str = Field(sa_column=Column(Text, nullable=False))  # JSON list
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)


class RiskEvent(SQLModel, table=True):
    """Every risk decision with its reason (level changes, stops, caps, kill switch, resets)."""

    __tablename__ = "risk_events"
    __table_args__ = (Index("ix_risk_events_as_of", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    as_of: dt.date
    portfolio: str = Field(max_length=40)
    kind: str = Field(max_length=40)
    symbol: str | None = Field(default=None, max_length=20)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    run_id: str | None = Field(default=None, foreign_key="flow_runs.id", max_length=36)
    created_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class TargetWeight(SQLModel, table=True):
    """The optimiser's target weight of one asset (or ``CASH``) at ``as_of``."""

    __tablename__ = "target_weights"

    as_of: dt.date = Field(primary_key=True)
    symbol: str = Field(primary_key=True, max_length=20)
    weight: float
    raw_weight: float | None = None
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)


class OptimizationRecord(SQLModel, table=True):
    """How the targets of ``as_of`` were built: method (or fallback), reason, turnover."""

    __tablename__ = "optimizations"

    as_of: dt.date = Field(primary_key=True)
    method: str = Field(max_length=30)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    turnover: float
    skipped: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of [symbol, why]
    run_id: str = Field(foreign_key="flow_runs.id", max_length=36)
