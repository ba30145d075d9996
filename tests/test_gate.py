"""The performance targets and the pre-paper gate (tiller/backtest/gate.py): every row on a
hand-worked record (arithmetic in comments), closed-trade P&L at average cost, the verdict,
properties (consistency with the backtest headline, scale invariance, monotone statuses),
the stress batch per profile, the weekly review's section and `tiller gate` exit codes."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import MARKET
from tiller.backtest.gate import (
    TARGET_ROWS,
    GateRecord,
    closed_trade_pnls,
    evaluate,
    figures,
    format_threshold,
    format_value,
    record_from_backtest,
    target_status,
)
from tiller.backtest.metrics import headline
from tiller.settings import GateConfig, GateThreshold, PerformanceTargets, PrePaperGate

D = dt.date
SCENARIOS = ("gfc-2008", "covid-2020", "rates-2022", "shock-20")


def stress_batch(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """A stress batch in :func:`tiller.backtest.service.stress_rows`' format, all passing."""
    rows = []
    for name in SCENARIOS:
        row = {
            "scenario": name,
            "max_drawdown": 0.10,
            "limit": 0.20,
            "passed": True,
            "l4_triggered": False,
            "levels_reached": [1, 2],
            "reason": "max drawdown 10.00% <= limit 20.00%, worst level L2",
        }
        row.update(overrides.get(name, {}))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- closed trades


def test_closed_trade_pnls_at_average_cost() -> None:
    fills = pd.DataFrame(
        [
            # date, symbol, side, qty, price, commission
            (D(2021, 1, 4), "SPY", "buy", 10.0, 100.0, 1.0),  # basis 1,000 (commission apart)
            (D(2021, 1, 5), "SPY", "buy", 10.0, 120.0, 1.0),  # 20 held, basis 2,200: avg 110
            # sell 5 at 130: 5 x 130 - 5 x 110 - 1 = 650 - 550 - 1 = +99; basis 1,650 left
            (D(2021, 1, 6), "SPY", "sell", 5.0, 130.0, 1.0),
            (D(2021, 1, 6), "TLT", "buy", 10.0, 50.0, 0.0),
            # sell the other 15 at 100: 1,500 - 1,650 - 2 = -152; SPY closed
            (D(2021, 1, 7), "SPY", "sell", 15.0, 100.0, 2.0),
            # TLT sold at its cost without commission: 0, break-even (not a win)
            (D(2021, 1, 8), "TLT", "sell", 10.0, 50.0, 0.0),
            # a new SPY position starts from a clean basis: buy 2 at 90, sell 2 at 95
            # -> 190 - 180 - 0.5 = +9.5
            (D(2021, 1, 11), "SPY", "buy", 2.0, 90.0, 0.5),
            (D(2021, 1, 12), "SPY", "sell", 2.0, 95.0, 0.5),
        ],
        columns=["date", "symbol", "side", "qty", "price", "commission"],
    )
    assert closed_trade_pnls(fills) == pytest.approx([99.0, -152.0, 0.0, 9.5])
    # order by date, stable: the same fills shuffled across dates give the same answer
    shuffled = fills.iloc[[7, 6, 5, 4, 3, 2, 1, 0]]
    assert closed_trade_pnls(shuffled) == pytest.approx([99.0, -152.0, 0.0, 9.5])
    assert closed_trade_pnls(fills.iloc[:0]) == []


