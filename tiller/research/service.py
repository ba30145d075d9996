"""Study use cases for the CLI and the ``research-sweep`` flow: read the grid, run it on
an executor, write the report, summarise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiller.research.executor import executor_for
from tiller.research.grid import read_grid
from tiller.research.report import table_records, write_report
from tiller.research.sweep import Progress, best, run_sweep
from tiller.research.walkforward import run_walkforward
from tiller.settings import Settings
from tiller.store.repo import Store


def _base(settings: Settings) -> dict[str, Any]:
    """What every point inherits from the caller's settings: the data sources (the
    environment's TILLER_DATA_SOURCES), never the paths of this machine."""
    return {"data_sources": list(settings.data_sources)}


def sweep_study(
    settings: Settings,
    grid_path: Path,
    executor: str = "local",
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or resume) the sweep of ``grid_path``; write its report; return a summary."""
    grid = read_grid(grid_path)
    store = Store.open(settings.db_url)
    with executor_for(executor, workers) as running:
        run, table = run_sweep(grid, store, running, _base(settings), progress)
    summary = (
        f"{run.total} points: {run.computed} computed now, {run.reused} from earlier runs, "
        f"{len(run.failed)} failed; executor {running.name}"
    )
    json_path, html_path = write_report(
        settings.home_dir / "research", run.sweep_id, grid, table, summary
    )
    return {
        "study_id": run.sweep_id,
        "kind": "sweep",
        "points": run.total,
        "computed": run.computed,
        "reused": run.reused,
        "failed": [{"point": p, "error": e} for p, e in run.failed],
        "objective": grid.objective.describe(),
        "best": table_records(best(table)),
        "report": str(html_path),
        "json": str(json_path),
    }


def walkforward_study(
    settings: Settings,
    grid_path: Path,
    train_years: int,
    test_years: int,
    objective: str | None = None,
    executor: str = "local",
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or resume) a walk-forward of ``grid_path``; write its report; summarise."""
    grid = read_grid(grid_path)
    if objective is not None:
        from dataclasses import replace

        from tiller.research.grid import GridError
        from tiller.research.objective import parse_objective

        try:
            grid = replace(grid, objective=parse_objective(objective))
        except ValueError as exc:
            raise GridError(f"--objective {objective!r}: {exc}") from None
    store = Store.open(settings.db_url)
    with executor_for(executor, workers) as running:
        result = run_walkforward(
            grid, train_years, test_years, store, running, _base(settings), progress
        )
    computed = sum(r.computed for r in result.runs)
    reused = sum(r.reused for r in result.runs)
    failed = [f for r in result.runs for f in r.failed]
    summary = (
        f"{len(result.steps)} steps of {train_years} year(s) train / {test_years} test; "
        f"{computed} points computed now, {reused} from earlier runs, {len(failed)} failed; "
        f"executor {running.name}"
    )
    from tiller.research.sweep import results_table

    table = results_table(store, result.sweep_id, result.planned, grid.objective)
    json_path, html_path = write_report(
        settings.home_dir / "research", result.sweep_id, grid, table, summary, result
    )
    return {
        "study_id": result.sweep_id,
        "kind": "walkforward",
        "steps": result.steps,
        "out_of_sample": result.metrics,
        "degradation": result.degradation,
        "computed": computed,
        "reused": reused,
        "failed": [{"point": p, "error": e} for p, e in failed],
        "objective": grid.objective.describe(),
        "report": str(html_path),
        "json": str(json_path),
    }
