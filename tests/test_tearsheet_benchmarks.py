"""Benchmarks in the tearsheet: the worst drawdown periods of a hand-made NAV path, the
stretches in cash because of a risk level, the run against a benchmark (hand-worked), the
rendered page, and end to end on the shared data: each benchmark line is the reference
profile's own run (same NAV), cached in the store, named with the reason when its data is
missing, and left out with --no-benchmarks."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import date
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import MARKET
from tests.test_tearsheet import _text, synthetic_result
from tiller.backtest.result import BenchmarkRun
from tiller.reporting.tearsheet import (
    cash_sentence,
    describe_config,
    drawdown_periods,
    relative_metrics,
    render_tearsheet,
    risk_cash_periods,
)

D = dt.date
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)


# --------------------------------------------------------------------------- drawdown periods


def test_drawdown_periods_on_a_hand_made_path() -> None:
    days = list(pd.bdate_range("2024-01-01", periods=12).date)  # Mon 1 Jan .. Tue 16 Jan
    nav = pd.Series(
        [100, 110, 99, 104.5, 110, 115, 92, 103.5, 115, 120, 108, 114], index=days, dtype=float
    )
    periods = drawdown_periods(nav)
    assert len(periods) == 3
    deepest, second, third = periods
    # peak 115 (session 5, Jan 8), trough 92 (session 6, Jan 9): 1 - 92 / 115 = 20%;
    # back to 115 at session 8 (Jan 11): decline 1 session, recovery 2, length 3, 3 days
    assert deepest == {
        "peak": D(2024, 1, 8),
        "trough": D(2024, 1, 9),
        "recovered": D(2024, 1, 11),
        "depth": pytest.approx(0.20),
        "decline": 1,
        "recovery": 2,
        "length": 3,
        "days": 3,
    }
    # peak 110 (session 1, Jan 2), trough 99 (session 2, Jan 3): 1 - 99 / 110 = 10%;
    # 110 again at session 4 (Jan 5, equal to the peak counts): length 3 sessions, 3 days
    assert second["peak"] == D(2024, 1, 2) and second["trough"] == D(2024, 1, 3)
    assert second["recovered"] == D(2024, 1, 5)
    assert second["depth"] == pytest.approx(0.10)
    assert (second["decline"], second["recovery"], second["length"]) == (1, 2, 3)
    # peak 120 (session 9, Jan 12), 108 (Jan 15) = 10% down, never recovered by Jan 16:
    # measured to the last session: length 2 sessions, 4 days (over the weekend)
    assert third["peak"] == D(2024, 1, 12) and third["trough"] == D(2024, 1, 15)
    assert third["recovered"] is None and third["recovery"] is None
    assert third["depth"] == pytest.approx(0.10)
    assert (third["decline"], third["length"], third["days"]) == (1, 2, 4)
    assert drawdown_periods(nav, top=1) == [deepest]
    # a path that only rises has no drawdown period; an empty one neither
    assert drawdown_periods(pd.Series([1.0, 2.0, 3.0], index=days[:3])) == []
    assert drawdown_periods(pd.Series(dtype=float)) == []


@given(st.lists(st.floats(-0.2, 0.2), min_size=2, max_size=120))
@settings(max_examples=150, deadline=None)
def test_drawdown_periods_properties(returns: list[float]) -> None:
    days = list(pd.bdate_range("2020-01-01", periods=len(returns)).date)
    nav = pd.Series(100.0 * np.cumprod(1.0 + np.asarray(returns)), index=days)
    periods = drawdown_periods(nav, top=len(returns))
    worst = float((1.0 - nav / nav.cummax()).max())
    if worst <= 0:
        assert periods == []
        return
    # the deepest period is the path's max drawdown; periods are sorted and disjoint
    assert periods[0]["depth"] == pytest.approx(worst, rel=1e-12)
    depths = [p["depth"] for p in periods]
    assert depths == sorted(depths, reverse=True)
    spans = sorted((p["peak"], p["recovered"] or date.max) for p in periods)
    for (_, end), (start, _) in pairwise(spans):
        assert end <= start
    for p in periods:
        assert p["peak"] < p["trough"]
        assert p["decline"] + (p["recovery"] or 0) <= p["length"] or p["recovery"] is None
        if p["recovered"] is not None:
            assert nav[p["recovered"]] >= nav[p["peak"]]
            assert p["decline"] + p["recovery"] == p["length"]
        assert nav[p["trough"]] == pytest.approx(nav[p["peak"]] * (1 - p["depth"]))


# --------------------------------------------------------------------------- cash stretches


def test_cash_because_of_a_risk_level() -> None:
    days = list(pd.bdate_range("2024-03-04", periods=10).date)
    daily = pd.DataFrame(
        {
            # sessions 0-1: in cash before the first rebalance (level 0: the strategy's cash)
            # sessions 4-7: L4 halt sells everything, reset (level back to 0), calm wait
            # session 9: under 2% again at L1 (not a risk level that stops buying)
            "exposure": [0.0, 0.0, 0.9, 0.9, 0.0, 0.0, 0.0, 0.01, 0.5, 0.0],
            "level": [0, 0, 2, 4, 4, 4, 0, 0, 0, 1],
        },
        index=days,
    )
    (period,) = risk_cash_periods(daily)
    assert period == {
        "start": days[4],
        "end": days[7],
        "sessions": 4,
        "worst_level": 4,
        "reached": days[4],
        "ongoing": False,
    }
    assert cash_sentence(period) == (
        "From 2024-03-08 to 2024-03-13, 4 session(s), the book sat in cash (exposure below 2% "
        "of NAV) because of the risk ladder: it reached L4: everything sold and trading "
        "halted, then the wait for calm sessions and the re-entry ramp on 2024-03-08."
    )
    # a stretch that lasts to the end of the run says so
    daily.loc[days[9], "level"] = 2
    ongoing = risk_cash_periods(daily)[-1]
    assert ongoing["ongoing"] and ongoing["start"] == days[9] and ongoing["worst_level"] == 2
    assert "(to the end of the run)" in cash_sentence(ongoing)
    assert risk_cash_periods(daily.iloc[:0]) == []


# --------------------------------------------------------------------------- run vs benchmark


def _result_from_nav(nav: list[float], run_id: str, cagr: float | None = None) -> object:
    base = synthetic_result(sessions=len(nav), start="2024-01-01", trades=False, events=0)
    daily = base.daily.copy()
    daily["nav"] = nav
    return replace(base, run_id=run_id, daily=daily, metrics={**base.metrics, "cagr": cagr})


def test_relative_metrics_by_hand() -> None:
    # benchmark returns +1%, -1%, +2%; the run moves exactly twice as much: +2%, -2%, +4%
    bench = _result_from_nav([100.0, 101.0, 99.99, 101.9898], "bt-bench", cagr=0.05)
    run = _result_from_nav([100.0, 102.0, 99.96, 103.9584], "bt-run", cagr=0.08)
    rel = relative_metrics(run, bench)  # type: ignore[arg-type]
    # excess return: 8% - 5% = 3 points of CAGR
    assert rel["excess_return"] == pytest.approx(0.03)
    # beta = cov(2b, b) / var(b) = 2; correlation 1
    assert rel["beta"] == pytest.approx(2.0)
    assert rel["correlation"] == pytest.approx(1.0)
    # r - b = b: std of (0.01, -0.01, 0.02) with ddof 1: mean 0.00667; deviations
    # 0.00333, -0.01667, 0.01333; squares sum 0.000011 + 0.000278 + 0.000178 = 0.000467;
    # / 2 = 0.000233; std 0.015275; x sqrt(252) = 0.242487
    assert rel["tracking_error"] == pytest.approx(0.242487, rel=1e-5)
    # a flat benchmark: beta and correlation undefined
    flat = _result_from_nav([100.0, 100.0, 100.0, 100.0], "bt-flat", cagr=0.0)
    undefined = relative_metrics(run, flat)  # type: ignore[arg-type]
    assert undefined["beta"] is None and undefined["correlation"] is None
    assert undefined["tracking_error"] == pytest.approx(
        np.std([0.02, -0.02, 0.04], ddof=1) * math.sqrt(252)
    )


def test_describe_config_reads_only_what_it_shows() -> None:
    config = {
        "universe": ["SPY", "TLT"],
        "cadence": "monthly",
        "method": "fixed",
        "signals": "rules",
        "fill_price": "close",
        "api_key": "s3cret",
    }
    text = describe_config(config)
    assert text == (
        "2 symbol(s) (SPY, TLT), monthly rebalancing, fixed weights, signal rule rules, "
        "fills at the close"
    )
    assert describe_config({}) == ""


def test_render_with_benchmarks_and_a_missing_one() -> None:
    result = synthetic_result()
    result = replace(result, config={**result.config, "profile": "sixty-forty"})
    bench = replace(
        synthetic_result(),
        run_id="bt-bench-0001",
        config={"profile": "buy-and-hold-spy", "universe": ["SPY"], "cadence": "once"},
        metrics={**synthetic_result().metrics, "cagr": 0.05},
    )
    html = render_tearsheet(
        result,
        benchmarks=[
            BenchmarkRun("buy-and-hold-spy", bench, cached=True),
            BenchmarkRun(
                "trend-rp",
                reason="no data for TLT from 2019-11-01 to 2020-12-24 in csv:/very/secret/path",
            ),
        ],
    )
    charts = re.findall(r'data-chart="(\w+)"', html)
    assert "benchmarks" in charts
    assert 'id="benchmarks"' in html and "profile sixty-forty" in html
    assert "<th>buy-and-hold-spy<br>" in html and "bt-bench-0001 (cached)" in html
    assert "1 symbol(s) (SPY), once rebalancing" in html
    assert "trend-rp: not shown, no data for TLT from 2019-11-01 to 2020-12-24" in html
    assert "/very/secret" not in html  # local paths cut from reasons
    # the same run as its own benchmark: no excess return, tracking error 0, beta 1
    assert '<th>Beta of this run to the benchmark</th><td class="n"></td><td class="n">1.00' in (
        html
    )
    assert not NAN_WORD.search(_text(html))
    # without benchmarks the page says so and has no benchmark chart
    plain = render_tearsheet(synthetic_result())
    assert "Benchmarks were not computed for this run." in plain
    assert 'data-chart="benchmarks"' not in plain
    assert "The book never sat in cash because of a risk level." in plain


def test_render_marks_the_cash_stretch() -> None:
    result = synthetic_result(sessions=60)
    daily = result.daily.copy()
    daily.iloc[20:30, daily.columns.get_loc("exposure")] = 0.0
    daily.iloc[20:25, daily.columns.get_loc("level")] = 4
    html = render_tearsheet(replace(result, daily=daily))
    assert html.count('<p class="cash">') == 1
    assert "because of the risk ladder: it reached L4" in html
    assert "cash (L4)" in html  # the shaded band's label on the return charts


def test_benchmarks_and_cash_bands_draw_in_chromium(tmp_path: Path) -> None:
    from tests import browser

    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("chromium not installed")
    result = synthetic_result()
    daily = result.daily.copy()
    daily.iloc[100:120, daily.columns.get_loc("exposure")] = 0.0
    daily.iloc[100:105, daily.columns.get_loc("level")] = 4
    bench = replace(synthetic_result(), run_id="bt-bench", config={"profile": "sixty-forty"})
    path = tmp_path / "tearsheet.html"
    html = render_tearsheet(
        replace(result, daily=daily), benchmarks=[BenchmarkRun("sixty-forty", bench)]
    )
    path.write_text(html, encoding="utf-8")
    page = browser.render(path)
    assert page.console == [], page.console  # plotly.js comes with the first chart on the page
    assert page.charts >= 9 and page.drawn_svgs >= 9


# --------------------------------------------------------------------------- end to end


def _tiller(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TILLER_")}
    environment |= {"TILLER_HOME": str(home), "TILLER_DATA_SOURCES": f"csv:{MARKET}", **env}
    return subprocess.run(
        [sys.executable, "-m", "tiller.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


START, END = date(2019, 1, 1), date(2020, 12, 31)


def test_benchmark_lines_are_the_reference_profiles_own_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiller.backtest.service import BENCHMARK_PROFILES, backtest
    from tiller.settings import load_settings
    from tiller.store.backtests import list_runs
    from tiller.store.repo import Store

    monkeypatch.setenv("TILLER_HOME", str(tmp_path))
    monkeypatch.setenv("TILLER_DATA_SOURCES", f"csv:{MARKET}")
    monkeypatch.setenv("TILLER_OPTIMIZE__SOLVER", "newton")
    monkeypatch.setenv("TILLER_UNIVERSE", "SPY,TLT,GLD")  # the run's own override
    settings = load_settings()
    store = Store.open(settings.db_url)
    saved = backtest(settings, START, END, store=store)
    assert saved.result.config["profile"] is None
    assert saved.benchmarks is not None
    assert [b.profile for b in saved.benchmarks] == list(BENCHMARK_PROFILES)
    assert all(b.result is not None and not b.cached for b in saved.benchmarks)
    html = saved.tearsheet.read_text()
    assert 'data-chart="benchmarks"' in html

    # each line is an ordinary backtest of its profile on the same data: same NAV
    monkeypatch.delenv("TILLER_UNIVERSE")
    monkeypatch.delenv("TILLER_OPTIMIZE__SOLVER")
    for bench in saved.benchmarks:
        assert bench.result is not None
        monkeypatch.setenv("TILLER_PROFILE", bench.profile)
        own = backtest(load_settings(), START, END, store=store, benchmarks=False).result
        assert own.config["profile"] == bench.profile
        pd.testing.assert_series_equal(
            bench.result.daily["nav"], own.daily["nav"], check_exact=False, rtol=1e-12
        )
        assert bench.result.metrics["final_nav"] == own.metrics["final_nav"]
        assert f"{own.metrics['final_nav']:,.2f}" in html
    monkeypatch.delenv("TILLER_PROFILE")
    monkeypatch.setenv("TILLER_UNIVERSE", "SPY,TLT,GLD")

    # the second time they come from the store; `backtest list` leaves them out
    again = backtest(load_settings(), START, END, store=store)
    assert again.benchmarks is not None and all(b.cached for b in again.benchmarks)
    assert [b.result.run_id for b in again.benchmarks if b.result] == [
        b.result.run_id for b in saved.benchmarks if b.result
    ]
    listed = list_runs(store)
    assert set(listed["kind"]) == {"backtest"} and len(listed) == 2 + len(BENCHMARK_PROFILES)
    assert len(list_runs(store, "benchmark")) == len(BENCHMARK_PROFILES)
    # another window is another cache entry
    other = backtest(load_settings(), START, date(2020, 6, 30), store=store)
    assert other.benchmarks is not None and not any(b.cached for b in other.benchmarks)


def test_missing_benchmark_data_is_named_not_fatal(tmp_path: Path) -> None:
    market = tmp_path / "market"
    market.mkdir()
    for name in ("SPY.csv", "VIX.csv"):  # no TLT, no ETFs of trend-rp
        shutil.copy(MARKET / name, market / name)
    done = _tiller(
        tmp_path,
        "backtest",
        "--profile",
        "buy-and-hold-spy",
        "--start",
        "2019-01-01",
        "--end",
        "2019-12-31",
        "--json",
        TILLER_DATA_SOURCES=f"csv:{market}",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["profile"] == "buy-and-hold-spy"
    benchmarks = {b["profile"]: b for b in summary["benchmarks"]}
    spy = benchmarks["buy-and-hold-spy"]
    assert spy["run_id"] and spy["reason"] is None
    assert benchmarks["sixty-forty"]["run_id"] is None
    assert "no data for TLT" in benchmarks["sixty-forty"]["reason"]
    assert benchmarks["trend-rp"]["run_id"] is None and "QQQ" in benchmarks["trend-rp"]["reason"]
    html = Path(summary["tearsheet"]).read_text()
    assert "sixty-forty: not shown, no data for TLT" in html
    assert "trend-rp: not shown, no data for" in html
    assert str(market) not in html

    skipped = _tiller(
        tmp_path,
        "backtest",
        "--start",
        "2019-01-01",
        "--end",
        "2019-03-31",
        "--no-benchmarks",
        "--json",
    )
    assert skipped.returncode == 0, skipped.stderr
    plain = json.loads(skipped.stdout)
    assert plain["benchmarks"] is None and plain["profile"] is None
    assert "Benchmarks were not computed for this run." in Path(plain["tearsheet"]).read_text()