@st.composite
def _fill_paths(draw: st.DrawFn) -> list[tuple[str, str, float, float, float]]:
    """Random long-only fills on two symbols that end flat."""
    held = {"A": 0.0, "B": 0.0}
    fills = []
    for _ in range(draw(st.integers(1, 12))):
        symbol = draw(st.sampled_from(["A", "B"]))
        price = draw(st.floats(1.0, 500.0))
        commission = draw(st.floats(0.0, 5.0))
        if held[symbol] > 0 and draw(st.booleans()):
            whole = draw(st.booleans())  # all of it, or a part that leaves no dust
            qty = held[symbol] if whole else held[symbol] * draw(st.floats(0.1, 0.9))
            fills.append((symbol, "sell", qty, price, commission))
            held[symbol] = 0.0 if whole else held[symbol] - qty
        else:
            qty = draw(st.floats(0.5, 100.0))
            fills.append((symbol, "buy", qty, price, commission))
            held[symbol] += qty
    for symbol, qty in held.items():
        if qty > 0:
            fills.append((symbol, "sell", qty, draw(st.floats(1.0, 500.0)), 1.0))
    return fills


@given(_fill_paths())
@settings(max_examples=150, deadline=None)
def test_closed_trades_add_up_to_the_cash_result_of_a_flat_book(fills: list[Any]) -> None:
    # Flat at the end: the realised P&L is all there is, so the sum of the closed trades'
    # P&L = sell proceeds - buy notionals - sell commissions (buy commissions are fees,
    # outside the cost basis, as in tiller.execution.accounting).
    frame = pd.DataFrame(fills, columns=["symbol", "side", "qty", "price", "commission"])
    pnls = closed_trade_pnls(frame)
    sells = frame[frame["side"] == "sell"]
    buys = frame[frame["side"] == "buy"]
    expected = (
        (sells["qty"] * sells["price"]).sum()
        - (buys["qty"] * buys["price"]).sum()
        - sells["commission"].sum()
    )
    assert len(pnls) == len(sells)
    assert math.fsum(pnls) == pytest.approx(expected, rel=1e-9, abs=1e-6)


# --------------------------------------------------------------------------- figures


def hand_record(**changes: Any) -> GateRecord:
    """Four sessions spanning exactly 4 years: 2020-01-01 .. 2023-12-31 is 1,461 days
    (2020 is a leap year), so ``years = 1461 / 365.25 = 4``."""
    nav = pd.Series(
        {
            D(2020, 1, 1): 110_000.0,  # +10% on the 100,000 initial capital
            D(2021, 1, 1): 99_000.0,  # -10%
            D(2022, 1, 1): 108_900.0,  # +10%
            D(2023, 12, 31): 119_790.0,  # +10%
        }
    )
    fields: dict[str, Any] = {
        "label": "hand",
        "nav": nav,
        "initial_capital": 100_000.0,
        # 55,000 / 110,000 = 0.5 and 21,780 / 108,900 = 0.2 of the day's NAV
        "traded": pd.Series({D(2020, 1, 1): 55_000.0, D(2022, 1, 1): 21_780.0}),
        "costs": 2_188.45,
        "trade_pnls": (99.0, -152.0, 0.0),
        "levels": pd.Series({d: lv for d, lv in zip(nav.index, [0, 2, 1, 0], strict=True)}),
    }
    fields.update(changes)
    return GateRecord(**fields)


