"""Ingest through the online SDK providers (local fakes on 127.0.0.1) chained with CSV:
fallback with the circuit breaker, and the cross-source deviation reaching validation."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import select

from tasks.ingest import ingest_stage
from tasks.validate import validate_stage
from tests.fakes.massive_server import massive_server
from tests.fakes.yahoo_server import yahoo_server
from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import CsvProvider
from tiller.store.repo import CROSS_CHECKS, DQ_FINDINGS, INGEST_LOG

from .conftest import MARKET
from .helpers import context

START, AS_OF = date(2024, 1, 2), date(2024, 3, 8)
KEY = "mK7_integration_key_0123456789"


def _real(symbol: str) -> pd.DataFrame:
    frame = CsvProvider(MARKET).fetch(SeriesRequest(symbol, SeriesKind.BAR, START, AS_OF))
    return frame.assign(date=frame["date"].dt.date)


def test_a_source_that_is_down_falls_back_and_its_breaker_opens(make_settings, sqlite_url) -> None:
    bars = {s: _real(s) for s in ("GLD", "SPY", "QQQ", "BTC-USD")} | {"^VIX": _real("VIX")}
    with yahoo_server(bars) as server:
        server.fail_next(503, "Service Unavailable", times=100)
        settings = make_settings(
            database_url=sqlite_url,
            data_sources=f"yfinance,csv:{MARKET}",
            history_start=START,
            data={"yfinance_url": server.url, "timeout_seconds": 2, "cross_check": False},
        )
        ctx = context(settings, AS_OF)
        ingest_stage(ctx)
    log = ctx.store.select(select(INGEST_LOG).where(INGEST_LOG.c.kind == "bar")).set_index("series")
    assert set(log["source"]) == {f"csv:{MARKET}"}
    assert log.loc["GLD", "attempts"].startswith("yfinance=error:server")
    # three failures open the breaker: later series skip yfinance without a call
    assert log.loc["BTC-USD", "attempts"].startswith("yfinance=circuit_open")
    stored = ctx.store.load_bars(["SPY"]).set_index("date")["close"]
    assert stored.loc["2024-03-08"] == pytest.approx(_real("SPY").iloc[-1]["close"])


def test_two_sources_that_disagree_are_flagged_by_validation(
    make_settings, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _real("SPY")
    spy.loc[spy.index[-1], "close"] *= 1.03  # the vendor's last close is 3% off
    spy.loc[spy.index[-1], "high"] = max(spy.iloc[-1]["high"], spy.iloc[-1]["close"])
    bars = {
        "SPY": spy,
        "GLD": _real("GLD"),
        "QQQ": _real("QQQ"),
        "X:BTCUSD": _real("BTC-USD"),
        "I:VIX": _real("VIX"),
    }
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    with massive_server(bars, KEY) as server:
        settings = make_settings(
            database_url=db_url,
            data_sources=f"massive,csv:{MARKET}",
            history_start=START,
            data={"massive_url": server.url, "timeout_seconds": 5},
        )
        ctx = context(settings, AS_OF)
        ingest_stage(ctx)
    stored = ctx.store.load_bars(["SPY", "VIX"])
    assert set(stored["source"]) == {"massive"}
    checks = ctx.store.select(select(CROSS_CHECKS))
    spy_checks = checks[checks["series"] == "SPY"].sort_values("date")
    assert len(spy_checks) == 5 and spy_checks["deviation"].iloc[:-1].max() < 1e-9
    # massive close = 1.03 x csv close -> |csv / massive - 1| = 1 - 1/1.03 = 2.91%
    assert spy_checks["deviation"].iloc[-1] == pytest.approx(1 - 1 / 1.03)
    report = validate_stage(ctx)
    assert report.status == "completed"
    findings = ctx.store.select(select(DQ_FINDINGS))
    flagged = findings[findings["check"] == "cross_source"]
    assert list(flagged["series"]) == ["SPY"] and list(flagged["severity"]) == ["warning"]
    assert pd.Timestamp(flagged["date"].iloc[0]).date() == AS_OF
