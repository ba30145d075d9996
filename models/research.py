"""Research sweeps and walk-forward studies: one row per study, one per computed point."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel


class SweepRun(SQLModel, table=True):
    """A sweep or walk-forward study, identified by its grid (the same grid resumes it)."""

    __tablename__ = "sweep_runs"

    sweep_id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=80)
    kind: str = Field(max_length=20)  # sweep | walkforward
    grid: str = Field(sa_column=Column(Text, nullable=False))  # JSON: the grid as read
    created_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SweepPoint(SQLModel, table=True):
    """One computed point: a backtest of one configuration over one window.

    ``point_hash`` is the SHA-256 of the point's full resolved configuration, its window
    and its data sources, so a rerun or a resumed study computes nothing twice."""

    __tablename__ = "sweep_points"

    sweep_id: str = Field(primary_key=True, foreign_key="sweep_runs.sweep_id", max_length=40)
    point_hash: str = Field(primary_key=True, max_length=64)
    label: str = Field(max_length=200)
    params: str = Field(sa_column=Column(Text, nullable=False))  # JSON {dotted key: value}
    profile: str = Field(max_length=200)
    start: dt.date
    end: dt.date
    metrics: str = Field(sa_column=Column(Text, nullable=False))  # JSON headline metrics
    nav: str = Field(sa_column=Column(Text, nullable=False))  # JSON {"dates": [...], "nav": [...]}
    seconds: float
    worker: str = Field(max_length=200)
    computed_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