def test_every_figure_by_hand() -> None:
    f = figures(hand_record())
    assert f["years"] == pytest.approx(4.0)
    assert f["sessions"] == 4 and f["start"] == D(2020, 1, 1) and f["end"] == D(2023, 12, 31)
    # CAGR: 119,790 / 100,000 = 1.1979 (= 1.1^3 x 0.9); 1.1979 ** (1/4) - 1 = 0.046177
    assert f["annual_return"] == pytest.approx(1.1979**0.25 - 1)
    assert f["annual_return"] == pytest.approx(0.046177, abs=1e-6)
    # returns 0.1, -0.1, 0.1, 0.1: mean 0.05; deviations .05 -.15 .05 .05, squares sum
    # 0.0025 x 3 + 0.0225 = 0.03; var (ddof=1) 0.03 / 3 = 0.01; std 0.1
    # volatility = 0.1 x sqrt(252) = 1.587451; Sharpe = 0.05 / 0.1 x sqrt(252) = 7.937254
    assert f["volatility"] == pytest.approx(0.1 * math.sqrt(252))
    assert f["sharpe"] == pytest.approx(0.5 * math.sqrt(252))
    # peak 110,000, trough 99,000: 1 - 99,000 / 110,000 = 10%
    assert f["max_drawdown"] == pytest.approx(0.10)
    # Calmar = 0.046177 / 0.10 = 0.46177
    assert f["calmar"] == pytest.approx((1.1979**0.25 - 1) / 0.10)
    # closed trades +99, -152, 0: one win of three; profit factor 99 / 152 = 0.651316
    assert f["win_rate"] == pytest.approx(1 / 3)
    assert f["profit_factor"] == pytest.approx(99 / 152)
    assert f["closed_trades"] == 3
    # turnover: (0.5 + 0.2) = 0.7 of NAV traded two-way; one-way 0.35 over 4 years
    # = 0.0875 a year = 0.0875 / 12 = 0.00729167 a month
    assert f["monthly_turnover"] == pytest.approx(0.0875 / 12)
    # mean NAV (110,000 + 99,000 + 108,900 + 119,790) / 4 = 109,422.5;
    # 2,188.45 / 4 years = 547.1125 a year; / 109,422.5 = 0.5%
    assert f["cost_drag"] == pytest.approx(0.005)
    assert f["max_level"] == 2


def test_daily_returns_basis() -> None:
    # returns 0.1, -0.1, 0.1, 0.1: 3 of 4 positive; profit factor 0.3 / 0.1 = 3
    f = figures(hand_record(), basis="daily_returns")
    assert f["win_rate"] == pytest.approx(0.75)
    assert f["profit_factor"] == pytest.approx(3.0)


def test_every_row_status_verdict_and_reasons_by_hand() -> None:
    report = evaluate(hand_record(), GateConfig(), stress_batch(), SCENARIOS)
    rows = {r["name"]: r for r in report["targets"]}
    assert list(rows) == list(TARGET_ROWS)
    expected = {
        "annual_return": "fail",  # 4.62% is not > 7%
        "volatility": "fail",  # 158.7% is not < 18%
        "sharpe": "target",  # 7.94 > 1.0
        "max_drawdown": "target",  # 10% < 15%
        "calmar": "minimum",  # 0.46: > 0.4 but not > 0.7
        "win_rate": "fail",  # 33.3% is not > 48%
        "profit_factor": "fail",  # 0.65 is not > 1.1
        "monthly_turnover": "target",  # 0.73% < 30%
        "cost_drag": "target",  # 0.5% < 1%
    }
    assert {n: r["status"] for n, r in rows.items()} == expected
    assert rows["calmar"]["passed"] and not rows["win_rate"]["passed"]
    assert (rows["annual_return"]["target"], rows["annual_return"]["minimum"]) == (0.10, 0.07)
    assert rows["volatility"]["rule"] == "<" and rows["sharpe"]["rule"] == ">"
    gate = {r["name"]: r for r in report["pre_paper"]}
    assert list(gate) == ["years", "sharpe", "max_drawdown", "stress", "no_l4"]
    assert gate["years"]["status"] == "fail"  # 4.0 years < 4.95
    assert gate["sharpe"]["status"] == "pass"  # 7.94 > 0.7
    assert gate["max_drawdown"]["status"] == "pass"  # 10% < 20%
    assert gate["stress"]["status"] == "pass" and gate["stress"]["value"] == "4 of 4 passed"
    assert gate["no_l4"]["status"] == "pass" and gate["no_l4"]["value"] == []
    verdict = report["verdict"]
    assert verdict == {
        "passed": False,
        "verdict": "FAIL",
        "reasons": [
            "5-year record: 4.00 years, needs >= 4.95 years",
            "Annual return (CAGR): 4.62%, minimum acceptable > 7%",
            "Annual volatility: 158.75%, minimum acceptable < 18%",
            "Win rate: 33.33%, minimum acceptable > 48%",
            "Profit factor: 0.65, minimum acceptable > 1.1",
        ],
    }
    json.dumps(report, default=str)  # plain data


