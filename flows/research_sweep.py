"""The ``research-sweep`` flow: a sweep as three coarse Prefect tasks (plan, compute on
the executor, report), not one Prefect task per point: thousands of tiny tasks would
congest the API, and the fan-out itself is Dask's job (:mod:`tiller.research.executor`).

Progress shows in the Prefect UI as a progress artifact (points done / total) and the
result as a markdown artifact with the best points and the report path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task

FLOW = "research-sweep"


@task(name="plan", persist_result=False)
def plan_sweep(grid: str) -> dict[str, Any]:
    """Read the grid and resolve every point (a configuration error fails here, before any
    backtest)."""
    from tiller.research.grid import read_grid
    from tiller.research.sweep import plan
    from tiller.settings import load_settings

    settings = load_settings()
    parsed = read_grid(Path(grid))
    planned = plan(parsed.points(), {"data_sources": list(settings.data_sources)})
    return {"name": parsed.name, "points": len({p.point_hash for p in planned})}


@task(name="compute-and-report", persist_result=False)
def compute_sweep(grid: str, executor: str, workers: int | None, total: int) -> dict[str, Any]:
    """Fan the points out on the executor, persist each as it comes back, write the
    report; update the progress artifact as chunks finish."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    from tiller.research.service import sweep_study
    from tiller.runtime import prepare_environment
    from tiller.settings import load_settings

    settings = load_settings()
    prepare_environment(settings)
    artifact = create_progress_artifact(
        progress=0.0, key="sweep-progress", description=f"points done of {total}"
    )
    assert isinstance(artifact, UUID)  # a sync task gets the id, not a coroutine

    def progress(done: int, all_points: int) -> None:
        update_progress_artifact(artifact, progress=100.0 * done / max(all_points, 1))

    return sweep_study(settings, Path(grid), executor, workers, progress)


@task(name="publish", persist_result=False)
def publish_sweep(summary: dict[str, Any]) -> None:
    """The best points and the report path as a markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    lines = [
        f"# Sweep {summary['study_id']}",
        f"{summary['points']} points: {summary['computed']} computed now, "
        f"{summary['reused']} reused, {len(summary['failed'])} failed; objective "
        f"{summary['objective']}",
        "",
        "| # | point | score | CAGR | Sharpe | max DD |",
        "|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(summary["best"], 1):
        lines.append(
            f"| {i} | {row['label']} | {_num(row.get('score'))} | {_pct(row.get('cagr'))} | "
            f"{_num(row.get('sharpe'))} | {_pct(row.get('max_drawdown'))} |"
        )
    lines += ["", f"Report: `{summary['report']}`"]
    create_markdown_artifact("\n".join(lines), key="sweep-summary")


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2%}"


@flow(name=FLOW, log_prints=True, persist_result=False)
def research_sweep(
    grid: str, executor: str = "local", workers: int | None = None
) -> dict[str, Any]:
    """Run (or resume) the sweep of the grid file ``grid`` on ``executor`` (serial,
    local, or tcp://HOST:PORT of a Dask scheduler)."""
    planned = plan_sweep(grid)
    summary = compute_sweep(grid, executor, workers, planned["points"])
    publish_sweep(summary)
    get_run_logger().info(
        "sweep %s: %s points (%s computed, %s reused); report %s",
        summary["study_id"],
        summary["points"],
        summary["computed"],
        summary["reused"],
        summary["report"],
    )
    return summary
