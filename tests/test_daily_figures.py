"""Figures in the daily report that do not mislead, each from the case that showed it:

* after 3 sessions the report said "Sharpe -15.76, CAGR -69.40%": annualised figures now
  wait for 60 sessions of returns ("n/a: fewer than 60 sessions"), and once shown they are
  the functions the weekly review uses;
* signals that led to no order showed an empty reason (a SELL of a symbol not held, a BUY
  already at its target): every one now says why;
* the report had no market regime: it now shows the regime, the VIX close and what it
  changes;
* a value that rounds to zero was shown as ``-0.00%`` / ``-$0.00``: now ``0.00%`` / ``$0.00``;
* ``tiller report daily --as-of`` a session the flow never ran wrote a "first run, NAV
  $100,000" report (``tests/test_reports_flow.py`` checks the CLI now refuses it; here the
  store-level check).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiller.domain import Regime
from tiller.errors import ConfigError
from tiller.reporting import metrics
from tiller.reporting.daily import (
    NOT_EXECUTED,
    DailyReportInputs,
    build_daily_report,
    why_not_executed,
)
from tiller.reporting.message import build_message
from tiller.reporting.render import money, num, pct, render_html
from tiller.settings import SignalConfig
from tiller.store.repo import Store
from tiller.strategy.signals import regime_effect

DAYS = (date(2024, 3, 6), date(2024, 3, 7), date(2024, 3, 8))
NA_NOTE = "n/a: fewer than 60 sessions"


def _inputs(nav: list[float] | pd.Series, **extra: object) -> DailyReportInputs:
    if not isinstance(nav, pd.Series):
        nav = pd.Series(nav, index=pd.bdate_range(end="2024-03-08", periods=len(nav)))
    return DailyReportInputs(
        as_of=nav.index[-1].date(),
        nav_history=nav,
        cash=10_000.0,
        **extra,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------- annualised figures


def test_annualised_figures_wait_for_60_sessions() -> None:
    navs = [100_000.0, 99_000.0, 98_700.0, 98_600.0]
    returns = metrics.returns_from_nav(pd.Series(navs))
    # what the report used to print after 3 sessions
    assert metrics.sharpe(returns) == pytest.approx(-15.76, abs=0.01)
    assert metrics.annual_return(returns) == pytest.approx(-0.694, abs=0.001)

    report = build_daily_report(_inputs(navs))
    s = report["summary"]
    for key in metrics.ANNUALISED:
        assert s[key] is None, key
    assert s["annualised"] == {
        "available": False,
        "sessions": 3,
        "min_sessions": 60,
        "note": NA_NOTE,
    }
    assert s["max_drawdown"] == pytest.approx(0.014)  # not annualised: shown
    assert any("shown from 60 sessions of returns (3 so far)" in n for n in s["notes"])
    html = render_html(report, "daily", charts=False)
    summary = html[html.index("<h2>Summary") : html.index("<h2>Risk")]
    assert summary.count(f'<td class="n">{NA_NOTE}</td>') == 4  # Sharpe, Sortino, CAGR, vol
    assert "-15.76" not in html and "-69.40%" not in html
    message = build_message(report, "daily")
    assert re.search(rf"^Sharpe, CAGR, volatility: +{NA_NOTE} \(3 so far\)$", message.text, re.M)


def test_from_60_sessions_the_weekly_reviews_functions_give_the_figures() -> None:
    rng = np.random.default_rng(11)
    for sessions, shown in ((59, False), (60, True), (120, True)):
        nav = pd.Series(
            100_000 * np.cumprod(1 + rng.normal(0.0004, 0.01, sessions + 1)),
            index=pd.bdate_range(end="2024-03-08", periods=sessions + 1),
        )
        s = build_daily_report(_inputs(nav))["summary"]
        assert s["annualised"]["available"] is shown and s["annualised"]["sessions"] == sessions
        returns = metrics.returns_from_nav(nav)
        expected = {
            "sharpe": metrics.sharpe(returns),
            "sortino": metrics.sortino(returns),
            "annual_return": metrics.annual_return(returns),
            "annual_volatility": metrics.annual_volatility(returns),
        }
        for key, value in expected.items():
            assert s[key] == (pytest.approx(value) if shown else None), (sessions, key)
    assert metrics.annualised(returns) == pytest.approx(expected)


# ---------------------------------------------------------------------- regime


def test_the_regime_section_says_what_the_regime_changes() -> None:
    config = SignalConfig()
    effect = regime_effect(Regime.HIGH_VOL, 31.39, config, l1_min_confidence=0.6)
    report = build_daily_report(
        _inputs(
            [100_000.0, 100_100.0],
            regime={
                "regime": "HIGH_VOL",
                "vix": 31.39,
                "vix_date": dt.date(2024, 3, 8),
                "reason": "VIX 31.39 on 2024-03-08 in [30, 40): HIGH_VOL",
                "effect": effect,
                "thresholds": {"ELEVATED": 20.0, "HIGH_VOL": 30.0, "EXTREME": 40.0},
            },
        )
    )
    regime = report["regime"]
    assert regime["regime"] == "HIGH_VOL" and regime["vix"] == 31.39
    assert regime["vix_date"] == "2024-03-08" and regime["notes"] == []
    html = render_html(report, "daily", charts=False)
    section = html[html.index("<h2>Market regime") : html.index("<h2>Positions")]
    assert "<strong>HIGH_VOL</strong>" in section and "31.39 (2024-03-08)" in section
    assert "multiplied by 0.5" in section and "no buy passes" in section
    assert "&lt; 30 &le; HIGH_VOL &lt; 40" in section
    assert re.search(
        r"^Regime: +HIGH_VOL \(VIX 31\.39\)$", build_message(report, "daily").text, re.M
    )

    empty = build_daily_report(_inputs([100_000.0]))
    assert empty["regime"]["regime"] is None
    assert empty["regime"]["notes"] == ["No regime was recorded for this date."]
    assert "No regime was recorded" in render_html(empty, "daily", charts=False)


@pytest.mark.parametrize(
    ("regime", "vix", "says"),
    [
        (Regime.NORMAL, 14.2, "Nothing: the signals are as the rules give them"),
        (Regime.ELEVATED, 24.0, "Nothing: the signals are as the rules give them"),
        (Regime.HIGH_VOL, 31.39, "Every signal's confidence is multiplied by 0.5"),
        (Regime.EXTREME, 45.0, "No buys: every BUY and STRONG_BUY becomes HOLD"),
    ],
)
def test_regime_effects(regime: Regime, vix: float, says: str) -> None:
    effect = regime_effect(regime, vix, SignalConfig())
    assert effect.startswith(says)
    if regime is Regime.HIGH_VOL:
        assert "no STRONG_BUY (it needs VIX < 30)" in effect
        assert "no buy passes" not in effect  # no risk minimum given
    trend = SignalConfig(rule="trend")
    assert regime_effect(regime, vix, trend) == "Nothing: the trend rule has no regime filter."


# --------------------------------------------------------- reasons of rejections


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("STRONG_SELL", False, None, None), "nothing to sell, no position is held"),
        (("SELL", False, 0.2, 0.2), "still held at 20.0% of NAV against a target of 20.0%"),
        (("BUY", False, None, None), "BUY but not long-eligible"),
        (("BUY", True, None, 0.0), "the optimiser gave it no target weight"),
        (("BUY", True, 0.3, 0.3), "already held at 30.0% of NAV against a target of 30.0%"),
        (("STRONG_BUY", True, None, 0.1), "target 10.0% but the buy is under one lot"),
        (("HOLD", True, 0.25, 0.25), "the position is kept at 25.0% of NAV"),
        (("HOLD", False, None, None), "no position and no buy signal"),
        (("BUY", True, 0.1, 0.3, "turnover"), "the optimiser left the trade out (turnover)"),
    ],
)
def test_why_not_executed(args: tuple, reason: str) -> None:  # type: ignore[type-arg]
    assert reason in why_not_executed(*args)


def test_a_not_executed_signal_without_a_reason_says_so() -> None:
    report = build_daily_report(
        _inputs(
            [100_000.0, 100_100.0],
            signals=[
                {"symbol": "SPY", "signal": "SELL", "executed": False},
                {"symbol": "GLD", "signal": "BUY", "executed": True},
            ],
        )
    )
    [rejected] = report["signals"]["rejected"]
    assert rejected["rejection_reason"] == NOT_EXECUTED
    assert report["signals"]["executed"][0]["rejection_reason"] is None


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Path:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("TILLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TILLER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TILLER_HISTORY_START", "2023-01-03")
    return tmp_path / "home"


def test_every_signal_without_an_order_has_a_reason_in_the_stored_reports(env: Path) -> None:
    """The demo's case: SELL and STRONG_SELL of symbols not held, a BUY already at its
    target, all listed as rejected with an empty reason."""
    from tiller.cli import run_daily_flow

    reasons: list[str] = []
    for day in DAYS:
        summary = run_daily_flow(day, force=False)
        assert summary["status"] == "completed", summary["error"]
        report = json.loads(Path(summary["reports"]["daily"]["json"]).read_text())
        held = {p["symbol"] for p in report["positions"]["rows"] if p["qty"]}
        for row in report["signals"]["rejected"]:
            reason = row["rejection_reason"]
            assert reason and reason != NOT_EXECUTED, row
            if row["signal"] in ("SELL", "STRONG_SELL") and row["symbol"] not in held:
                assert "nothing to sell, no position is held" in reason
            reasons.append(reason)
        # the regime section, from the regime stage's row
        regime = report["regime"]
        assert regime["regime"] == summary["regime"]
        assert regime["vix"] is not None and regime["effect"]
        assert re.match(r"VIX \d+\.\d\d on \d{4}-\d\d-\d\d", regime["reason"])
        html = Path(summary["reports"]["daily"]["html"]).read_text()
        assert "<h2>Market regime</h2>" in html and "Why not executed" in html
        assert "-0.00%" not in html.split("<script")[0]
    assert reasons  # the synthetic market gives signals that trade nothing


def test_a_report_needs_a_run_of_its_date(env: Path) -> None:
    from tasks.report import check_ran

    store = Store.open(f"sqlite:///{env.parent / 'tiller.db'}")
    with pytest.raises(ConfigError, match=r"no daily-rebalance run is stored yet"):
        check_ran(store, "daily-rebalance", DAYS[1])
    store.start_run("daily-rebalance", DAYS[0], False, None)
    store.start_run("daily-rebalance", DAYS[2], False, None)
    check_ran(store, "daily-rebalance", DAYS[2])
    with pytest.raises(ConfigError) as error:
        check_ran(store, "daily-rebalance", DAYS[1])
    assert str(error.value) == (
        "no daily-rebalance run for 2024-03-07, so there is no report to render: 2 session(s) "
        "ran from 2024-03-06 to 2024-03-08; the last before it is 2024-03-06, the next after "
        "it is 2024-03-08"
    )
    store.close()


# ------------------------------------------------------------------ -0.00%


def test_a_value_that_rounds_to_zero_has_no_sign() -> None:
    assert pct(-0.0) == "0.00%" and pct(-0.00001) == "0.00%" and pct(-0.0004, 1) == "0.0%"
    assert pct(-0.0001) == "-0.01%" and pct(0.0) == "0.00%"
    assert (
        money(-0.001) == "$0.00"
        and money(-0.005001) == "-$0.01"
        and money(-1234.5) == ("-$1,234.50")
    )
    assert num(-0.0004) == "0.00" and num(-1.5) == "-1.50"
    # a weight equal to its target up to float noise: the deviation column said -0.00%
    report = build_daily_report(
        _inputs(
            [100_000.0, 100_000.0],
            positions=[
                {"symbol": "GLD", "qty": 1.0, "price": 30_000.0, "value": 30_000.0, "weight": 0.3}
            ],
            targets={"GLD": 0.30000000000000004, "CASH": 0.7},
        )
    )
    [gld] = [r for r in report["positions"]["rows"] if r["symbol"] == "GLD"]
    assert gld["deviation"] < 0  # the figure itself is kept
    html = render_html(report, "daily", charts=False)
    assert "-0.00%" not in html and "-$0.00" not in html


# ------------------------------------------------------------- turnover and costs
def test_monthly_turnover_and_cost_drag_hand_worked() -> None:
    # 2024-02-27 .. 2024-03-04: four sessions, NAV 100,000 then 50,000 then 100,000 x 2
    days = pd.to_datetime(["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-04"])
    nav = pd.Series([100_000.0, 50_000.0, 100_000.0, 100_000.0], index=days)
    traded = pd.Series(
        [20_000.0, 5_000.0, 5_000.0, 30_000.0, 999.0],
        # two fills on 02-29 (summed); one dated on a day without a NAV (left out)
        index=pd.to_datetime(
            ["2024-02-28", "2024-02-29", "2024-02-29", "2024-03-04", "2024-03-02"]
        ),
    )
    costs = pd.Series(
        [10.0, 2.0, 15.0], index=pd.to_datetime(["2024-02-28", "2024-02-29", "2024-03-04"])
    )
    table = metrics.monthly_trading(nav, traded, costs)
    feb, mar = table.loc["2024-02"], table.loc["2024-03"]
    # February: 20,000 / 100,000 + 10,000 / 50,000 = 0.2 + 0.2 = 40% two-way, 20% one-way
    assert feb["turnover_two_way"] == pytest.approx(0.40)
    assert feb["turnover_one_way"] == pytest.approx(0.20)
    assert feb["traded"] == pytest.approx(30_000.0) and feb["costs"] == pytest.approx(12.0)
    # cost drag: 12 / mean NAV 75,000 x 252 / 2 sessions = 2.016% a year
    assert feb["cost_drag"] == pytest.approx(12 / 75_000 * 252 / 2)
    # March: 30,000 / 100,000 = 30% two-way; 15 / 100,000 x 252 / 2 = 1.89%
    assert mar["turnover_two_way"] == pytest.approx(0.30)
    assert mar["cost_drag"] == pytest.approx(15 / 100_000 * 126)
    section = metrics.trading_section(table)
    inception = section["since_inception"]
    assert inception["traded"] == pytest.approx(60_000.0) and inception["costs"] == 27.0
    # 4 sessions: no average month or annual drag extrapolated from them
    assert inception["turnover_two_way"] is None and inception["cost_drag"] is None
    assert "from 60 sessions (4 so far)" in section["notes"][0]
    assert [m["month"] for m in section["months"]] == ["2024-02", "2024-03"]
    assert metrics.trading_section(table, months=1)["months"][0]["month"] == "2024-03"
    # 63 sessions at 100,000, 30,000 traded on three of them and $9 of costs each time:
    # two-way 0.9 over 63 sessions -> 0.9 x 21 / 63 = 30% an average month (15% one-way);
    # cost drag 27 / 100,000 x 252 / 63 = 0.108% a year
    days = pd.bdate_range("2024-01-02", periods=63)
    nav = pd.Series(100_000.0, index=days)
    traded = pd.Series(30_000.0, index=days[[0, 20, 40]])
    long = metrics.trading_section(
        metrics.monthly_trading(nav, traded, pd.Series(9.0, index=days[[0, 20, 40]]))
    )["since_inception"]
    assert long["turnover_two_way"] == pytest.approx(0.30)
    assert long["turnover_one_way"] == pytest.approx(0.15)
    assert long["cost_drag"] == pytest.approx(0.00108)


def test_the_trading_section_is_rendered_and_empty_records_say_so() -> None:
    nav = pd.Series([100_000.0] * 3, index=pd.bdate_range(end="2024-03-08", periods=3))
    traded = pd.Series([10_000.0], index=[nav.index[1]])
    table = metrics.monthly_trading(nav, traded, pd.Series([1.5], index=[nav.index[1]]))
    report = build_daily_report(_inputs(nav, trading=table))
    assert report["trading"]["months"][0]["turnover_one_way"] == pytest.approx(0.05)
    html = render_html(report, "daily")
    assert 'id="trading"' in html and "5.0%" in html
    empty = build_daily_report(_inputs([100_000.0]))
    assert empty["trading"]["since_inception"] is None
    assert "No sessions recorded yet" in empty["trading"]["notes"][0]
    assert "No sessions recorded yet" in render_html(empty, "daily")