def _loose() -> GateConfig:
    """Thresholds the hand record clears (the pre-paper gate needs 4 years)."""
    loose = GateThreshold(target=0.0, minimum=-1.0)
    low = GateThreshold(target=10.0, minimum=20.0)
    return GateConfig(
        targets=PerformanceTargets(
            annual_return=loose,
            volatility=low,
            sharpe=loose,
            max_drawdown=low,
            calmar=loose,
            win_rate=loose,
            profit_factor=loose,
            monthly_turnover=low,
            cost_drag=low,
        ),
        pre_paper=PrePaperGate(min_years=4.0),
    )


def test_the_verdict_passes_only_when_every_row_does() -> None:
    config = _loose()
    assert evaluate(hand_record(), config, stress_batch(), SCENARIOS)["verdict"]["passed"]
    # the targets only count with require_minimums
    strict = GateConfig(pre_paper=PrePaperGate(min_years=4.0))
    assert not evaluate(hand_record(), strict, stress_batch(), SCENARIOS)["verdict"]["passed"]
    lenient = strict.model_copy(update={"require_minimums": False})
    assert evaluate(hand_record(), lenient, stress_batch(), SCENARIOS)["verdict"]["passed"]


def test_stress_and_l4_rows() -> None:
    config = _loose()

    def gate(record: GateRecord, stress: list[dict[str, Any]]) -> dict[str, Any]:
        report = evaluate(record, config, stress, SCENARIOS)
        return {r["name"]: r for r in report["pre_paper"]} | {"verdict": report["verdict"]}

    # a failed scenario
    failed = gate(
        hand_record(),
        stress_batch(**{"rates-2022": {"passed": False, "reason": "max drawdown 23% > 20%"}}),
    )
    assert failed["stress"]["status"] == "fail" and failed["stress"]["value"] == "3 of 4 passed"
    assert failed["stress"]["detail"] == "rates-2022: max drawdown 23% > 20%"
    assert not failed["verdict"]["passed"]
    # a scenario that was not in the batch
    partial = gate(hand_record(), stress_batch()[:1])
    assert partial["stress"]["status"] == "fail"
    assert "covid-2020: not in the batch" in partial["stress"]["detail"]
    # L4 in a scenario, and in the record itself
    l4 = gate(hand_record(), stress_batch(**{"gfc-2008": {"levels_reached": [1, 2, 3, 4]}}))
    assert l4["no_l4"]["status"] == "fail" and l4["no_l4"]["value"] == ["gfc-2008"]
    record_l4 = hand_record(levels=pd.Series({D(2021, 1, 1): 4}))
    both = gate(record_l4, stress_batch(**{"shock-20": {"l4_triggered": True}}))
    assert both["no_l4"]["value"] == ["the record", "shock-20"]
    allowed = evaluate(
        record_l4,
        config.model_copy(update={"pre_paper": PrePaperGate(min_years=4.0, allow_l4=True)}),
        stress_batch(),
        SCENARIOS,
    )
    assert allowed["verdict"]["passed"]
    # no stress batch: both rows lack data, the gate fails
    none = gate(hand_record(), [])
    assert none["stress"]["status"] == "insufficient_data"
    assert none["no_l4"]["status"] == "insufficient_data"
    assert "tiller stress" in none["stress"]["detail"] and not none["verdict"]["passed"]


