"""Backtest tearsheet: hand-worked figures (arithmetic in comments), a compounding
property, and the rendered page for a synthetic run and for an empty one."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.offline
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import browser
from tiller.backtest.result import DAILY_COLUMNS, EVENT_COLUMNS, TRADE_COLUMNS, BacktestResult
from tiller.reporting.metrics import monthly_trading
from tiller.reporting.render import TEMPLATE_DIR, money, pct
from tiller.reporting.tearsheet import (
    monthly_returns,
    render_tearsheet,
    rolling_sharpe,
    window_stats,
    yearly_trading,
)

BUNDLE = plotly.offline.get_plotlyjs()
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)
D = dt.date


# --------------------------------------------------------------------------- monthly returns


def test_monthly_returns_hand_worked() -> None:
    nav = pd.Series(
        {
            D(2021, 1, 4): 100_500.0,
            D(2021, 1, 29): 101_000.0,  # Jan: 101,000 / 100,000 (initial) - 1 = +1%
            D(2021, 2, 1): 99_000.0,
            D(2021, 2, 26): 103_020.0,  # Feb: 103,020 / 101,000 - 1 = +2%
            D(2021, 3, 31): 97_869.0,  # Mar: 97,869 / 103,020 - 1 = -5%
            # no session from April to December 2021
            D(2022, 1, 31): 102_762.45,  # Jan 2022: 102,762.45 / 97,869 - 1 = +5% (= 97,869 x 1.05)
        }
    )
    table = monthly_returns(nav, 100_000.0)
    assert list(table.index) == [2021, 2022]
    assert list(table.columns)[:3] == ["Jan", "Feb", "Mar"] and table.columns[-1] == "Year"
    assert table.loc[2021, "Jan"] == pytest.approx(0.01)
    assert table.loc[2021, "Feb"] == pytest.approx(0.02)
    assert table.loc[2021, "Mar"] == pytest.approx(-0.05)
    assert table.loc[2021, ["Apr", "May", "Dec"]].isna().all()
    # 2021: 97,869 / 100,000 - 1 = -2.131%  (= 1.01 x 1.02 x 0.95 - 1 = 0.97869 - 1)
    assert table.loc[2021, "Year"] == pytest.approx(-0.02131)
    assert table.loc[2022, "Jan"] == pytest.approx(0.05)
    assert table.loc[2022, "Year"] == pytest.approx(0.05)
    assert table.loc[2022, ["Feb", "Dec"]].isna().all()


def test_monthly_returns_unsorted_and_empty() -> None:
    nav = pd.Series([110.0, 100.0], index=[D(2020, 2, 3), D(2020, 1, 2)])
    table = monthly_returns(nav, 80.0)
    # Jan: 100 / 80 - 1 = 25%; Feb: 110 / 100 - 1 = 10%; year: 110 / 80 - 1 = 37.5%
    assert table.loc[2020, "Jan"] == pytest.approx(0.25)
    assert table.loc[2020, "Feb"] == pytest.approx(0.10)
    assert table.loc[2020, "Year"] == pytest.approx(0.375)
    assert monthly_returns(pd.Series(dtype=float), 100.0).empty


@settings(max_examples=60, deadline=None)
@given(
    returns=st.lists(st.floats(-0.1, 0.1), min_size=1, max_size=700),
    offset=st.integers(0, 400),
    capital=st.floats(1_000.0, 1e7),
)
def test_months_compound_to_the_year(returns: list[float], offset: int, capital: float) -> None:
    idx = pd.bdate_range(pd.Timestamp(2015, 1, 1) + pd.Timedelta(days=offset), periods=len(returns))
    nav = pd.Series(capital * np.cumprod(1.0 + np.array(returns)), index=idx)
    table = monthly_returns(nav, capital)
    for year, row in table.iterrows():
        months = row.drop("Year").dropna()
        assert math.prod(1.0 + months) - 1.0 == pytest.approx(row["Year"], abs=1e-9), year
    assert math.prod(1.0 + table["Year"]) - 1.0 == pytest.approx(
        nav.iloc[-1] / capital - 1.0, abs=1e-9
    )


# --------------------------------------------------------------------------- crisis windows


def _daily(rows: dict[dt.date, tuple[float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"nav": [v[0] for v in rows.values()], "level": [v[1] for v in rows.values()]},
        index=list(rows),
    )


WINDOW_DAILY = _daily(
    {
        D(2020, 1, 30): (100.0, 0),  # before the window: the base
        D(2020, 2, 3): (110.0, 0),
        D(2020, 2, 4): (88.0, 2),
        D(2020, 2, 5): (99.0, 1),
        D(2020, 7, 1): (120.0, 3),  # after the window: ignored
    }
)


def test_window_stats_hand_worked() -> None:
    stats = window_stats(WINDOW_DAILY, D(2020, 2, 1), D(2020, 6, 30))
    # base 100 (close before the window); path 100, 110, 88, 99
    # running peak 100, 110, 110, 110 -> drawdowns 0, 0, 1 - 88/110 = 0.2, 1 - 99/110 = 0.1
    # return 99 / 100 - 1 = -1%; worst level max(0, 2, 1) = 2
    assert stats == {
        "first": D(2020, 2, 3),
        "last": D(2020, 2, 5),
        "sessions": 3,
        "return": pytest.approx(-0.01),
        "max_drawdown": pytest.approx(0.2),
        "worst_level": 2,
    }


def test_window_stats_backtest_starts_inside_the_window() -> None:
    # window 2020-01-01 .. 2020-02-04: sessions 100, 110, 88; nothing before the window
    stats = window_stats(WINDOW_DAILY, D(2020, 1, 1), D(2020, 2, 4), initial_capital=125.0)
    # base = initial capital 125: path 125, 100, 110, 88, peak stays 125
    # max drawdown 1 - 88/125 = 0.296; return 88/125 - 1 = -0.296
    assert stats is not None
    assert stats["return"] == pytest.approx(-0.296)
    assert stats["max_drawdown"] == pytest.approx(0.296)
    assert stats["worst_level"] == 2 and stats["sessions"] == 3
    # without the capital the base is the first NAV, 100: path 100, 100, 110, 88
    # max drawdown 1 - 88/110 = 0.2; return 88/100 - 1 = -0.12
    stats = window_stats(WINDOW_DAILY, D(2020, 1, 1), D(2020, 2, 4))
    assert stats is not None
    assert stats["return"] == pytest.approx(-0.12)
    assert stats["max_drawdown"] == pytest.approx(0.2)


def test_window_stats_outside_the_backtest() -> None:
    assert window_stats(WINDOW_DAILY, D(2008, 1, 1), D(2009, 12, 31)) is None
    assert window_stats(WINDOW_DAILY, D(2020, 2, 1), D(2020, 2, 2)) is None  # a weekend


# --------------------------------------------------------------------------- turnover, sharpe


def test_yearly_turnover_and_costs_hand_worked() -> None:
    nav = pd.Series(
        [100_000.0, 300_000.0, 50_000.0],
        index=pd.to_datetime([D(2020, 12, 30), D(2020, 12, 31), D(2021, 1, 4)]),
    )
    traded = pd.Series([10_000.0, 30_000.0, 0.0], index=nav.index)
    costs = pd.Series([4.0, 6.0, 0.0], index=nav.index)
    rows = yearly_trading(monthly_trading(nav, traded, costs))
    # 2020: 10,000 / 100,000 + 30,000 / 300,000 = 0.1 + 0.1 = 0.2 two-way, 0.1 one-way;
    # cost drag 10 / mean NAV 200,000 x 252 / 2 sessions = 0.0063
    # 2021: nothing traded
    assert rows == [
        {
            "year": 2020,
            "turnover_one_way": pytest.approx(0.1),
            "turnover_two_way": pytest.approx(0.2),
            "costs": 10.0,
            "cost_drag": pytest.approx(10 / 200_000 * 126),
        },
        {
            "year": 2021,
            "turnover_one_way": 0.0,
            "turnover_two_way": 0.0,
            "costs": 0.0,
            "cost_drag": 0.0,
        },
    ]


def test_rolling_sharpe_hand_worked() -> None:
    # nav 100 -> returns 0.01, 0.02, -0.01, 0.02
    nav = pd.Series(
        [100.0, 101.0, 103.02, 101.9898, 104.029596],
        index=pd.bdate_range("2024-01-01", periods=5),
    )
    # window 4: mean 0.01; squared deviations 0 + 1e-4 + 4e-4 + 1e-4 = 6e-4
    # std = sqrt(6e-4 / 3) = 0.0141421; 0.01 / 0.0141421 x sqrt(252) = 11.2249722
    four = rolling_sharpe(nav, window=4)
    assert list(four.index) == [pd.Timestamp("2024-01-05")]
    assert four.iloc[0] == pytest.approx(11.2249722)
    # window 3, second window 0.02, -0.01, 0.02: mean 0.01, squared deviations
    # 1e-4 + 4e-4 + 1e-4 = 6e-4, std = sqrt(3e-4) = 0.0173205 -> 0.57735 x 15.8745 = 9.1651514
    three = rolling_sharpe(nav, window=3)
    assert len(three) == 2 and three.iloc[1] == pytest.approx(9.1651514)
    assert rolling_sharpe(nav, window=5).empty  # 4 returns < 5
    flat = pd.Series(100.0, index=pd.bdate_range("2024-01-01", periods=10))
    assert rolling_sharpe(flat, window=3).empty  # zero variance: undefined


# --------------------------------------------------------------------------- rendering


def synthetic_result(
    sessions: int = 300,
    start: str = "2019-11-01",
    trades: bool = True,
    events: int = 250,
) -> BacktestResult:
    idx = pd.bdate_range(start, periods=sessions)
    days = list(idx.date)
    rng = np.random.default_rng(7)
    capital = 100_000.0
    nav = capital * np.cumprod(1.0 + rng.normal(0.0004, 0.01, sessions))
    exposure = np.full(sessions, 0.9)
    traded = np.where(np.arange(sessions) % 5 == 0, 20_000.0, 0.0)
    peak = np.maximum.accumulate(nav)
    daily = pd.DataFrame(
        {
            "nav": nav,
            "cash": nav * 0.1,
            "long_value": nav * exposure,
            "exposure": exposure,
            "peak_nav": peak,
            "drawdown": 1.0 - nav / peak,
            "level": np.clip(np.arange(sessions) // 60, 0, 3),
            "regime": "NORMAL",
            "traded": traded,
            "turnover": traded / nav,
            "commission": traded * 0.0005,
            "slippage": traded * 0.0002,
            "rebalanced": traded > 0,
            "dividends": 0.0,
        },
        index=days,
    )
    assert tuple(daily.columns) == DAILY_COLUMNS
    weights = pd.DataFrame({"SPY": 0.5, "TLT": 0.4, "CASH": 0.1}, index=days)
    fills = pd.DataFrame(
        [
            (d, d, "SPY", "buy", 10.0, 301.0, 300.0, 3010.0, 1.5, 10.0, f"bt-{i}")
            for i, d in enumerate(days[:3])
        ]
        if trades
        else [],
        columns=list(TRADE_COLUMNS),
    )
    risk_events = pd.DataFrame(
        [(days[i % sessions], "level", None, f"event number {i}") for i in range(events)],
        columns=list(EVENT_COLUMNS),
    )
    return BacktestResult(
        run_id="bt-test-0001",
        label="synthetic",
        start=days[0],
        end=days[-1],
        cadence="weekly",
        initial_capital=capital,
        daily=daily,
        weights=weights,
        trades=fills,
        risk_events=risk_events,
        metrics={
            "final_nav": float(nav[-1]),
            "total_return": float(nav[-1] / capital - 1),
            "sharpe": 1.2345,
            "sortino": None,
            "max_drawdown": float(daily["drawdown"].max()),
            "trades": len(fills),
            "max_level": 3,
            "l4_triggered": False,
        },
        config={"api_key": "s3cret-value", "data_dir": "/very/secret/path"},
    )


def _text(html: str) -> str:
    return html.replace(BUNDLE, "")


def test_render_synthetic_backtest() -> None:
    result = synthetic_result()
    html = render_tearsheet(result)
    text = _text(html)
    assert html.count(BUNDLE) == 1
    assert "<script src=" not in text  # no CDN: works offline
    charts = re.findall(r'data-chart="(\w+)"', text)
    assert sorted(charts) == sorted(
        ["returns", "drawdown", "sharpe", "exposure", "weights", "turnover", "costs", "risk"]
    )
    for section in ("headline", "returns", "monthly", "rolling-sharpe", "exposure", "turnover"):
        assert f'id="{section}"' in text
    for section in ("costs", "risk", "crisis"):
        assert f'id="{section}"' in text
    # headline
    assert "bt-test-0001" in text and "synthetic" in text and "weekly" in text
    assert f'<td class="n">{money(result.metrics["final_nav"])}</td>' in text
    assert '<th>Sortino</th><td class="n">n/a</td>' in text
    assert '<th>Sharpe</th><td class="n">1.23</td>' in text
    assert '<th>Worst risk level</th><td class="n">L3</td>' in text
    assert '<th>L4 triggered</th><td class="n">no</td>' in text
    assert "Volatility" not in text  # absent metrics are not shown
    # monthly table: every month cell, coloured by sign
    table = monthly_returns(result.daily["nav"], result.initial_capital)
    assert list(table.index) == [2019, 2020]
    march = table.loc[2020, "Mar"]
    cls = "pos" if march > 0 else "neg"
    assert f'<td class="n {cls}">{pct(march, 1)}</td>' in text
    assert pct(table.loc[2019, "Year"], 1) in text
    # turnover by year: 2019 sessions Nov 1 .. Dec 31
    daily = result.daily
    trading = monthly_trading(
        daily["nav"], daily["traded"], daily["commission"] + daily["slippage"]
    )
    turnover = yearly_trading(trading)[0]
    one_way, two_way = pct(turnover["turnover_one_way"]), pct(turnover["turnover_two_way"])
    assert f'<td>2019</td><td class="n">{one_way}</td><td class="n">{two_way}</td>' in text
    # costs: 60 trading days with 20,000 traded x (5 + 2) bp = 60 x 14 = 840
    daily = result.daily
    assert daily["commission"].sum() + daily["slippage"].sum() == pytest.approx(840.0)
    assert "$840.00" in text and "0.84% of initial capital" in text
    # risk events: 250 in all, the 200 most recent listed
    assert "250 risk event(s); the most recent 200 are shown" in text
    assert text.count("event number") == 200
    assert "event number 249" in text and "event number 49<" not in text
    # crisis windows: COVID is covered, 2008 and 2022 are not
    covid = window_stats(daily, D(2020, 2, 1), D(2020, 6, 30), result.initial_capital)
    # weekdays Feb 3 .. Jun 30 2020: 20 + 22 + 22 + 21 + 22 = 107; 2020-02-03 is session 66
    # (Nov 21 + Dec 22 + Jan 23), level 66 // 60 = 1; Jun 30 is session 172, level 2
    assert covid is not None and covid["sessions"] == 107 and covid["worst_level"] == 2
    assert "107 (2020-02-03 to 2020-06-30)" in text
    assert f"{pct(covid['return'])}</td>" in text
    assert f'<td class="n">{pct(covid["max_drawdown"])}</td><td>L2</td>' in text
    assert text.count("not in the backtest range") == 2
    # clean: no NaN, no secrets, no absolute paths
    assert not NAN_WORD.search(text)
    assert "s3cret" not in html and "/very/secret" not in html
    assert str(TEMPLATE_DIR) not in html and str(Path.cwd()) not in html


def test_render_no_trades_no_events_short_history() -> None:
    result = synthetic_result(sessions=40, start="2023-03-01", trades=False, events=0)
    text = _text(render_tearsheet(result))
    assert "No risk events." in text
    assert '<th>Fills</th><td class="n">0</td>' in text
    assert "Only 39 daily return(s), fewer than the 126-session window" in text
    assert 'data-chart="sharpe"' not in text
    assert text.count("not in the backtest range") == 3
    assert not NAN_WORD.search(text)


def test_render_empty_daily() -> None:
    empty = synthetic_result(sessions=40, trades=False, events=0)
    result = BacktestResult(
        run_id="bt-empty",
        label="empty",
        start=D(2024, 1, 2),
        end=D(2024, 1, 2),
        cadence="once",
        initial_capital=100_000.0,
        daily=empty.daily.iloc[:0],
        weights=empty.weights.iloc[:0],
        trades=empty.trades,
        risk_events=empty.risk_events,
        metrics={"final_nav": None, "sharpe": None},
    )
    html = render_tearsheet(result)
    assert BUNDLE not in html and 'data-chart="' not in html
    assert "No sessions: no monthly returns." in html
    assert "Fewer than two sessions" in html
    assert '<th>Final NAV</th><td class="n">n/a</td>' in html
    assert not NAN_WORD.search(html)


def test_tearsheet_draws_in_chromium_without_console_errors(tmp_path: Path) -> None:
    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("chromium not installed")
    path = tmp_path / "tearsheet.html"
    path.write_text(render_tearsheet(synthetic_result()), encoding="utf-8")
    page = browser.render(path)
    assert page.console == [], page.console
    assert page.charts >= 8 and page.drawn_svgs >= 8


def test_weights_chart_keeps_the_largest_holdings_and_sums_the_rest() -> None:
    from tiller.reporting.tearsheet import _largest

    # 20 assets weighted 1%..20% (mean weights in that order) plus cash
    columns = {f"S{i:02d}": [i / 100, i / 100] for i in range(1, 21)}
    weights = pd.DataFrame({**columns, "CASH": [0.0, 0.0]})
    chart = _largest(weights, 3)
    # kept: S20, S19, S18 and CASH; Other = 1% + ... + 17% = 153%
    assert list(chart.columns) == ["S20", "S19", "S18", "CASH", "Other (17)"]
    assert chart["Other (17)"].tolist() == pytest.approx([1.53, 1.53])
    # every row still sums to the same total
    assert chart.sum(axis=1).tolist() == pytest.approx(weights.sum(axis=1).tolist())
    small = weights[["S01", "S02", "CASH"]]
    assert _largest(small, 3) is small
