"""Sweeps and walk-forward studies: grid files, resumable persistence, the serial and Dask
executors giving the same numbers, walk-forward windows without look-ahead, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import MARKET
from tiller.research.executor import DaskExecutor, ExecutorError, SerialExecutor, executor_for
from tiller.research.grid import GridError, read_grid, resolve
from tiller.research.objective import parse_objective
from tiller.research.sweep import run_sweep
from tiller.research.walkforward import run_walkforward, windows
from tiller.settings import load_settings
from tiller.store.repo import SWEEP_POINTS, SWEEP_RUNS, Store

SOURCES = f"csv:{MARKET}"


def write_grid(folder: Path, text: str, name: str = "grid.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


SMALL = """
name: small
profiles: [trend-rp]
periods:
  - {start: 2018-01-02, end: 2019-12-31}
parameters:
  optimize.lookback: [60, 120]
  optimize.cash_buffer: [0.05, 0.2]
objective: sharpe
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'research.db'}")


BASE = {"data_sources": SOURCES}


# ------------------------------------------------------------------------ grid files
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("periods: [{start: 2018-01-02, end: 2019-12-31}]\nparametres: {a: [1]}\n", ["parametres"]),
        ("periods: [{start: 2018-01-02, end: 2019-12-31}]\n", ["empty"]),
        ("parameters: {optimize.lookback: [60]}\n", ["no period"]),
        (
            "periods: [{start: 2019-12-31, end: 2018-01-02}]\nparameters: {x: [1, 2]}\n",
            ["start must come before"],
        ),
        (
            "periods: [{start: 2018-01-02, end: 2019-12-31}]\nparameters: {x: [1, 2]}\n"
            "objective: alpha\n",
            ["unknown metric", "sharpe"],
        ),
        ("- a\n- b\n", ["expected a mapping"]),
        (
            "periods: [{start: 2018-01-02, end: 2019-12-31}]\n"
            "parameters: {s: [{optimize.lookback: 60}, 120]}\n",
            ["s mixes mappings and plain values"],
        ),
        (
            "periods: [{start: 2018-01-02, end: 2019-12-31}]\n"
            "parameters: {s: [{optimize.lookback: 60}, {}], optimize.lookback: [90]}\n",
            ["optimize.lookback is set by both"],
        ),
    ],
)
def test_bad_grid_files_are_one_line(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(GridError) as info:
        read_grid(write_grid(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_a_bundle_varies_keys_together(tmp_path: Path) -> None:
    grid = read_grid(
        write_grid(
            tmp_path,
            "periods: [{start: 2018-01-02, end: 2019-12-31}]\n"
            "parameters:\n"
            "  signals:\n"
            "    - {strategy.signals.rule: rules}\n"
            "    - {strategy.signals.rule: trend, strategy.signals.trend_exit_band: 0.02}\n"
            "  optimize.lookback: [126, 252]\n",
        )
    )
    # 2 bundles x 2 lookbacks, not 2 x 2 x 2: the exit band only comes with the trend rule
    assert [dict(p.params) for p in grid.points()] == [
        {"strategy.signals.rule": "rules", "optimize.lookback": 126},
        {"strategy.signals.rule": "rules", "optimize.lookback": 252},
        {
            "strategy.signals.rule": "trend",
            "strategy.signals.trend_exit_band": 0.02,
            "optimize.lookback": 126,
        },
        {
            "strategy.signals.rule": "trend",
            "strategy.signals.trend_exit_band": 0.02,
            "optimize.lookback": 252,
        },
    ]
    settings = resolve(grid.points()[2], BASE)
    assert settings.strategy.signals.rule == "trend"
    assert settings.strategy.signals.trend_exit_band == 0.02


def test_an_unknown_key_or_a_refused_value_names_the_point(tmp_path: Path, store: Store) -> None:
    grid = read_grid(
        write_grid(
            tmp_path,
            "periods: [{start: 2018-01-02, end: 2019-12-31}]\n"
            "parameters: {optimize.lookbak: [60, 120]}\n",
        )
    )
    with pytest.raises(GridError) as info:
        run_sweep(grid, store, SerialExecutor(), BASE)
    message = str(info.value)
    assert "optimize.lookbak" in message and "unknown key" in message and "\n" not in message
    grid = read_grid(
        write_grid(
            tmp_path,
            "periods: [{start: 2018-01-02, end: 2019-12-31}]\n"
            "parameters: {optimize.cash_buffer: [0.05, 1.5]}\n",
        )
    )
    with pytest.raises(GridError, match="cash_buffer=1.5"):
        run_sweep(grid, store, SerialExecutor(), BASE)
    # nothing half-written: validation comes before the study row
    assert store.select(SWEEP_RUNS.select()).empty


def test_cli_refuses_a_bad_grid_in_one_line(tmp_path: Path) -> None:
    bad = write_grid(tmp_path, "periods: [{start: 2018-01-02, end: 2019-12-31}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "tiller.cli", "sweep", "--grid", str(bad), "--executor", "serial"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TILLER_HOME": str(tmp_path / "home")},
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "empty" in lines[0]


def test_executor_specs() -> None:
    assert executor_for("serial").name == "serial"
    assert executor_for("local").name == "local"
    assert executor_for("tcp://127.0.0.1:8786").name == "tcp://127.0.0.1:8786"
    with pytest.raises(ExecutorError, match="use serial, local, or tcp"):
        executor_for("threads")


def test_an_unreachable_scheduler_is_one_line() -> None:
    with pytest.raises(ExecutorError) as info, DaskExecutor("tcp://127.0.0.1:9", timeout=2):
        pass
    message = str(info.value)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in message
    assert "\n" not in message


def test_objective_scores_hand_worked() -> None:
    metrics = {"sharpe": 0.8, "turnover_two_way": 4.0, "max_drawdown": 0.2, "cagr": 0.06}
    # 0.8 - 0.05 x 4.0 - 1.0 x 0.2 = 0.8 - 0.2 - 0.2 = 0.4
    penalised = parse_objective(
        {"metric": "sharpe", "turnover_penalty": 0.05, "drawdown_penalty": 1}
    )
    assert penalised.score(metrics) == pytest.approx(0.4)
    assert parse_objective("calmar").score(metrics) == pytest.approx(0.06 / 0.2)
    assert parse_objective("sharpe").score({"sharpe": None}) == -np.inf


# ----------------------------------------------------------------- sweep persistence
def test_a_rerun_computes_nothing_and_a_lost_point_is_recomputed(
    tmp_path: Path, store: Store
) -> None:
    grid = read_grid(write_grid(tmp_path, SMALL))
    first, table = run_sweep(grid, store, SerialExecutor(), BASE)
    assert (first.total, first.computed, first.reused) == (4, 4, 0)
    assert table["score"].notna().all() and len(table) == 4
    again, same = run_sweep(grid, store, SerialExecutor(), BASE)
    assert (again.computed, again.reused) == (0, 4)
    pd.testing.assert_frame_equal(table, same)
    # a point lost (e.g. its chunk was in flight when the process died) is recomputed alone
    with store.transaction() as tx:
        lost = table["point_hash"].iloc[2]
        tx.execute(SWEEP_POINTS.delete().where(SWEEP_POINTS.c.point_hash == lost))
    third, after = run_sweep(grid, store, SerialExecutor(), BASE)
    assert (third.computed, third.reused) == (1, 3)
    pd.testing.assert_frame_equal(table, after)


@pytest.mark.slow
def test_a_local_cluster_gives_the_serial_numbers_point_by_point(
    tmp_path: Path, store: Store
) -> None:
    grid = read_grid(write_grid(tmp_path, SMALL))
    _, serial = run_sweep(grid, store, SerialExecutor(), BASE)
    other = Store.open(f"sqlite:///{tmp_path / 'cluster.db'}")
    with DaskExecutor(workers=2) as cluster:
        assert cluster.workers == 2
        run, parallel = run_sweep(grid, other, cluster, BASE)
    assert run.computed == 4
    pd.testing.assert_frame_equal(serial, parallel)
    workers = set(other.select(SWEEP_POINTS.select())["worker"])
    assert len(workers) == 2  # both worker processes computed points


# ---------------------------------------------------------------------- walk-forward
def test_windows_roll_by_the_test_length() -> None:
    steps = windows(date(2010, 1, 1), date(2016, 6, 30), 3, 2)
    assert [(s.train_start, s.train_end, s.test_start, s.test_end) for s in steps] == [
        (date(2010, 1, 1), date(2012, 12, 31), date(2013, 1, 1), date(2014, 12, 31)),
        (date(2012, 1, 1), date(2014, 12, 31), date(2015, 1, 1), date(2016, 6, 30)),
    ]
    with pytest.raises(GridError, match="shorter than one train window"):
        windows(date(2010, 1, 1), date(2012, 6, 30), 3, 1)


def _synthetic_csv(folder: Path, first: str, last: str, turn: str) -> Path:
    """AAA rises 0.1% a session until ``turn`` and falls 0.1% after; BBB is flat-ish.
    Both are XNYS ETFs of the universe table (SPY and TLT); VIX a constant 15."""
    from tiller.calendars import sessions

    days = sessions("XNYS", date.fromisoformat(first), date.fromisoformat(last))
    turn_at = pd.Timestamp(turn)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    up = np.where(days < turn_at, 0.001, -0.001) + rng.normal(0, 0.002, len(days))
    flat = rng.normal(0, 0.002, len(days))
    for symbol, moves in (("SPY", up), ("TLT", flat)):
        close = 100 * np.cumprod(1 + moves)
        frame = pd.DataFrame(
            {
                "date": days.strftime("%Y-%m-%d"),
                "open": close,
                "high": close * 1.001,
                "low": close * 0.999,
                "close": close,
                "adj_close": close,
                "volume": 1e7,
            }
        )
        frame.to_csv(folder / f"{symbol}.csv", index=False)
    vix = pd.DataFrame(
        {
            "date": days.strftime("%Y-%m-%d"),
            "open": 15.0,
            "high": 15.0,
            "low": 15.0,
            "close": 15.0,
            "adj_close": "",
            "volume": "",
        }
    )
    vix.to_csv(folder / "VIX.csv", index=False)
    return folder


FIXED_MIX = """
name: exposure
periods:
  - {start: 2015-01-02, end: 2018-12-31}
parameters:
  optimize.cash_buffer: [0.1, 0.9]
objective: total_return
"""

FIXED_BASE = {
    "universe": "SPY,TLT",
    "assets": {"SPY": {"max_weight": 1.0}, "TLT": {"max_weight": 1.0}},
    "optimize": {
        "method": "fixed",
        "fixed_weights": {"SPY": 1.0},
        "min_weight_change": 0.0,
        "min_trade_value": 0,
        "max_turnover": 2.0,
    },
    "execution": {"fill_price": "close", "fractional": True},
    "backtest": {"cadence": "monthly"},
    "risk": {
        "levels": {"L1": 0.96, "L2": 0.97, "L3": 0.98, "L4": 0.99},
        "asset_stop_halve": 0.98,
        "asset_stop_exit": 0.99,
        "kill_daily_loss": 0.99,
    },
}


def test_walkforward_picks_the_known_best_point_per_window(tmp_path: Path, store: Store) -> None:
    # SPY (the whole fixed mix) rises ~0.1% a session through 2016 (about +28% a year)
    # and falls as fast from 2017.  One-year train windows: in a rising year 90% invested
    # (cash buffer 0.1) ends higher than 10% invested; in a falling year the reverse.
    data = _synthetic_csv(tmp_path / "data", "2014-06-02", "2018-12-31", "2017-01-03")
    grid = read_grid(write_grid(tmp_path, FIXED_MIX))
    base = {**FIXED_BASE, "data_sources": f"csv:{data}"}
    result = run_walkforward(grid, 1, 1, store, SerialExecutor(), base)
    assert [(s["train"], s["test"]) for s in result.steps] == [
        ("2015-01-02..2016-01-01", "2016-01-02..2017-01-01"),
        ("2016-01-02..2017-01-01", "2017-01-02..2018-01-01"),
        ("2017-01-02..2018-01-01", "2018-01-02..2018-12-31"),
    ]
    chosen = [s["params"]["optimize.cash_buffer"] for s in result.steps]
    assert chosen == [0.1, 0.1, 0.9]  # rising, rising, falling train years
    # the stitched record covers the three test windows, 2016 to 2018
    assert result.nav.index[0] >= pd.Timestamp("2016-01-04")
    assert result.nav.index[-1] == pd.Timestamp("2018-12-31")
    assert result.metrics["final_nav"] == pytest.approx(float(result.nav.iloc[-1]))
    # 2017 is the cost of learning: 90% invested in the first falling year (the choice of
    # the rising 2016) loses out of sample what it won in sample
    assert result.steps[1]["oos_score"] < 0 < result.steps[1]["is_score"]


def test_walkforward_choices_ignore_data_after_their_train_window(
    tmp_path: Path, store: Store
) -> None:
    data = _synthetic_csv(tmp_path / "data", "2014-06-02", "2018-12-31", "2017-01-03")
    grid = read_grid(write_grid(tmp_path, FIXED_MIX))
    base = {**FIXED_BASE, "data_sources": f"csv:{data}"}
    before = run_walkforward(grid, 1, 1, store, SerialExecutor(), base)
    # scramble every price after the first train window's end (2016-01-01)
    for symbol in ("SPY", "TLT"):
        path = data / f"{symbol}.csv"
        frame = pd.read_csv(path)
        later = frame["date"] > "2016-01-01"
        noise = np.random.default_rng(9).uniform(0.5, 1.5, later.sum())
        for column in ("open", "high", "low", "close", "adj_close"):
            frame.loc[later, column] = frame.loc[later, column] * noise
        frame.to_csv(path, index=False)
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    after = run_walkforward(grid, 1, 1, other, SerialExecutor(), base)
    assert after.steps[0]["chosen"] == before.steps[0]["chosen"]
    assert after.steps[0]["is_score"] == before.steps[0]["is_score"]
    assert after.steps[0]["is_sharpe"] == before.steps[0]["is_sharpe"]
    # ... while the test windows, which read the altered data, changed
    assert after.steps[0]["oos_score"] != before.steps[0]["oos_score"]


# ------------------------------------------------------------------ the CLI and flow
@pytest.mark.slow
def test_cli_sweep_json_and_report(tmp_path: Path) -> None:
    grid = write_grid(tmp_path, SMALL)
    env = {"PATH": "/usr/bin:/bin", "TILLER_HOME": str(tmp_path / "home")}
    env["TILLER_DATA_SOURCES"] = SOURCES
    command = [sys.executable, "-m", "tiller.cli", "sweep", "--grid", str(grid)]
    done = subprocess.run(
        [*command, "--executor", "serial", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["points"] == 4 and summary["computed"] == 4
    assert len(summary["best"]) == 4
    html = Path(summary["report"]).read_text()
    assert "Objective over the two parameters" in html  # the 2-D heatmap
    report = json.loads(Path(summary["json"]).read_text())
    assert len(report["points"]) == 4


def test_the_research_sweep_flow_publishes_progress_and_a_summary(
    tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from flows.research_sweep import research_sweep

    monkeypatch.setenv("TILLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TILLER_DATA_SOURCES", SOURCES)
    grid = write_grid(tmp_path, SMALL)
    summary = research_sweep(str(grid), executor="serial")
    assert summary["computed"] == 4

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts()

    import asyncio

    found = {a.key: a for a in asyncio.run(artifacts()) if a.key}
    assert "sweep-summary" in found and "sweep-progress" in found
    assert found["sweep-progress"].data == 100.0
    assert summary["study_id"] in str(found["sweep-summary"].data)
    assert load_settings(home=tmp_path / "home").home_dir.joinpath("research").is_dir()
