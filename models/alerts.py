"""The alert log: every notification Tiller tried to send, and what became of it.

Cooldowns are read from this table (so they survive restarts) and failed
notifications are listed in the next report.  Channel URLs are never stored:
they may hold tokens; ``channels`` only counts them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel


class AlertLog(SQLModel, table=True):
    """One alert: sent, suppressed by its cooldown, failed, or with no channel configured."""

    __tablename__ = "alert_log"
    __table_args__ = (
        Index("ix_alert_log_key_created_at", "key", "created_at"),
        Index("ix_alert_log_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    level: str = Field(max_length=10)  # INFO | WARNING | CRITICAL | EMERGENCY
    # risk_level_change | emergency_stop | kill_switch | data_quality | order_failures |
    # source_down | broker_down | flow_failed | summary
    trigger: str = Field(max_length=40)
    key: str = Field(max_length=200)  # cooldown key: trigger + subject
    title: str = Field(max_length=300)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=20)  # sent | suppressed_cooldown | failed | no_channel
    channels: int = 0  # how many channel URLs were addressed
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
