"""The daily-rebalance flow on a real Prefect API: runs, resumes, recomputes, blocks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from flows.daily_rebalance import STAGES
from tiller.store.repo import BARS, CHECKPOINTS, DQ_REPORTS, INGEST_LOG, RUNS, Store

from .conftest import MARKET
from .helpers import copy_market

AS_OF = date(2024, 3, 8)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, prefect_api: str):
    monkeypatch.setenv("TILLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TILLER_DATABASE_URL", db_url)
    monkeypatch.setenv("TILLER_HISTORY_START", "2023-01-03")
    return db_url


def _count(store: Store, table) -> int:  # type: ignore[no-untyped-def]
    return int(store.select(select(func.count()).select_from(table)).iloc[0, 0])


def _run(as_of: date = AS_OF, force: bool = False) -> dict:
    from tiller.cli import run_daily_flow

    return run_daily_flow(as_of, force, prefect=True)


def test_run_resume_and_force(env: str) -> None:
    summary = _run()
    assert summary["status"] == "completed", summary
    assert summary["stages"] == dict.fromkeys(STAGES, "completed")
    assert summary["as_of"] == "2024-03-08" and summary["error"] is None
    assert summary["data_quality"]["blocking"] == 0
    assert summary["regime"] in ("NORMAL", "ELEVATED", "HIGH_VOL", "EXTREME")
    assert summary["risk_level"] == "L0" and summary["kill_switch"] is False
    assert set(summary["signals"]) == {"GLD", "SPY", "QQQ", "BTC-USD"}
    weights = summary["target_weights"]
    assert "CASH" in weights and abs(sum(weights.values()) - 1) < 1e-6
    assert weights["CASH"] >= 0.05 - 1e-9
    store = Store.open(env)
    counts = {t.name: _count(store, t) for t in (BARS, INGEST_LOG, DQ_REPORTS, CHECKPOINTS)}

    again = _run()  # a rerun of the same date resumes: nothing left to do
    assert again["status"] == "completed"
    assert again["stages"] == dict.fromkeys(STAGES, "skipped")
    assert {t.name: _count(store, t) for t in (BARS, INGEST_LOG, DQ_REPORTS, CHECKPOINTS)} == counts

    forced = _run(force=True)
    # --force recomputes the data, strategy and report stages; the day's trading decision
    # (risk, optimize, orders) is kept as it traded once its orders stage completed
    kept = {"risk", "optimize", "orders"}
    assert forced["stages"] == {s: "skipped" if s in kept else "completed" for s in STAGES}
    assert {t.name: _count(store, t) for t in (BARS, DQ_REPORTS, CHECKPOINTS)} == {
        k: v for k, v in counts.items() if k != "ingest_log"
    }
    checkpoint = store.checkpoint("daily-rebalance", AS_OF, "ingest")
    assert checkpoint is not None and checkpoint.attempts == 2
    assert _count(store, RUNS) == 3


def test_a_blocking_failure_stops_the_flow_and_names_symbol_date_and_check(
    env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = copy_market(MARKET, tmp_path / "market", ["GLD", "SPY", "QQQ", "BTC-USD", "VIX"])
    spy = folder / "SPY.csv"
    lines = spy.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("2024-03-08,"))
    fields = lines[index].split(",")
    fields[4] = "-" + fields[4]  # a negative close on as_of
    lines[index] = ",".join(fields)
    spy.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("TILLER_DATA_SOURCES", f"csv:{folder}")
    summary = _run()
    assert summary["status"] == "blocked"
    assert summary["stages"] == {"ingest": "completed", "validate": "completed"}
    assert "SPY on 2024-03-08: positive_prices: close" in summary["error"]
    assert summary["data_quality"]["status"] == "blocked"
    store = Store.open(env)
    validate = store.checkpoint("daily-rebalance", AS_OF, "validate")
    assert validate is not None and validate.status == "blocked"
    # the refused bar left the store; a rerun fetches it again and checks it again (and,
    # the source unchanged, blocks again)
    bars = store.load_bars(["SPY"], AS_OF, AS_OF)
    assert bars.empty and list(store.quarantined()["symbol"]) == ["SPY"]
    assert _run()["stages"] == {"ingest": "completed", "validate": "completed"}


def test_a_bad_setting_is_refused_before_anything_is_written(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiller.errors import TillerError

    monkeypatch.setenv("TILLER_DATA_SOURCES", "massive")
    with pytest.raises(TillerError, match="MASSIVE_API_KEY is not set"):
        _run()
    assert _count(Store.open(env), RUNS) == 0


def test_risk_returns_use_exchange_sessions_not_crypto_weekends(env: str, make_settings) -> None:
    from tasks.portfolio import returns_frame
    from tiller import calendars

    from .helpers import context

    settings = make_settings(database_url=env, history_start=date(2023, 1, 3))
    ctx = context(settings, AS_OF)
    from tasks.ingest import ingest_stage

    ingest_stage(ctx)
    returns = returns_frame(ctx.store, ctx.settings, AS_OF, ["SPY", "BTC-USD"], 20)
    expected = calendars.sessions("XNYS", date(2024, 1, 1), AS_OF)[-20:]
    assert list(returns.index) == list(expected)  # no Saturday/Sunday rows
    bars = ctx.store.load_bars(["BTC-USD"]).set_index("date")["close"]
    # Monday 2024-03-04: BTC's return runs from Friday's close, through the weekend
    monday = bars[pd.Timestamp("2024-03-04")] / bars[pd.Timestamp("2024-03-01")] - 1
    assert returns.loc[pd.Timestamp("2024-03-04"), "BTC-USD"] == pytest.approx(monday)
