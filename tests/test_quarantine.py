"""Bad bars never reach a decision: a one-day spike is quarantined (not priced, filled or
counted in the peak), a blocking bar leaves the store, and a corrected source replaces
it on the next run.

Real data (``../shared/data/market``), SPY, QQQ, GLD, TLT: 2021-06-01 buys QQQ 38 and
SPY 40, which fill at the 2021-06-02 open.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from tests.conftest import MARKET
from tests.helpers import RULES_DAILY, copy_market
from tests.runner import run_daily
from tiller.store.repo import BARS, DQ_REPORTS, FILLS, ORDER_REJECTIONS, RISK_DECISIONS, Store

UNIVERSE = ["SPY", "QQQ", "GLD", "TLT"]
D1, D2, D3 = "2021-06-01", "2021-06-02", "2021-06-03"


def _env(tmp_path: Path, db_url: str, market: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    return base | {
        "TILLER_HOME": str(tmp_path / "home"),
        "TILLER_DATABASE_URL": db_url,
        "TILLER_DATA_SOURCES": f"csv:{market}",
        "TILLER_UNIVERSE": ",".join(UNIVERSE),
        "TILLER_HISTORY_START": "2020-03-02",
        "TILLER_OPTIMIZE__SOLVER": "newton",
        "GX_ANALYTICS_ENABLED": "false",
        **RULES_DAILY,
    }


def _scale(path: Path, day: str, factor: float) -> tuple[float, float]:
    """Multiply the prices of the row dated ``day``; returns its (open, close) before."""
    frame = pd.read_csv(path, dtype=str)
    row = frame.index[frame["date"] == day][0]
    before = float(frame.at[row, "open"]), float(frame.at[row, "close"])
    for column in ("open", "high", "low", "close", "adj_close"):
        frame.at[row, column] = repr(float(frame.at[row, column]) * factor)
    frame.to_csv(path, index=False)
    return before


@pytest.mark.slow
def test_a_one_day_spike_is_never_priced_filled_or_counted_in_the_peak(
    tmp_path: Path, db_url: str
) -> None:
    market = copy_market(MARKET, tmp_path / "market", [*UNIVERSE, "VIX"])
    spy_open, _ = _scale(market / "SPY.csv", D2, 1.6)  # a +60% tick on 06-02 only
    env = _env(tmp_path, db_url, market)
    for day in (D1, D2, D3):
        done = run_daily(env, day)
        assert done.exitcode == 0, (done.summary, done.error)
    store = Store.open(db_url)
    try:
        # the 06-02 SPY bar is out of the store, kept in quarantine with its reason
        bars = store.load_bars(["SPY"], date(2021, 6, 1), date(2021, 6, 3))
        assert [d.date() for d in bars["date"]] == [date(2021, 6, 1), date(2021, 6, 3)]
        quarantine = store.quarantined()
        (row,) = quarantine.itertuples()
        assert (row.symbol, row.date, row.check, row.severity) == (
            "SPY",
            date(2021, 6, 2),
            "jump",
            "quarantine",
        )
        assert "not confirmed" in row.reason
        report = store.select(select(DQ_REPORTS.c.as_of, DQ_REPORTS.c.status))
        assert dict(zip(report["as_of"], report["status"], strict=True))[date(2021, 6, 2)] == (
            "quarantined"
        )
        # the pending SPY buy did not fill at the phantom open: it waited for 06-03's
        fills = store.select(select(FILLS.c.symbol, FILLS.c.as_of, FILLS.c.price))
        spy = fills[fills["symbol"] == "SPY"]
        assert list(spy["as_of"]) == [date(2021, 6, 3)]
        real_open = float(pd.read_csv(MARKET / "SPY.csv").set_index("date").at[D3, "open"])
        assert spy["price"].iloc[0] == pytest.approx(real_open, rel=0.005)
        assert spy["price"].iloc[0] < spy_open * 1.3  # nowhere near the 1.6x tick
        # SPY was not traded on 06-02 (its bar was refused), and the peak never saw it
        rejected = store.select(
            select(ORDER_REJECTIONS.c.as_of, ORDER_REJECTIONS.c.symbol, ORDER_REJECTIONS.c.reason)
        )
        on_d2 = rejected[(rejected["as_of"] == date(2021, 6, 2)) & (rejected["symbol"] == "SPY")]
        assert "quarantined" in on_d2["reason"].iloc[0]
        peaks = store.select(select(RISK_DECISIONS.c.peak_nav))["peak_nav"]
        assert peaks.max() < 100_500  # NAV hardly moved: no phantom peak
    finally:
        store.close()


@pytest.mark.slow
def test_a_blocking_bar_leaves_the_store_and_a_corrected_source_replaces_it(
    tmp_path: Path, db_url: str
) -> None:
    market = copy_market(MARKET, tmp_path / "market", [*UNIVERSE, "VIX"])
    pristine = tmp_path / "SPY.pristine.csv"
    shutil.copy(market / "SPY.csv", pristine)
    frame = pd.read_csv(market / "SPY.csv", dtype=str)
    row = frame.index[frame["date"] == D2][0]
    frame.at[row, "close"] = "-419.67"
    frame.to_csv(market / "SPY.csv", index=False)
    env = _env(tmp_path, db_url, market)
    assert run_daily(env, D1).exitcode == 0
    blocked = run_daily(env, D2)
    assert blocked.exitcode == 1 and blocked.summary is not None
    assert blocked.summary["status"] == "blocked"
    error = blocked.summary["error"]
    assert "SPY on 2021-06-02: positive_prices: close = -419.67" in error
    assert "correct the source and run this date again" in error
    store = Store.open(db_url)
    try:
        stored = store.select(select(BARS.c.date).where(BARS.c.symbol == "SPY"))["date"]
        assert date(2021, 6, 2) not in set(stored)  # never used by any stage or session
        # the next session does not trade on top of it: the bad bar is fetched and refused
        # again
        later = run_daily(env, D3)
        assert later.exitcode == 1 and later.summary is not None
        assert later.summary["status"] == "blocked"
        assert "SPY on 2021-06-02" in later.summary["error"]
        # a corrected source replaces it on the next run of the date
        shutil.copy(pristine, market / "SPY.csv")
        fixed = run_daily(env, D2)
        assert fixed.exitcode == 0, (fixed.summary, fixed.error)
        assert fixed.summary is not None and fixed.summary["status"] == "completed"
        bars = store.load_bars(["SPY"], date(2021, 6, 2), date(2021, 6, 2))
        real = float(pd.read_csv(pristine).set_index("date").at[D2, "close"])
        assert bars["close"].tolist() == [pytest.approx(real)]
        assert store.quarantined().empty
        assert run_daily(env, D3).exitcode == 0
    finally:
        store.close()