def test_strict_comparisons_and_undefined_figures() -> None:
    # the design writes "> 10%" and "< 15%": a figure on the bound has not cleared it
    assert target_status(0.10, 0.10, 0.07, +1) == "minimum"
    assert target_status(0.07, 0.10, 0.07, +1) == "fail"
    assert target_status(0.15, 0.15, 0.18, -1) == "minimum"
    assert target_status(None, 0.15, 0.18, -1) == "insufficient_data"
    # no losing trade: profit factor undefined; no NAV at all: every figure undefined
    f = figures(hand_record(trade_pnls=(5.0, 7.0)))
    assert f["win_rate"] == 1.0 and f["profit_factor"] is None
    empty = evaluate(hand_record(nav=pd.Series(dtype=float)), GateConfig())
    assert {r["status"] for r in empty["targets"]} == {"insufficient_data"}
    assert not empty["verdict"]["passed"]
    # flat NAV: no drawdown, Calmar undefined
    flat = hand_record(nav=pd.Series(100_000.0, index=[D(2020, 1, 1), D(2023, 12, 31)]))
    assert figures(flat)["calmar"] is None and figures(flat)["max_drawdown"] == 0.0


def test_formatting() -> None:
    assert format_value(0.046177, "percent") == "4.62%"
    assert format_value(None, "number") == "n/a"
    assert format_value(["the record"], "list") == "the record" and format_value([], "list")
    row = {"rule": ">", "unit": "percent", "target": 0.10, "minimum": 0.015}
    assert format_threshold(row, "target") == "> 10%"
    assert format_threshold(row, "minimum") == "> 1.5%"
    assert format_threshold({"rule": ">=", "unit": "years", "threshold": 4.95}) == (">= 4.95 years")


# --------------------------------------------------------------------------- properties


@st.composite
def _daily_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(30, 90))  # annualised figures of a few days are meaningless
    # whole basis points: a path of near-constant 1e-12 returns has a Sharpe of 1e12
    # that no book size can reproduce to 7 digits (and no real record has)
    returns = [round(r, 4) for r in draw(st.lists(st.floats(-0.08, 0.08), min_size=n, max_size=n))]
    traded = draw(st.lists(st.floats(0.0, 50_000.0), min_size=n, max_size=n))
    costs = draw(st.lists(st.floats(0.0, 50.0), min_size=n, max_size=n))
    start = draw(st.dates(D(2000, 1, 1), D(2020, 1, 1)))
    gaps = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    days = [start + dt.timedelta(days=int(g)) for g in np.cumsum(gaps)]
    nav = 100_000.0 * np.cumprod(1.0 + np.asarray(returns))
    return pd.DataFrame(
        {
            "nav": nav,
            "traded": traded,
            "commission": costs,
            "slippage": np.asarray(costs) / 2,
            "level": 0,
        },
        index=days,
    )


def _record(daily: pd.DataFrame, scale: float = 1.0) -> GateRecord:
    return GateRecord(
        label="property",
        nav=daily["nav"] * scale,
        initial_capital=100_000.0 * scale,
        traded=daily["traded"] * scale,
        costs=float(daily["commission"].sum() + daily["slippage"].sum()) * scale,
        trade_pnls=tuple(daily["nav"].diff().dropna() * scale),
        levels=daily["level"],
    )


@given(_daily_frames())
@settings(max_examples=100, deadline=None)
def test_figures_agree_with_the_backtest_headline(daily: pd.DataFrame) -> None:
    f = figures(_record(daily))
    h = headline(daily, pd.DataFrame(), 100_000.0)
    for key, ours in (
        ("cagr", "annual_return"),
        ("volatility", "volatility"),
        ("sharpe", "sharpe"),
        ("max_drawdown", "max_drawdown"),
    ):
        if h[key] is None:
            assert f[ours] is None
        else:
            assert f[ours] == pytest.approx(h[key], rel=1e-9, abs=1e-12)
    assert f["monthly_turnover"] == pytest.approx(h["turnover_one_way"] / 12, rel=1e-9)
    # cost drag: costs per year / mean NAV, the headline's costs and span
    years = ((daily.index[-1] - daily.index[0]).days + 1) / 365.25
    drag = (daily["commission"].sum() + daily["slippage"].sum()) / years / daily["nav"].mean()
    assert f["cost_drag"] == pytest.approx(drag, rel=1e-9)


