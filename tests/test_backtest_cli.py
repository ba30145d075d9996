"""`tiller backtest` and `tiller stress` end to end on the real shared data, the daily
report of a backtest date, the stress criteria, and what the weekly review shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import MARKET
from tiller.backtest.engine import MarketHistory
from tiller.backtest.result import BacktestResult
from tiller.backtest.stress import evaluate, shocked, verdict
from tiller.settings import StressConfig, StressScenario


def _tiller(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TILLER_")}
    environment |= {
        "TILLER_HOME": str(home),
        "TILLER_DATA_SOURCES": f"csv:{MARKET}",
        # the Newton solver finds riskfolio's point (tests/test_optimize.py) in a
        # fraction of the time; the riskfolio path is exercised by test_backtest.py
        "TILLER_OPTIMIZE__SOLVER": "newton",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "tiller.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_backtest_list_and_daily_report_of_a_date(tmp_path: Path) -> None:
    done = _tiller(tmp_path, "backtest", "--start", "2020-01-01", "--end", "2020-06-30", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["start"] == "2020-01-02" and summary["end"] == "2020-06-30"
    assert summary["cadence"] == "weekly"  # the shipped default
    metrics = summary["metrics"]
    for key in (
        "final_nav",
        "cagr",
        "volatility",
        "sharpe",
        "max_drawdown",
        "trades",
        "turnover_one_way",
        "turnover_two_way",
        "costs",
    ):
        assert key in metrics
    assert metrics["trades"] > 0 and metrics["costs"] > 0
    tearsheet = Path(summary["tearsheet"])
    html = tearsheet.read_text()
    assert "Monthly returns" in html and summary["run_id"] in html

    listed = json.loads(_tiller(tmp_path, "backtest", "list", "--json").stdout)
    assert [r["run_id"] for r in listed] == [summary["run_id"]]

    report = _tiller(tmp_path, "backtest", "report", summary["run_id"], "--date", "2020-03-16")
    assert report.returncode == 0, report.stderr
    json_path, html_path = (Path(p) for p in report.stdout.split())
    daily = json.loads(json_path.read_text())
    assert daily["as_of"] == "2020-03-16" and daily["backtest"]["run_id"] == summary["run_id"]
    assert daily["risk"]["level"].startswith("L") and daily["summary"]["nav"] > 0
    assert "<html" in html_path.read_text().lower()

    weekend = _tiller(tmp_path, "backtest", "report", summary["run_id"], "--date", "2020-03-15")
    assert weekend.returncode == 2 and "not a session of backtest" in weekend.stderr
    unknown = _tiller(tmp_path, "backtest", "report", "bt-nope", "--date", "2020-03-16")
    assert unknown.returncode == 2 and "tiller backtest list" in unknown.stderr


def test_backtest_refuses_bad_arguments(tmp_path: Path) -> None:
    missing = _tiller(tmp_path, "backtest", "--start", "2020-01-01")
    assert missing.returncode == 2 and "give --start and --end" in missing.stderr
    backwards = _tiller(tmp_path, "backtest", "--start", "2020-02-01", "--end", "2020-01-01")
    assert backwards.returncode == 2 and "is after end" in backwards.stderr
    profile = _tiller(
        tmp_path, "backtest", "--profile", "nope", "--start", "2020-01-01", "--end", "2020-02-01"
    )
    assert profile.returncode == 2
    assert "no such profile" in profile.stderr and "sixty-forty" in profile.stderr
    no_data = _tiller(
        tmp_path,
        "backtest",
        "--start",
        "2020-01-01",
        "--end",
        "2020-02-01",
        TILLER_DATA_SOURCES=f"csv:{tmp_path}",
    )
    assert no_data.returncode == 2 and "TILLER_DATA_SOURCES" in no_data.stderr


@pytest.mark.slow
def test_stress_scenario_is_run_judged_saved_and_shown_in_the_weekly_review(
    tmp_path: Path,
) -> None:
    done = _tiller(tmp_path, "stress", "--scenario", "covid-2020", "--json")
    outcome = json.loads(done.stdout)
    assert done.returncode == (0 if outcome["verdict"]["passed"] else 1), done.stderr
    (row,) = outcome["scenarios"]
    assert row["scenario"] == "covid-2020" and row["drawdown_limit"] == 0.18
    assert 0 < row["max_drawdown"] < 1
    assert row["passed"] == (row["max_drawdown"] <= 0.18 and row["max_level"] < 4)

    from tiller.backtest.service import stress_rows
    from tiller.settings import load_settings
    from tiller.store.repo import Store

    settings = load_settings(home=tmp_path)
    rows = stress_rows(Store.open(settings.db_url))
    assert [r["scenario"] for r in rows] == ["covid-2020"]
    assert rows[0]["max_drawdown"] == pytest.approx(row["max_drawdown"])
    assert rows[0]["levels_reached"] == sorted(set(rows[0]["levels_reached"]))

    unknown = _tiller(tmp_path, "stress", "--scenario", "dotcom")
    assert unknown.returncode == 2 and "gfc-2008" in unknown.stderr


def test_shock_hits_every_price_from_its_date() -> None:
    days = pd.to_datetime(["2017-05-30", "2017-05-31", "2017-06-01", "2017-06-02"])
    bars = pd.DataFrame(
        {
            "symbol": "SPY",
            "date": days,
            "open": [240.0, 241.0, 242.0, 243.0],
            "high": [241.0, 242.0, 243.0, 244.0],
            "low": [239.0, 240.0, 241.0, 242.0],
            "close": [240.5, 241.5, 242.5, 243.5],
            "adj_close": [230.5, 231.5, 232.5, 233.5],
            "volume": 1e6,
        }
    )
    scenario = StressScenario(
        name="shock-20",
        start=date(2017, 1, 1),
        end=date(2017, 12, 31),
        max_drawdown=0.22,
        shock=-0.20,
        shock_date=date(2017, 6, 1),
    )
    hit = shocked(MarketHistory(bars, pd.DataFrame({"date": days, "close": 12.0})), scenario)
    # before the shock untouched; on and after it every price x 0.8: 242 -> 193.6 open
    assert hit.bars["open"].tolist() == pytest.approx([240.0, 241.0, 193.6, 194.4])
    assert hit.bars["close"].tolist() == pytest.approx([240.5, 241.5, 194.0, 194.8])
    assert hit.bars["adj_close"].iloc[2] == pytest.approx(186.0)
    # the close-to-close return into the shock day: 194.0 / 241.5 - 1 = -19.67%
    assert hit.bars["close"].iloc[2] / hit.bars["close"].iloc[1] - 1 == pytest.approx(
        -0.196687, abs=1e-6
    )
    assert hit.bars["volume"].tolist() == [1e6] * 4


def _result(drawdowns: list[float], levels: list[int]) -> BacktestResult:
    index = [date(2020, 3, d) for d in range(2, 2 + len(drawdowns))]
    daily = pd.DataFrame({"drawdown": drawdowns, "level": levels}, index=index)
    empty = pd.DataFrame()
    return BacktestResult(
        "bt-x", "stress", index[0], index[-1], "weekly", 1e5, daily, empty, empty, empty, {}
    )


def test_stress_pass_criteria_by_hand() -> None:
    config = StressConfig(max_mean_drawdown=0.18)
    window = {"start": date(2020, 2, 1), "end": date(2020, 6, 30)}
    covid = StressScenario(name="covid-2020", max_drawdown=0.18, **window)
    gfc = StressScenario(name="gfc-2008", max_drawdown=0.25, **window)
    ok = evaluate(_result([0.02, 0.12, 0.10], [0, 2, 2]), covid, config)
    assert ok["passed"] and ok["max_drawdown"] == 0.12 and ok["max_level"] == 2
    over = evaluate(_result([0.05, 0.19], [1, 3]), covid, config)
    assert not over["passed"] and "19.00% > limit 18.00%" in over["reason"]
    halted = evaluate(_result([0.05, 0.16], [1, 4]), gfc, config)
    assert not halted["passed"] and "L4 was triggered" in halted["reason"]
    # mean of 12% and 24% = 18%: not above 18%, passes (each within its own limit)
    fine = evaluate(_result([0.24], [3]), gfc, config)
    assert verdict([ok, fine], config) == {
        "passed": True,
        "mean_drawdown": pytest.approx(0.18),
        "reasons": [],
    }
    # 12% and 24.9%: mean 18.45% > 18% fails the set though each scenario passed
    worse = evaluate(_result([0.249], [3]), gfc, config)
    result = verdict([ok, worse], config)
    assert not result["passed"] and "mean scenario drawdown 18.45% > 18.00%" in result["reasons"]
    assert verdict([], config)["passed"] is False


def test_profiles_and_stress_settings_validate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tiller.errors import ConfigError
    from tiller.settings import load_settings

    monkeypatch.setenv("TILLER_PROFILE", "sixty-forty")
    settings: Any = load_settings()
    assert settings.symbols == ["SPY", "TLT"] and settings.optimize.fixed_weights == {
        "SPY": 0.6,
        "TLT": 0.4,
    }
    assert settings.assets["SPY"].max_weight == 1.0 and settings.assets["GLD"].max_weight == 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimize: {method: fixed}\n")
    monkeypatch.setenv("TILLER_PROFILE", str(bad))
    with pytest.raises(ConfigError, match="fixed_weights"):
        load_settings()
    with pytest.raises(ValueError, match="shock and shock_date go together"):
        StressScenario(
            name="x", start=date(2017, 1, 1), end=date(2017, 2, 1), max_drawdown=0.2, shock=-0.2
        )
