"""Backtest and stress-test runs, kept apart from the paper portfolio's tables."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel


class BacktestRun(SQLModel, table=True):
    """One backtest: what was replayed, with which settings, and its headline metrics."""

    __tablename__ = "backtest_runs"

    run_id: str = Field(primary_key=True, max_length=40)
    label: str = Field(max_length=80)
    kind: str = Field(max_length=20, index=True)  # backtest | stress | compare
    start: dt.date
    end: dt.date
    cadence: str = Field(max_length=10)
    initial_capital: float
    config: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    metrics: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    timings: str = Field(sa_column=Column(Text, nullable=False))  # JSON, seconds per stage
    created_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class BacktestDay(SQLModel, table=True):
    """One session of a backtest: NAV, exposure, drawdown, risk level, trading and weights."""

    __tablename__ = "backtest_days"

    run_id: str = Field(primary_key=True, foreign_key="backtest_runs.run_id", max_length=40)
    as_of: dt.date = Field(primary_key=True)
    nav: float
    cash: float
    long_value: float
    exposure: float
    peak_nav: float
    drawdown: float
    level: int
    regime: str = Field(max_length=12)
    traded: float
    turnover: float
    commission: float
    slippage: float
    rebalanced: bool
    dividends: float
    weights: str = Field(sa_column=Column(Text, nullable=False))  # JSON {symbol: weight}


class BacktestTrade(SQLModel, table=True):
    """One fill of a backtest."""

    __tablename__ = "backtest_trades"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="backtest_runs.run_id", max_length=40, index=True)
    as_of: dt.date  # fill session
    order_date: dt.date
    symbol: str = Field(max_length=16)
    side: str = Field(max_length=4)
    qty: float
    price: float
    reference_price: float
    notional: float
    commission: float
    slippage: float
    client_order_id: str = Field(max_length=64)


class BacktestEvent(SQLModel, table=True):
    """One risk decision of a backtest, with its reason."""

    __tablename__ = "backtest_events"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="backtest_runs.run_id", max_length=40, index=True)
    as_of: dt.date
    kind: str = Field(max_length=40)
    symbol: str | None = Field(default=None, max_length=16)
    reason: str = Field(sa_column=Column(Text, nullable=False))


class StressResult(SQLModel, table=True):
    """One scenario of a stress test against its drawdown limit."""

    __tablename__ = "stress_results"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: str = Field(max_length=40, index=True)  # one `tiller stress` invocation
    scenario: str = Field(max_length=40)
    run_id: str = Field(foreign_key="backtest_runs.run_id", max_length=40)
    description: str = Field(max_length=200)
    start: dt.date
    end: dt.date
    max_drawdown: float
    drawdown_limit: float
    max_level: int
    passed: bool
    reason: str = Field(sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