@given(_daily_frames(), st.floats(0.01, 1_000.0))
@settings(max_examples=100, deadline=None)
def test_figures_do_not_depend_on_the_size_of_the_book(daily: pd.DataFrame, k: float) -> None:
    one, scaled = figures(_record(daily)), figures(_record(daily, k))
    for name in TARGET_ROWS:
        if one[name] is None:
            assert scaled[name] is None
        else:
            assert scaled[name] == pytest.approx(one[name], rel=1e-7, abs=1e-12)


RANK = {"insufficient_data": -1, "fail": 0, "minimum": 1, "target": 2}


@given(
    st.floats(-5, 5),
    st.floats(-5, 5),
    st.floats(-5, 5),
    st.floats(0, 5),
    st.sampled_from([1, -1]),
)
def test_a_better_figure_never_has_a_worse_status(
    a: float, b: float, minimum: float, gap: float, direction: int
) -> None:
    target = minimum + gap * direction  # the target is at least as demanding
    worse, better = sorted((a, b), key=lambda v: v * direction)
    assert (
        RANK[target_status(better, target, minimum, direction)]
        >= RANK[target_status(worse, target, minimum, direction)]
    )


# --------------------------------------------------------------------------- backtests


def test_record_from_a_backtest_result() -> None:
    from tests.test_tearsheet import synthetic_result

    result = synthetic_result()
    record = record_from_backtest(result)
    daily = result.daily
    assert record.costs == pytest.approx(daily["commission"].sum() + daily["slippage"].sum())
    assert record.trade_pnls == ()  # the synthetic run only buys
    f = figures(record)
    assert f["sharpe"] == pytest.approx(
        headline(daily, result.trades, result.initial_capital)["sharpe"]
    )
    assert f["max_level"] == int(daily["level"].max())


