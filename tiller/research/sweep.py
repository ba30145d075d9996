"""Parameter sweeps: every point of a grid backtested through the same engine, persisted
point by point and resumable.

A study is identified by its grid (``sw-<digest>``): running the same grid file again
reads the points already in the store and computes only the rest, so a crash, a killed
worker or an interrupted run loses at most the chunks that were in flight.  Points are
keyed by the hash of their full resolved configuration, window and data sources
(:func:`tiller.research.grid.point_hash`): two grid entries that resolve to the same
backtest are computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tiller.backtest.data import load_market
from tiller.backtest.engine import MarketHistory
from tiller.research.compute import PointResult, Task
from tiller.research.executor import Executor, chunked
from tiller.research.grid import Grid, Point, point_hash, validate
from tiller.research.objective import Objective
from tiller.settings import Settings
from tiller.store.repo import Store
from tiller.store.research import done_hashes, ensure_sweep, load_points, save_point

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PlannedPoint:
    """A grid point with its resolved settings and hash."""

    point: Point
    settings: Settings
    point_hash: str


@dataclass
class StudyRun:
    """What one run of a study did: points computed now, reused from the store, failed."""

    sweep_id: str
    total: int
    computed: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def plan(points: Sequence[Point], base: Mapping[str, Any] | None = None) -> list[PlannedPoint]:
    """Resolve and hash every point (every configuration error before any work)."""
    settings = validate(points, base)
    return [
        PlannedPoint(p, s, point_hash(s, p.start, p.end))
        for p, s in zip(points, settings, strict=True)
    ]


def shared_market(planned: Sequence[PlannedPoint]) -> MarketHistory:
    """The union of every point's bars over the union of their windows, loaded once
    (one load per distinct universe and data sources)."""
    start = min(p.point.start for p in planned)
    end = max(p.point.end for p in planned)
    seen: dict[tuple[Any, ...], Settings] = {}
    for p in planned:
        key = (tuple(p.settings.symbols), tuple(map(str, p.settings.data_sources)))
        seen.setdefault(key, p.settings)
    histories = [load_market(s, start, end) for s in seen.values()]
    if len(histories) == 1:
        return histories[0]
    bars = pd.concat([h.bars for h in histories], ignore_index=True)
    bars = bars.drop_duplicates(["symbol", "date"], keep="first")
    vix = pd.concat([h.vix for h in histories], ignore_index=True).drop_duplicates("date")
    return MarketHistory(bars=bars, vix=vix.sort_values("date").reset_index(drop=True))


def compute_points(
    store: Store,
    sweep_id: str,
    planned: Sequence[PlannedPoint],
    executor: Executor,
    progress: Progress | None = None,
) -> StudyRun:
    """Compute the planned points the store does not hold yet, persisting each result as
    it arrives."""
    unique: dict[str, PlannedPoint] = {}
    for p in planned:
        unique.setdefault(p.point_hash, p)
    run = StudyRun(sweep_id, len(unique))
    done = done_hashes(store, sweep_id)
    todo = [p for h, p in unique.items() if h not in done]
    run.reused = len(unique) - len(todo)
    if progress:
        progress(run.reused, run.total)
    if not todo:
        return run
    market = shared_market(todo)
    tasks = [Task(p.point_hash, p.settings, p.point.start, p.point.end) for p in todo]
    for results in executor.run(chunked(tasks), market):
        for result in results:
            _persist(store, sweep_id, unique[result.point_hash], result, run)
        if progress:
            progress(run.reused + run.computed + len(run.failed), run.total)
    return run


def _persist(
    store: Store, sweep_id: str, planned: PlannedPoint, result: PointResult, run: StudyRun
) -> None:
    point = planned.point
    if result.error is not None:
        run.failed.append((point.label, result.error))
        return
    save_point(
        store,
        sweep_id,
        result.point_hash,
        label=point.label,
        params=point.params,
        profile=point.profile,
        start=point.start,
        end=point.end,
        metrics=result.metrics,
        dates=result.dates,
        nav=result.nav,
        seconds=result.seconds,
        worker=result.worker,
    )
    run.computed += 1


def run_sweep(
    grid: Grid,
    store: Store,
    executor: Executor,
    base: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[StudyRun, pd.DataFrame]:
    """Run (or resume) a sweep of every grid point; return what this run did and the
    table of every point (:func:`results_table`)."""
    planned = plan(grid.points(), base)
    sweep_id = f"sw-{grid.digest()}"
    ensure_sweep(store, sweep_id, grid.name, "sweep", grid.raw)
    run = compute_points(store, sweep_id, planned, executor, progress)
    table = results_table(store, sweep_id, planned, grid.objective)
    return run, table


COLUMNS = (
    "cagr",
    "volatility",
    "sharpe",
    "max_drawdown",
    "turnover_two_way",
    "cost_drag",
    "max_level",
)


def results_table(
    store: Store, sweep_id: str, planned: Sequence[PlannedPoint], objective: Objective
) -> pd.DataFrame:
    """One row per planned point (grid order): profile, parameters, window, the headline
    metrics (``cost_drag`` included) and the objective's ``score``."""
    stored = load_points(store, sweep_id)
    by_hash = {row.point_hash: row for row in stored.itertuples()} if not stored.empty else {}
    rows = []
    for p in planned:
        found = by_hash.get(p.point_hash)
        row: dict[str, Any] = {
            "point_hash": p.point_hash,
            "label": p.point.label,
            "profile": p.point.profile,
            **{f"param:{k}": v for k, v in p.point.params.items()},
            "start": p.point.start,
            "end": p.point.end,
        }
        if found is not None:
            row |= {c: found.metrics.get(c) for c in COLUMNS}
            row["score"] = objective.score(found.metrics)
        rows.append(row)
    return pd.DataFrame(rows)


def best(table: pd.DataFrame, count: int = 5) -> pd.DataFrame:
    """The ``count`` highest scores (ties: grid order)."""
    if "score" not in table:
        return table.iloc[0:0]
    scored = table[table["score"].notna()]
    return scored.sort_values("score", ascending=False, kind="stable").head(count)
