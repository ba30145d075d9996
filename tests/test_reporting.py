"""Reporting: metrics (hand-worked), daily/weekly report documents, HTML/markdown/text."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import numpy as np
import pandas as pd
import plotly.offline
import pytest

from tiller.reporting import (
    Gates,
    WeeklyReportInputs,
    build_daily_report,
    build_weekly_report,
    render_html,
    render_markdown_summary,
    summary_text,
)
from tiller.reporting import metrics as m
from tiller.reporting.daily import DailyReportInputs

NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)
BUNDLE = plotly.offline.get_plotlyjs()


# --------------------------------------------------------------------------- metrics


def test_sharpe_hand_worked_matches_formula() -> None:
    # returns 0.01, 0.02, -0.01, 0.02
    # mean = 0.04 / 4 = 0.01
    # deviations 0, 0.01, -0.02, 0.01 -> squares 0, 1e-4, 4e-4, 1e-4 = 6e-4
    # var (ddof=1) = 6e-4 / 3 = 2e-4 -> std = 0.0141421356
    # sharpe = 0.01 / 0.0141421356 * sqrt(252) = 0.70710678 * 15.8745079 = 11.2249722
    r = [0.01, 0.02, -0.01, 0.02]
    expected = 0.01 / math.sqrt(2e-4) * math.sqrt(252)
    assert expected == pytest.approx(11.2249722, rel=1e-7)
    s = pd.Series(r)
    assert m.sharpe(r) == pytest.approx(expected, rel=1e-9)
    assert m.sharpe(r) == pytest.approx(s.mean() / s.std(ddof=1) * np.sqrt(252), rel=1e-9)
    # volatility = 0.0141421356 * sqrt(252) = 0.2244994
    assert m.annual_volatility(r) == pytest.approx(math.sqrt(2e-4) * math.sqrt(252), rel=1e-9)


def test_max_drawdown_and_cagr_hand_worked() -> None:
    # NAV 100 -> 110 -> 99 -> 104.94: peak 110, trough 99 -> drawdown 11/110 = 10%
    nav = pd.Series([100.0, 110.0, 99.0, 104.94])
    r = m.returns_from_nav(nav)
    assert list(r.round(6)) == [0.1, -0.1, 0.06]
    assert m.max_drawdown(r) == pytest.approx(0.10)
    # total growth 1.0494 over 3 days -> CAGR = 1.0494 ** (252 / 3) - 1
    assert m.annual_return(r) == pytest.approx(1.0494 ** (252 / 3) - 1, rel=1e-9)
    assert list(m.drawdown_series(nav).round(6)) == [0.0, 0.0, 0.1, 0.046]


def test_trade_metrics_hand_worked() -> None:
    pnls = [100.0, -50.0, 200.0, -25.0, 0.0]
    # wins 100, 200 -> 2 / 5 = 0.4 (break-even is not a win)
    assert m.win_rate(pnls) == pytest.approx(0.4)
    # gross profit 300 / gross loss 75 = 4.0
    assert m.profit_factor(pnls) == pytest.approx(4.0)
    assert m.average_win(pnls) == pytest.approx(150.0)
    assert m.average_loss(pnls) == pytest.approx(-37.5)
    assert m.best_day([1.0, -3.0, 2.0]) == 2.0
    assert m.worst_day([1.0, -3.0, 2.0]) == -3.0


@pytest.mark.parametrize("fn", [m.sharpe, m.sortino, m.annual_return, m.annual_volatility])
@pytest.mark.parametrize("returns", [[], [0.01], [0.01, 0.01, 0.01], [float("nan"), 0.02]])
def test_return_metrics_undefined_are_none(fn, returns) -> None:  # type: ignore[no-untyped-def]
    if fn in (m.annual_return, m.annual_volatility) and returns == [0.01, 0.01, 0.01]:
        assert fn(returns) is not None  # defined (zero vol / positive growth)
    else:
        assert fn(returns) is None


def test_trade_metrics_none_cases() -> None:
    for fn in (m.win_rate, m.profit_factor, m.average_win, m.average_loss):
        assert fn([]) is None
    assert m.profit_factor([10.0, 20.0]) is None  # no losses: undefined, not inf
    assert m.average_loss([10.0]) is None
    assert m.sortino([0.01, 0.02, 0.03]) is None  # no downside
    assert m.max_drawdown([]) is None
    assert m.best_day([]) is None and m.worst_day([]) is None


# --------------------------------------------------------------------------- daily


def _dates(n: int, end: str = "2026-03-13") -> pd.DatetimeIndex:
    return pd.bdate_range(end=end, periods=n)


def realistic_daily() -> DailyReportInputs:
    # 90 sessions: past the 60 the annualised figures need (metrics.MIN_ANNUALISED_SESSIONS)
    idx = _dates(90)
    rng = np.random.default_rng(7)
    nav = pd.Series(100_000 * np.cumprod(1 + rng.normal(0.0005, 0.01, len(idx))), index=idx)
    levels = pd.Series([0] * 80 + [1] * 5 + [2] * 3 + [1] * 2, index=idx)
    return DailyReportInputs(
        as_of=idx[-1].date(),
        nav_history=nav,
        cash=5_123.45,
        positions=[
            {"symbol": "SPY", "qty": 100.0, "price": 500.0, "value": 50_000.0, "weight": 0.5},
            {"symbol": "TLT", "qty": 400.0, "price": 95.0, "value": 38_000.0, "weight": 0.38},
        ],
        targets={"SPY": 0.45, "TLT": 0.40, "GLD": 0.10},
        trades=[
            {
                "symbol": "SPY",
                "side": "sell",
                "qty": 10.0,
                "status": "filled",
                "fill_price": 500.1,
                "client_order_id": "2026-03-13-SPY-sell",
            },
            {
                "symbol": "GLD",
                "side": "buy",
                "qty": 5.0,
                "status": "rejected",
                "fill_price": None,
                "client_order_id": "2026-03-13-GLD-buy",
            },
        ],
        fills=[{"symbol": "SPY", "side": "sell", "qty": 10.0, "price": 500.1, "commission": 1.0}],
        risk={
            "level": "L1",
            "drawdown": 0.061,
            "peak_nav": 104_000.0,
            "distance_to_next": 0.019,
            "kill_switch": False,
            "actions": ["no new positions"],
            "thresholds": {"L1": 0.05, "L2": 0.08, "L3": 0.12, "L4": 0.15},
        },
        risk_history=levels,
        signals=[
            {
                "symbol": "SPY",
                "signal": "reduce",
                "confidence": 0.7,
                "reason": "regime bear",
                "executed": True,
                "rejection_reason": None,
            },
            {
                "symbol": "GLD",
                "signal": "buy",
                "confidence": 0.6,
                "reason": "momentum",
                "executed": False,
                "rejection_reason": "L1: no new positions",
            },
        ],
        data_quality={
            "status": "warn",
            "blocking": False,
            "warnings": 1,
            "findings": ["GLD: stale price <script>"],
        },
        health={
            "stage_timings": {"ingest": 1200.0, "signals": 300.0},
            "retries": 1,
            "errors": [],
            "notification_failures": [],
        },
        trade_pnls=(120.0, -40.0, 60.0),
    )


def first_run() -> DailyReportInputs:
    day = dt.date(2026, 3, 13)
    return DailyReportInputs(
        as_of=day,
        nav_history=pd.Series([100_000.0], index=[pd.Timestamp(day)]),
        cash=100_000.0,
        risk={
            "level": "L0",
            "drawdown": 0.0,
            "peak_nav": 100_000.0,
            "distance_to_next": 0.05,
            "kill_switch": False,
            "actions": [],
        },
        risk_history=pd.Series([0], index=[pd.Timestamp(day)]),
        data_quality={"status": "pass", "blocking": False, "warnings": 0, "findings": []},
    )


def _assert_no_nan(html: str, report: dict) -> None:  # type: ignore[type-arg]
    text = json.dumps(report, allow_nan=False)  # raises on NaN/inf
    assert not NAN_WORD.search(text)
    assert not NAN_WORD.search(html.replace(BUNDLE, ""))


def test_daily_realistic() -> None:
    report = build_daily_report(realistic_daily())
    assert report["schema_version"] == "1.0"
    assert report["as_of"] == "2026-03-13"
    s = report["summary"]
    assert s["sharpe"] is not None and s["daily_pnl"] is not None
    assert s["win_rate"] == pytest.approx(2 / 3)
    assert s["trades_count"] == 2 and s["filled_count"] == 1
    rows = {r["symbol"]: r for r in report["positions"]["rows"]}
    assert rows["GLD"]["weight"] == 0.0 and rows["GLD"]["target"] == 0.1
    assert rows["SPY"]["deviation"] == pytest.approx(0.05)
    assert report["risk"]["next_level"] == "L2"
    assert report["signals"]["rejected"][0]["rejection_reason"] == "L1: no new positions"
    assert report["health"]["total_ms"] == 1500.0
    html = render_html(report, "daily")
    assert html.count(BUNDLE) == 1
    assert "<script src=" not in html.replace(BUNDLE, "")  # no CDN / external script
    assert html.count('data-chart="') == 4
    assert "&lt;script&gt;" in html  # autoescaped finding
    _assert_no_nan(html, report)
    assert "$" in summary_text(report, "daily")
    assert render_markdown_summary(report, "daily").startswith("## Tiller daily report")


def test_daily_first_run_empty_portfolio() -> None:
    report = build_daily_report(first_run())
    s = report["summary"]
    for key in ("daily_pnl", "cumulative_pnl", "sharpe", "sortino", "win_rate", "max_drawdown"):
        assert s[key] is None
    assert any("First run" in n for n in s["notes"])
    assert any("No trades" in n for n in s["notes"])
    assert report["positions"]["rows"] == []
    assert any("empty" in n for n in report["positions"]["notes"])
    html = render_html(report, "daily")
    assert html.count('data-chart="') == 0
    assert BUNDLE not in html
    assert "Not enough history yet" in html
    assert "n/a" in html
    _assert_no_nan(html, report)
    text = summary_text(report, "daily")
    assert 3 <= len(text.splitlines()) <= 6
    assert not NAN_WORD.search(text + render_markdown_summary(report, "daily"))


# --------------------------------------------------------------------------- weekly


def test_weekly_no_trades_no_backtest() -> None:
    idx = _dates(8, end="2026-03-13")
    nav = pd.Series([100_000.0] * 8, index=idx)
    inputs = WeeklyReportInputs(
        week_start=dt.date(2026, 3, 9),
        week_end=dt.date(2026, 3, 13),
        nav_history=nav,
        weights={},
        targets={"SPY": 0.5},
        risk_history=pd.Series([0] * 8, index=idx),
    )
    report = build_weekly_report(inputs)
    json.dumps(report, allow_nan=False)
    s = report["summary"]
    assert s["pnl"] == 0.0 and s["trades_count"] == 0
    assert s["win_rate"] is None and s["profit_factor"] is None and s["sharpe"] is None
    gates = {g["name"]: g for g in report["go_no_go"]["gates"]}
    assert report["go_no_go"]["verdict"] == "NO-GO"
    assert gates["trading_days"]["status"] == "fail" and gates["trading_days"]["value"] == 8
    assert gates["sharpe"]["status"] == "insufficient_data"
    assert gates["uptime"]["status"] == "insufficient_data"
    assert gates["risk_levels_exercised"]["missing"] == ["L1", "L2", "L3", "L4"]
    assert report["stress_tests"]["notes"] == ["No stress test has been run yet."]
    assert report["deviation"] == {"available": False, "notes": ["No backtest to compare yet."]}
    html = render_html(report, "weekly")
    assert "No stress test has been run yet." in html
    assert "No backtest to compare yet." in html
    assert "Not enough history yet for a correlation matrix." in html
    assert html.count('data-chart="') == 1  # daily P&L only
    assert html.count(BUNDLE) == 1
    _assert_no_nan(html, report)


def test_weekly_full_go() -> None:
    idx = _dates(70, end="2026-03-13")
    rng = np.random.default_rng(1)
    rets = pd.DataFrame(rng.normal(0.001, 0.01, (70, 3)), index=idx, columns=["SPY", "TLT", "GLD"])
    nav = 100_000 * (1 + rets.mean(axis=1) + 0.002).cumprod()
    inputs = WeeklyReportInputs(
        week_start=dt.date(2026, 3, 9),
        week_end=dt.date(2026, 3, 13),
        nav_history=nav,
        week_trade_pnls=(100.0, -50.0, 30.0),
        all_trade_pnls=(100.0, -50.0, 30.0, 20.0),
        week_trades_count=4,
        weights={"SPY": 0.5, "TLT": 0.3},
        targets={"SPY": 0.45, "TLT": 0.35, "GLD": 0.2},
        risk_history=pd.Series([0] * 69 + [1], index=idx),
        asset_returns=rets,
        stress_results=[
            {
                "scenario": "2008",
                "max_drawdown": 0.2,
                "limit": 0.25,
                "passed": True,
                "l4_triggered": False,
                "levels_reached": [1, 2, 3, 4],
            },
        ],
        deviation={
            "paper_sharpe": 1.5,
            "backtest_sharpe": 1.0,
            "paper_return": 0.1,
            "backtest_return": 0.08,
            "paper_drawdown": 0.05,
            "backtest_drawdown": None,
        },
        uptime=1.0,
        fill_rate=0.99,
        gates=Gates(),
    )
    report = build_weekly_report(inputs)
    assert report["go_no_go"]["verdict"] == "GO", report["go_no_go"]
    s = report["summary"]
    # 100 - 50 + 30: profit factor 130 / 50 = 2.6
    assert s["profit_factor"] == pytest.approx(2.6)
    assert len(report["series"]["daily_pnl"]) == 5
    assert report["correlation"]["matrix"]["SPY"]["SPY"] == pytest.approx(1.0)
    dev = report["deviation"]
    assert dev["sharpe"]["flagged"] is True and dev["return"]["flagged"] is False
    assert dev["drawdown"]["flagged"] is None
    html = render_html(report, "weekly")
    assert html.count(BUNDLE) == 1
    assert html.count('data-chart="') == 2
    _assert_no_nan(html, report)
    assert "GO/NO-GO: GO" in summary_text(report, "weekly")


def test_render_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        render_html(build_daily_report(first_run()), "monthly")  # type: ignore[arg-type]


def test_weekly_sharpe_and_correlation_do_not_mislead() -> None:
    """The case that showed it: after a few sessions the weekly summary annualised five
    returns into a Sharpe of -12.63 beside the gate's -18.49; the heatmap had no values and
    no window."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    from tiller.reporting import weekly

    days = pd.to_datetime([dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)])
    week_nav = pd.Series([100_000, 99_500, 99_800, 99_100, 99_400], index=days, dtype=float)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(0, 0.01, (5, 2)), index=days, columns=["SPY", "TLT"])

    class Inputs:
        asset_returns = frame

    corr = weekly._correlation(Inputs())  # type: ignore[arg-type]
    assert corr["window"] == {"sessions": 5, "start": "2024-03-04", "end": "2024-03-08"}
    from tiller.reporting import metrics

    assert metrics.annualised(metrics.returns_from_nav(week_nav))["sharpe"] is None
