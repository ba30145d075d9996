"""The ingest stage: incremental, no look-ahead, sources recorded, all-or-nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tasks.ingest import ingest_stage
from tiller import calendars
from tiller.data.base import SeriesKind
from tiller.data.ingest import SeriesSpec, plan_ingest
from tiller.errors import DataError
from tiller.store.repo import BARS, INGEST_LOG, MACRO

from .conftest import MARKET
from .helpers import context, copy_market


def test_plan_fetches_only_missing_sessions_per_calendar() -> None:
    specs = [
        SeriesSpec("SPY", SeriesKind.BAR, "XNYS"),
        SeriesSpec("BTC-USD", SeriesKind.BAR, "24/7"),
        SeriesSpec("GLD", SeriesKind.BAR, "XNYS"),
    ]
    # Friday 2024-03-01 stored; as_of Saturday -> SPY has nothing to fetch, BTC has one day
    last = {"SPY": date(2024, 3, 1), "BTC-USD": date(2024, 3, 1)}
    plans = {p.spec.series: p for p in plan_ingest(specs, last, date(2024, 3, 2), date(2020, 1, 2))}
    assert plans["SPY"].request is None
    assert plans["BTC-USD"].request is not None
    assert (plans["BTC-USD"].request.start, plans["BTC-USD"].missing_sessions) == (
        date(2024, 3, 2),
        1,
    )
    gld = plans["GLD"].request
    assert gld is not None and gld.start == date(2020, 1, 2) and gld.end == date(2024, 3, 2)


def test_ingest_is_incremental_and_records_the_source(make_settings, db_url: str) -> None:
    settings = make_settings(database_url=db_url, data_sources="synthetic")
    ctx = context(settings, date(2024, 3, 1))
    outcome = ingest_stage(ctx)
    assert outcome.status == "completed"
    store = ctx.store
    first = store.load_bars(["SPY", "BTC-USD", "VIX"])
    expected_spy = len(calendars.sessions("XNYS", settings.history_start, date(2024, 3, 1)))
    assert (first["symbol"] == "SPY").sum() == expected_spy
    assert (first["symbol"] == "BTC-USD").sum() == (
        date(2024, 3, 1) - settings.history_start
    ).days + 1
    assert set(first["source"]) == {"synthetic"}
    assert first["date"].max().date() == date(2024, 3, 1)

    later = context(settings, date(2024, 3, 5))  # Tuesday: Mon + Tue for ETFs, 4 days for BTC
    result = ingest_stage(later).value
    rows = {f.request.series: len(f.frame) for f in result.fetched}
    assert rows["SPY"] == 2 and rows["BTC-USD"] == 4 and rows["VIX"] == 2
    total = store.select(select(func.count()).select_from(BARS)).iloc[0, 0]
    assert total == len(store.load_bars(settings.symbols + ["VIX"]))  # no duplicates
    log = store.select(select(INGEST_LOG).where(INGEST_LOG.c.as_of == date(2024, 3, 5)))
    assert set(log.loc[log["kind"] == "bar", "source"]) == {"synthetic"}
    assert (store.select(select(func.count()).select_from(MACRO)).iloc[0, 0]) > 0


def test_ingest_never_stores_a_bar_after_as_of(make_settings, sqlite_url: str) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        data_sources=f"csv:{MARKET}",
        universe="SPY,GLD",
        history_start=date(2020, 1, 2),
    )
    ctx = context(settings, date(2020, 3, 20))
    ingest_stage(ctx)
    assert max(ctx.store.last_bar_dates().values()) == date(2020, 3, 20)
    assert max(ctx.store.last_macro_dates().values()) <= date(2020, 3, 20)


def test_a_bad_file_fails_the_stage_and_leaves_the_store_as_it_was(
    make_settings, db_url: str, tmp_path: Path
) -> None:
    folder = copy_market(MARKET, tmp_path / "market", ["SPY", "GLD", "QQQ", "BTC-USD", "VIX"])
    settings = make_settings(
        database_url=db_url, data_sources=f"csv:{folder}", history_start=date(2023, 1, 3)
    )
    ingest_stage(context(settings, date(2023, 6, 30)))
    ctx = context(settings, date(2023, 7, 14))
    before = ctx.store.load_bars(settings.symbols + ["VIX"])
    qqq = folder / "QQQ.csv"
    qqq.write_text(qqq.read_text().replace("2023-07-10,", "2023-07-10,abc", 1))
    with pytest.raises(DataError, match=r"QQQ.csv: line \d+: open = 'abc.*' is not a number"):
        ingest_stage(ctx)
    after = ctx.store.load_bars(settings.symbols + ["VIX"])
    assert after.equals(before)  # SPY and GLD were fetched fine, yet nothing was written
    checkpoint = ctx.store.checkpoint("daily-rebalance", date(2023, 7, 14), "ingest")
    assert checkpoint is not None and checkpoint.status == "failed"
    assert "QQQ.csv" in (checkpoint.error or "")


def test_a_symbol_no_source_has_is_a_clear_error(
    make_settings, sqlite_url: str, tmp_path: Path
) -> None:
    folder = copy_market(MARKET, tmp_path / "market", ["SPY", "VIX"])
    settings = make_settings(
        database_url=sqlite_url, data_sources=f"csv:{folder}", universe="SPY,TLT"
    )
    with pytest.raises(DataError, match=r"TLT: no configured source has it \(csv:"):
        ingest_stage(context(settings, date(2023, 7, 14)))
    assert context(settings, date(2023, 7, 14)).store.load_bars(["SPY"]).empty
