"""The registry of rendered reports (files under ``TILLER_HOME/reports``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel


class ReportRecord(SQLModel, table=True):
    """One daily or weekly report: where its JSON and HTML are, and which run wrote them."""

    __tablename__ = "reports"

    kind: str = Field(primary_key=True, max_length=10)  # daily | weekly
    as_of: dt.date = Field(primary_key=True)
    schema_version: str = Field(max_length=10)
    json_path: str = Field(max_length=500)
    html_path: str = Field(max_length=500)
    created_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    run_id: str | None = Field(default=None, foreign_key="flow_runs.id", max_length=36)
