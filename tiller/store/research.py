"""Sweeps and walk-forward studies in the store: the study row and one row per computed
point, written as each point's result arrives (a crash loses at most the chunks in
flight; a rerun reads what is done and computes the rest)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import select

from tiller.store.repo import SWEEP_POINTS, SWEEP_RUNS, Store, utcnow


def ensure_sweep(store: Store, sweep_id: str, name: str, kind: str, grid: Any) -> None:
    """Create the study row unless it exists (a rerun of the same grid resumes it)."""
    with store.transaction() as tx:
        found = tx.execute(
            select(SWEEP_RUNS.c.sweep_id).where(SWEEP_RUNS.c.sweep_id == sweep_id)
        ).first()
        if found is None:
            tx.execute(
                SWEEP_RUNS.insert().values(
                    sweep_id=sweep_id,
                    name=name[:80],
                    kind=kind,
                    grid=json.dumps(grid, sort_keys=True, default=str),
                    created_at=utcnow(),
                )
            )


def done_hashes(store: Store, sweep_id: str) -> set[str]:
    """The points of a study already computed."""
    frame = store.select(
        select(SWEEP_POINTS.c.point_hash).where(SWEEP_POINTS.c.sweep_id == sweep_id)
    )
    return set(frame["point_hash"]) if not frame.empty else set()


def save_point(
    store: Store,
    sweep_id: str,
    point_hash: str,
    *,
    label: str,
    params: Mapping[str, Any],
    profile: str,
    start: date,
    end: date,
    metrics: Mapping[str, Any],
    dates: Sequence[str],
    nav: Sequence[float],
    seconds: float,
    worker: str,
) -> None:
    """Persist one computed point (idempotent: the same point again changes nothing)."""
    row = {
        "sweep_id": sweep_id,
        "point_hash": point_hash,
        "label": label[:200],
        "params": json.dumps(dict(params), sort_keys=True, default=str),
        "profile": profile[:200],
        "start": start,
        "end": end,
        "metrics": json.dumps(dict(metrics), sort_keys=True, default=str),
        "nav": json.dumps({"dates": list(dates), "nav": list(nav)}),
        "seconds": float(seconds),
        "worker": worker[:200],
        "computed_at": utcnow(),
    }
    with store.transaction() as tx:
        store.insert_new(tx, SWEEP_POINTS, [row], ("sweep_id", "point_hash"))


def load_points(store: Store, sweep_id: str, with_nav: bool = False) -> pd.DataFrame:
    """The computed points of a study: label, params, profile, window, metrics (parsed),
    and with ``with_nav`` the daily NAV as a Series per row."""
    frame = store.select(select(SWEEP_POINTS).where(SWEEP_POINTS.c.sweep_id == sweep_id))
    if frame.empty:
        return frame
    frame["params"] = frame["params"].map(json.loads)
    frame["metrics"] = frame["metrics"].map(json.loads)
    if with_nav:
        frame["nav"] = frame["nav"].map(_series)
    else:
        frame = frame.drop(columns=["nav"])
    return frame


def _series(text: str) -> pd.Series:
    data = json.loads(text)
    return pd.Series(data["nav"], index=pd.to_datetime(data["dates"]), dtype=float)


def list_sweeps(store: Store) -> pd.DataFrame:
    """Every study, newest first."""
    return store.select(select(SWEEP_RUNS).order_by(SWEEP_RUNS.c.created_at.desc()))
