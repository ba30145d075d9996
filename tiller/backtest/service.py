"""Backtest use cases for the CLI, the weekly review and notebooks: run, persist, render.

These functions touch the store and the file system; the replay itself is the pure
:func:`tiller.backtest.engine.run_backtest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from tiller.backtest.data import load_market, market_from_store
from tiller.backtest.engine import BacktestError, MarketHistory, run_backtest
from tiller.backtest.metrics import headline
from tiller.backtest.result import BacktestResult, BenchmarkRun
from tiller.backtest.stress import evaluate, shocked, verdict
from tiller.errors import TillerError
from tiller.portfolio.cadence import Cadence
from tiller.settings import Settings, StressScenario, load_settings, profile_path
from tiller.store.backtests import (
    ANY_PROFILE,
    BENCHMARK,
    find_benchmark,
    latest_stress,
    load_result,
    risk_levels,
    save_result,
    save_stress,
)
from tiller.store.repo import Store
from tiller.store.reports import nav_history

BENCHMARK_PROFILES: tuple[str, ...] = ("buy-and-hold-spy", "sixty-forty", "trend-rp")
"""The reference strategies every tearsheet compares a run with (``config/profiles``)."""

BENCHMARK_CACHE_VERSION = 1
"""Part of the benchmark cache key: bump it when a change to the engine changes results."""


@dataclass(frozen=True)
class SavedRun:
    """A persisted run and where its tearsheet is."""

    result: BacktestResult
    tearsheet: Path

    benchmarks: tuple[BenchmarkRun, ...] | None = None

    def summary(self) -> dict[str, Any]:
        """The run id, profile, window, cadence, headline metrics, tearsheet path and the
        benchmark runs (``--json``)."""
        r = self.result
        return {
            "run_id": r.run_id,
            "label": r.label,
            "profile": r.config.get("profile"),
            "start": r.start.isoformat(),
            "end": r.end.isoformat(),
            "cadence": r.cadence,
            "metrics": r.metrics,
            "delisted": dict(r.config.get("delisted", {})),
            "no_data": list(r.config.get("no_data", [])),
            "tearsheet": str(self.tearsheet),
            "benchmarks": None
            if self.benchmarks is None
            else [
                {
                    "profile": b.profile,
                    "run_id": b.result.run_id if b.result else None,
                    "cached": b.cached,
                    "reason": b.reason,
                }
                for b in self.benchmarks
            ],
        }


def write_tearsheet(
    settings: Settings, result: BacktestResult, benchmarks: Sequence[BenchmarkRun] | None = None
) -> Path:
    """Render the tearsheet (with the benchmark runs, when given) to
    ``TILLER_HOME/backtests/<run_id>.html``."""
    from tiller.reporting.tearsheet import render_tearsheet

    folder = settings.home_dir / "backtests"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.run_id}.html"
    path.write_text(render_tearsheet(result, benchmarks=benchmarks), encoding="utf-8")
    return path


def current_profile() -> str | None:
    """The configuration profile in force (``TILLER_PROFILE``, by its file's name), or None."""
    path = profile_path()
    return None if path is None else path.stem


def _with_profile(result: BacktestResult, profile: str | None) -> BacktestResult:
    """``result`` with the profile it ran under in its ``config`` (saved with the run)."""
    return replace(result, config={**result.config, "profile": profile})


def backtest(
    settings: Settings,
    start: date,
    end: date,
    *,
    cadence: Cadence | None = None,
    label: str = "backtest",
    store: Store | None = None,
    market: MarketHistory | None = None,
    progress: Callable[[int, int], None] | None = None,
    benchmarks: bool = True,
) -> SavedRun:
    """Replay ``[start, end]`` on the configured data sources, save the run (with the
    profile in force), write its tearsheet with the benchmark runs (:func:`benchmark_runs`;
    ``benchmarks=False`` leaves them out).  ``progress(sessions done, total)`` follows the
    replay (see :func:`~tiller.backtest.engine.run_backtest`)."""
    market = market or load_market(settings, start, end)
    result = run_backtest(
        settings, market, start, end, cadence=cadence, label=label, progress=progress
    )
    result = _with_profile(result, current_profile())
    store = store or Store.open(settings.db_url)
    save_result(store, result, "backtest")
    references = benchmark_runs(settings, result.start, result.end, store) if benchmarks else None
    return SavedRun(
        result,
        write_tearsheet(settings, result, references),
        None if references is None else tuple(references),
    )


def stress(
    settings: Settings,
    names: Sequence[str] | None = None,
    store: Store | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    benchmarks: bool = True,
) -> dict[str, Any]:
    """Run the configured stress scenarios (all, or ``names``), save the runs (with the
    profile in force) and the batch; each tearsheet shows the benchmark runs on the
    scenario's (shocked) data unless ``benchmarks=False``.

    ``progress(scenario name, sessions done, total)`` follows each scenario's replay.

    Returns
    -------
    dict
        ``batch_id``, ``scenarios`` (one outcome each, see
        :func:`tiller.backtest.stress.evaluate`) and the ``verdict``.

    Raises
    ------
    BacktestError
        An unknown scenario name (the message lists the configured ones).
    """
    scenarios = list(settings.stress.scenarios)
    if names:
        known = {s.name for s in scenarios}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise BacktestError(
                f"unknown stress scenario {', '.join(unknown)}; configured: "
                f"{', '.join(sorted(known))} (config/backtest.yaml)"
            )
        scenarios = [s for s in scenarios if s.name in names]
    if not scenarios:
        raise BacktestError("no stress scenario configured (config/backtest.yaml, stress)")
    store = store or Store.open(settings.db_url)
    market = load_market(settings, min(s.start for s in scenarios), max(s.end for s in scenarios))
    batch_id = f"st-{uuid.uuid4().hex[:12]}"
    outcomes = []
    profile = current_profile()
    for scenario in scenarios:
        result = run_backtest(
            settings,
            shocked(market, scenario),
            scenario.start,
            scenario.end,
            label=f"stress {scenario.name}",
            progress=_named(progress, scenario.name),
        )
        result = _with_profile(result, profile)
        save_result(store, result, "stress")
        references = (
            benchmark_runs(settings, result.start, result.end, store, scenario)
            if benchmarks
            else None
        )
        write_tearsheet(settings, result, references)
        outcomes.append(evaluate(result, scenario, settings.stress))
    save_stress(store, batch_id, outcomes)
    return {
        "batch_id": batch_id,
        "scenarios": outcomes,
        "verdict": verdict(outcomes, settings.stress),
    }


def _named(
    progress: Callable[[str, int, int], None] | None, name: str
) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def stress_rows(store: Store, profile: str | None = ANY_PROFILE) -> list[dict[str, Any]]:
    """The latest stress batch as the weekly review shows it (with the levels reached);
    ``profile``: the latest batch run under that profile (None: no profile), see
    :func:`tiller.store.backtests.latest_stress`."""
    frame = latest_stress(store, profile)
    rows = []
    for r in frame.to_dict("records"):
        reached = sorted(v for v in risk_levels(store, r["run_id"]) if v > 0)
        rows.append(
            {
                "scenario": r["scenario"],
                "max_drawdown": float(r["max_drawdown"]),
                "limit": float(r["drawdown_limit"]),
                "passed": bool(r["passed"]),
                "l4_triggered": 4 in reached,
                "levels_reached": reached,
                "reason": r["reason"],
            }
        )
    return rows


def paper_deviation(store: Store, settings: Settings, as_of: date) -> dict[str, Any] | None:
    """Paper record vs a backtest over the same sessions, on the same stored bars.

    The backtest rebalances on the paper flow's cadence (``backtest.cadence``).  Returns
    the weekly review's
    ``deviation`` inputs (Sharpe, total return and max drawdown of each) plus the run id,
    or None with fewer than two paper sessions.
    """
    navs = nav_history(store, as_of)
    if len(navs) < 2:
        return None
    first = pd.Timestamp(navs["as_of"].iloc[0]).date()
    market = market_from_store(store, settings, first, as_of)
    result = run_backtest(settings, market, first, as_of, label="paper compare")
    save_result(store, result, "compare")
    paper_daily = pd.DataFrame(
        {
            "nav": navs["nav"].astype(float).to_numpy(),
            "drawdown": 0.0,
            "traded": 0.0,
            "commission": 0.0,
            "slippage": 0.0,
            "level": 0,
        },
        index=[pd.Timestamp(d).date() for d in navs["as_of"]],
    )
    peak = paper_daily["nav"].cummax()
    paper_daily["drawdown"] = 1.0 - paper_daily["nav"] / peak
    paper = headline(paper_daily, pd.DataFrame(), settings.optimize.initial_capital)
    back = result.metrics
    return {
        "run_id": result.run_id,
        "paper_sharpe": paper.get("sharpe"),
        "backtest_sharpe": back.get("sharpe"),
        "paper_return": paper.get("total_return"),
        "backtest_return": back.get("total_return"),
        "paper_drawdown": paper.get("max_drawdown"),
        "backtest_drawdown": back.get("max_drawdown"),
    }


# --------------------------------------------------------------------------- benchmarks

_SHARED_ENV = ("TILLER_CONFIG_DIR", "TILLER_MASSIVE_API_KEY", "TILLER_FRED_API_KEY")
"""``TILLER_*`` variables a benchmark's settings keep; the others (strategy, risk, universe
overrides) belong to the run being compared, not to the reference strategy."""


@contextmanager
def _profile_environment(name: str) -> Iterator[None]:
    """``TILLER_PROFILE=name`` with the run's other ``TILLER_*`` overrides set aside."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("TILLER_")}
    for key in saved:
        if key not in _SHARED_ENV:
            del os.environ[key]
    os.environ["TILLER_PROFILE"] = name
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("TILLER_")]:
            del os.environ[key]
        os.environ.update(saved)


def profile_settings(settings: Settings, name: str) -> Settings:
    """The settings of profile ``name`` on the data of ``settings``: the configuration
    folder with ``config/profiles/<name>.yaml`` on top, and ``settings``' home, database,
    data sources (and their settings), history start, synthetic seed, volatility index and
    initial capital.  The environment's other ``TILLER_*`` overrides are not applied."""
    with _profile_environment(name):
        return load_settings(
            home=settings.home,
            database_url=settings.database_url,
            data_sources=settings.data_sources,
            history_start=settings.history_start,
            synthetic_seed=settings.synthetic_seed,
            volatility_index=settings.volatility_index,
            data=settings.data.model_dump(),
            optimize={"initial_capital": settings.optimize.initial_capital},
        )


def _source_stamps(settings: Settings) -> list[str]:
    """Each data source, with the newest modification time of its files for ``csv``."""
    stamps = []
    for source in settings.data_sources:
        stamp = str(source)
        path = source.path
        if path is not None and path.exists():
            files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
            stamp += f"@{max((p.stat().st_mtime_ns for p in files), default=0)}"
        stamps.append(stamp)
    return stamps


def benchmark_key(
    settings: Settings, name: str, start: date, end: date, scenario: StressScenario | None = None
) -> str:
    """The cache key of a benchmark run: profile, window, data sources (with their files'
    modification times), the benchmark's settings and the stress scenario's shock."""
    secret = {"massive_api_key", "alpaca_api_key", "alpaca_secret_key", "fred_api_key"}
    local = {"home", "database_url", "notify_urls", "alerts", "log_level", "broker"}
    payload = {
        "version": BENCHMARK_CACHE_VERSION,
        "profile": name,
        "window": [start.isoformat(), end.isoformat()],
        "sources": _source_stamps(settings),
        "settings": settings.model_dump(mode="json", exclude=secret | local),
        "shock": None
        if scenario is None or scenario.shock is None
        else [scenario.shock, str(scenario.shock_date)],
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def benchmark_runs(
    settings: Settings,
    start: date,
    end: date,
    store: Store,
    scenario: StressScenario | None = None,
    profiles: Sequence[str] = BENCHMARK_PROFILES,
) -> list[BenchmarkRun]:
    """The reference strategies over ``[start, end]`` on the same data as ``settings``.

    Each is an ordinary backtest of its profile (:func:`profile_settings`), with the
    stress scenario's shock applied when given.  A run is saved in the store as a
    ``benchmark`` run keyed by :func:`benchmark_key` and read back from there the next
    time.  A profile whose data is missing (no bars for one of its symbols, a window past
    the data's end, an unknown profile) comes back with ``reason`` instead of a run.
    """
    out: list[BenchmarkRun] = []
    for name in profiles:
        try:
            reference = profile_settings(settings, name)
        except TillerError as exc:
            out.append(BenchmarkRun(name, reason=str(exc)))
            continue
        key = benchmark_key(reference, name, start, end, scenario)
        cached = find_benchmark(store, key)
        if cached is not None:
            out.append(BenchmarkRun(name, cached, cached=True))
            continue
        try:
            market = load_market(reference, start, end)
            if scenario is not None:
                market = shocked(market, scenario)
            result = run_backtest(reference, market, start, end, label=f"benchmark {name}")
        except TillerError as exc:
            out.append(BenchmarkRun(name, reason=str(exc)))
            continue
        missing = list(result.config.get("no_data", []))
        if missing:
            out.append(
                BenchmarkRun(
                    name,
                    reason=f"no data for {', '.join(missing)} from {start} to {end} in "
                    f"{', '.join(str(s) for s in reference.data_sources)}",
                )
            )
            continue
        result = replace(result, config={**result.config, "profile": name, "benchmark_key": key})
        save_result(store, result, BENCHMARK)
        out.append(BenchmarkRun(name, result))
    return out


# --------------------------------------------------------------------------- gate


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def data_end(settings: Settings, market: MarketHistory) -> date:
    """The last date a backtest on ``market`` may end on: the volatility index's last bar
    or the universe's last bar, whichever is earlier (as the engine checks it)."""
    bars = market.bars[market.bars["symbol"].isin(settings.symbols)]
    if bars.empty or market.vix.empty:
        raise BacktestError(
            f"no bars for {', '.join(settings.symbols)} or {settings.volatility_index}; "
            "check TILLER_DATA_SOURCES"
        )
    return min(
        pd.Timestamp(bars["date"].max()).date(), pd.Timestamp(market.vix["date"].max()).date()
    )


def available_window(settings: Settings, years: int) -> tuple[date, date, MarketHistory]:
    """The last ``years`` of the data the configured sources hold: ``(start, end,
    market)`` with ``end`` = :func:`data_end` and ``start`` the day after ``end`` less
    ``years`` years (2025-09-26 -> 2020-09-27)."""
    from tiller.calendars import latest_completed_session

    today = latest_completed_session()
    probe = _years_before(today, years)
    market = load_market(settings, probe, today)
    end = data_end(settings, market)
    start = _years_before(end, years) + timedelta(days=1)
    if start < probe:  # the data end before today: fetch the window itself
        market = load_market(settings, start, end)
    return start, end, market


def gate(
    settings: Settings,
    *,
    start: date | None = None,
    end: date | None = None,
    run_id: str | None = None,
    run_stress: bool = False,
    benchmarks: bool = True,
    store: Store | None = None,
) -> dict[str, Any]:
    """The performance targets and the pre-paper gate on a backtest
    (:func:`tiller.backtest.gate.evaluate`).

    The record is the saved run ``run_id``, or a new backtest (saved, with its tearsheet)
    of ``[start, end]``, by default the last ``gate.pre_paper.years`` of available data
    (:func:`available_window`).  The stress side is the latest stress batch run under the
    record's profile (``run_stress``: run the configured scenarios now, under the profile
    in force).

    Returns
    -------
    dict
        The evaluation plus ``run``: ``run_id, label, profile, start, end, cadence,
        tearsheet`` (path or None).

    Raises
    ------
    BacktestError
        An unknown ``run_id``, a window without data.
    """
    from tiller.backtest.gate import evaluate as judge
    from tiller.backtest.gate import record_from_backtest

    store = store or Store.open(settings.db_url)
    tearsheet: Path | None
    if run_id is not None:
        try:
            result = load_result(store, run_id)
        except KeyError as exc:
            raise BacktestError(str(exc.args[0])) from None
        profile = result.config.get("profile") if "profile" in result.config else current_profile()
        path = settings.home_dir / "backtests" / f"{run_id}.html"
        tearsheet = path if path.is_file() else None
    else:
        market = None
        if start is None or end is None:
            start, end, market = available_window(settings, settings.gate.pre_paper.years)
        saved = backtest(
            settings, start, end, label="gate", store=store, market=market, benchmarks=benchmarks
        )
        result, tearsheet, profile = saved.result, saved.tearsheet, current_profile()
    if run_stress:
        stress(settings, store=store, benchmarks=benchmarks)
    report = judge(
        record_from_backtest(result),
        settings.gate,
        stress_rows(store, profile),
        [s.name for s in settings.stress.scenarios],
    )
    report["run"] = {
        "run_id": result.run_id,
        "label": result.label,
        "profile": profile,
        "start": result.start,
        "end": result.end,
        "cadence": result.cadence,
        "tearsheet": None if tearsheet is None else str(tearsheet),
    }
    return report