def test_latest_stress_batch_per_profile(tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.test_tearsheet import synthetic_result
    from tiller.backtest.service import stress_rows
    from tiller.store.backtests import save_result, save_stress
    from tiller.store.repo import Store

    store = Store.open(f"sqlite:///{tmp_path / 'gate.db'}")
    for batch, profile in (("st-default", None), ("st-trend", "trend-rp")):
        base = synthetic_result(sessions=30)
        result = replace(base, run_id=f"bt-{batch}", config={"profile": profile})
        save_result(store, result, "stress")
        save_stress(
            store,
            batch,
            [
                {
                    "scenario": "covid-2020",
                    "run_id": result.run_id,
                    "description": "",
                    "start": result.start,
                    "end": result.end,
                    "max_drawdown": 0.05 if profile else 0.07,
                    "drawdown_limit": 0.18,
                    "max_level": 3,
                    "passed": True,
                    "reason": "ok",
                }
            ],
        )
    assert stress_rows(store)[0]["max_drawdown"] == 0.05  # the latest batch, any profile
    assert stress_rows(store, "trend-rp")[0]["max_drawdown"] == 0.05
    assert stress_rows(store, None)[0]["max_drawdown"] == 0.07
    assert stress_rows(store, "sixty-forty") == []


# --------------------------------------------------------------------------- weekly review


def test_weekly_review_shows_the_gate_on_the_paper_record() -> None:
    from tiller.reporting import WeeklyReportInputs, build_weekly_report, render_html

    record = hand_record(label="paper")
    inputs = WeeklyReportInputs(
        week_start=D(2023, 12, 25),
        week_end=D(2023, 12, 31),
        nav_history=record.nav,
        stress_results=stress_batch(),
        performance=record,
        stress_scenarios=SCENARIOS,
    )
    report = build_weekly_report(inputs)
    section = report["performance_gate"]
    assert section["available"] and section["verdict"]["verdict"] == "FAIL"
    assert [r["status"] for r in section["targets"]][:2] == ["fail", "fail"]
    assert section["figures"]["cost_drag"] == pytest.approx(0.005)
    assert report["go_no_go"]["verdict"] in ("GO", "NO-GO")  # unchanged, separate
    json.dumps(report)  # JSON-ready
    html = render_html(report, "weekly")
    assert 'id="performance-gate"' in html
    assert '<td>Annual return (CAGR)</td><td class="n">4.62%</td>' in html
    assert "minimum met" in html and "5-year record" in html
    # without a record the section says so
    bare = build_weekly_report(
        WeeklyReportInputs(D(2023, 12, 25), D(2023, 12, 31), nav_history=record.nav)
    )
    assert bare["performance_gate"] == {
        "available": False,
        "notes": ["The performance gate was not evaluated."],
    }
    assert "The performance gate was not evaluated." in render_html(bare, "weekly")


# --------------------------------------------------------------------------- the command


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


def test_gate_command_on_a_backtest_and_on_a_saved_run(tmp_path: Path) -> None:
    done = _tiller(
        tmp_path,
        "gate",
        "--start",
        "2020-01-01",
        "--end",
        "2020-12-31",
        "--no-benchmarks",
        "--json",
    )
    assert done.returncode == 1, done.stderr  # one year is not a 5-year record
    report = json.loads(done.stdout)
    assert report["verdict"]["verdict"] == "FAIL"
    assert [r["name"] for r in report["targets"]] == list(TARGET_ROWS)
    gate = {r["name"]: r for r in report["pre_paper"]}
    assert gate["years"]["status"] == "fail" and gate["stress"]["status"] == "insufficient_data"
    run = report["run"]
    assert run["start"] == "2020-01-02" and run["end"] == "2020-12-31"
    assert run["profile"] is None and Path(run["tearsheet"]).is_file()

    # the figures are the run's headline figures
    from tiller.settings import load_settings
    from tiller.store.backtests import load_result
    from tiller.store.repo import Store

    result = load_result(Store.open(load_settings(home=tmp_path).db_url), run["run_id"])
    m = result.metrics
    f = report["figures"]
    assert f["annual_return"] == pytest.approx(m["cagr"])
    assert f["sharpe"] == pytest.approx(m["sharpe"])
    assert f["max_drawdown"] == pytest.approx(m["max_drawdown"])
    assert f["monthly_turnover"] == pytest.approx(m["turnover_one_way"] / 12)

    # a saved run: the same figures, rendered as tables
    again = _tiller(tmp_path, "gate", "--run-id", run["run_id"])
    assert again.returncode == 1, again.stderr
    assert "Performance targets" in again.stdout and "Pre-paper gate" in again.stdout
    assert "Verdict: FAIL" in again.stdout and "Annual return (CAGR)" in again.stdout
    unknown = _tiller(tmp_path, "gate", "--run-id", "bt-nope")
    assert unknown.returncode == 2 and "tiller backtest list" in unknown.stderr
    half = _tiller(tmp_path, "gate", "--start", "2020-01-01")
    assert half.returncode == 2 and "both --start and --end" in half.stderr


def test_gate_exit_code_follows_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiller import cli
    from tiller.backtest import service

    report = evaluate(hand_record(), _loose(), stress_batch(), SCENARIOS)
    report["run"] = {
        "run_id": "bt-hand",
        "label": "hand",
        "profile": None,
        "start": D(2020, 1, 1),
        "end": D(2023, 12, 31),
        "cadence": "weekly",
        "tearsheet": None,
    }
    monkeypatch.setattr(service, "gate", lambda settings, **kwargs: report)
    runner = CliRunner()
    passed = runner.invoke(cli.app, ["gate", "--json"])
    assert passed.exit_code == 0, passed.output
    assert json.loads(passed.output)["verdict"]["verdict"] == "PASS"
    failing = evaluate(hand_record(), GateConfig(), stress_batch(), SCENARIOS)
    failing["run"] = report["run"]
    monkeypatch.setattr(service, "gate", lambda settings, **kwargs: failing)
    failed = runner.invoke(cli.app, ["gate"])
    assert failed.exit_code == 1
    assert "Verdict: FAIL" in failed.output and "target met" in failed.output
