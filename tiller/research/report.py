"""Sweep and walk-forward reports: JSON (every figure) and self-contained HTML (tables,
a heatmap of the objective for two-parameter grids, the stitched out-of-sample NAV)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tiller.reporting.render import _Charts, _env, num, pct
from tiller.research.grid import Grid
from tiller.research.sweep import COLUMNS, best
from tiller.research.walkforward import WalkForward

_FORMATS = {
    "cagr": ("CAGR", pct),
    "volatility": ("Volatility", pct),
    "sharpe": ("Sharpe", num),
    "max_drawdown": ("Max drawdown", pct),
    "turnover_two_way": ("Turnover (two-way, /yr)", num),
    "cost_drag": ("Cost drag (/yr)", pct),
    "max_level": ("Worst level", lambda v: "n/a" if v is None or v != v else f"L{int(v)}"),
    "score": ("Score", lambda v: num(v, 3)),
}


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The points table as JSON-able rows."""
    return [
        {k: _clean(v) if not isinstance(v, pd.Timestamp) else str(v.date()) for k, v in r.items()}
        for r in table.astype(object).where(table.notna(), None).to_dict("records")
    ]


def write_report(
    folder: Path,
    study_id: str,
    grid: Grid,
    table: pd.DataFrame,
    summary: str,
    walkforward: WalkForward | None = None,
) -> tuple[Path, Path]:
    """Write ``<folder>/<study_id>.json`` and ``.html``; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    params = [c for c in table.columns if c.startswith("param:")]
    payload: dict[str, Any] = {
        "study_id": study_id,
        "name": grid.name,
        "objective": grid.objective.describe(),
        "summary": summary,
        "points": table_records(table),
        "best": table_records(best(table)),
    }
    if walkforward is not None:
        payload["walkforward"] = {
            "steps": [{k: _clean(v) for k, v in s.items()} for s in walkforward.steps],
            "metrics": {k: _clean(v) for k, v in walkforward.metrics.items()},
            "degradation": _clean(walkforward.degradation),
            "nav": {
                "dates": [d.date().isoformat() for d in walkforward.nav.index],
                "nav": [float(v) for v in walkforward.nav],
            },
        }
    json_path = folder / f"{study_id}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    html_path = folder / f"{study_id}.html"
    html_path.write_text(_html(study_id, grid, table, params, summary, walkforward))
    return json_path, html_path


def _html(
    study_id: str,
    grid: Grid,
    table: pd.DataFrame,
    params: list[str],
    summary: str,
    walkforward: WalkForward | None,
) -> str:
    import plotly.graph_objects as go  # imported when a report is drawn

    charts = _Charts()
    rendered: dict[str, Any] = {}
    heatmap = len(params) == 2 and "score" in table and len(grid.profiles) == 1
    if heatmap and len(grid.periods) == 1:
        pivot = table.pivot_table(index=params[0], columns=params[1], values="score")
        fig = go.Figure(
            go.Heatmap(
                z=pivot.to_numpy(dtype=float),
                x=[str(c) for c in pivot.columns],
                y=[str(i) for i in pivot.index],
                text=[[num(v, 3) for v in row] for row in pivot.to_numpy(dtype=float)],
                texttemplate="%{text}",
                colorscale="RdYlGn",
            )
        )
        fig.update_layout(
            title=f"{grid.objective.describe()} by {params[0][6:]} and {params[1][6:]}",
            xaxis_title=params[1][6:],
            yaxis_title=params[0][6:],
        )
        rendered["heatmap"] = charts.html("heatmap", fig)
    else:
        heatmap = False
    wf = None
    if walkforward is not None:
        nav = walkforward.nav
        fig = go.Figure(go.Scatter(x=nav.index, y=nav.to_numpy(dtype=float), mode="lines"))
        fig.update_layout(title="Out-of-sample NAV (test windows, stitched)")
        rendered["oos"] = charts.html("oos", fig)
        m = walkforward.metrics
        wf = {
            "figures": [
                ("Window", f"{m.get('start')} .. {m.get('end')}"),
                ("Final NAV", num(m.get("final_nav"))),
                ("CAGR", pct(m.get("cagr"))),
                ("Volatility", pct(m.get("volatility"))),
                ("Sharpe", num(m.get("sharpe"))),
                ("Max drawdown", pct(m.get("max_drawdown"))),
            ],
            "steps": walkforward.steps,
            "degradation": walkforward.degradation,
        }
    columns = [{"key": "profile", "title": "Profile", "css": ""}]
    columns += [{"key": p, "title": p[6:], "css": ""} for p in params]
    columns += [{"key": "window", "title": "Window", "css": ""}]
    columns += [{"key": c, "title": _FORMATS[c][0], "css": "n"} for c in (*COLUMNS, "score")]

    def formatted(frame: pd.DataFrame) -> list[dict[str, str]]:
        out = []
        for record in frame.to_dict("records"):
            row = {c["key"]: str(record.get(c["key"], "")) for c in columns[: len(params) + 1]}
            row["window"] = f"{record['start']}..{record['end']}"
            for key in (*COLUMNS, "score"):
                value = record.get(key)
                row[key] = _FORMATS[key][1](None if value is None or value != value else value)
            out.append(row)
        return out

    return str(
        _env()
        .get_template("research.html.j2")
        .render(
            kind="walk-forward" if walkforward is not None else "sweep",
            name=grid.name,
            study_id=study_id,
            objective=grid.objective.describe(),
            summary=summary,
            heatmap=heatmap,
            charts=rendered,
            columns=columns,
            rows=formatted(table),
            best=formatted(best(table)),
            walkforward=wf,
        )
    )
