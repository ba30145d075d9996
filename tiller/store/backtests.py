"""Backtest runs in the store: save a :class:`~tiller.backtest.result.BacktestResult` in one
transaction, load it back, and record stress-test outcomes.  Backtests have their own
tables; nothing here reads or writes the paper portfolio's."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from tiller.backtest.result import DAILY_COLUMNS, EVENT_COLUMNS, TRADE_COLUMNS, BacktestResult
from tiller.store.repo import (
    BACKTEST_DAYS,
    BACKTEST_EVENTS,
    BACKTEST_RUNS,
    BACKTEST_TRADES,
    STRESS_RESULTS,
    Store,
    utcnow,
)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _num(value: Any) -> float:
    number = float(value)
    return number if math.isfinite(number) else 0.0


def save_result(store: Store, result: BacktestResult, kind: str = "backtest") -> None:
    """Persist a run (its row, every session, fill and risk event) in one transaction."""
    weights = result.weights.reindex(result.daily.index).fillna(0.0)
    values, symbols = weights.to_numpy(dtype=float), [str(c) for c in weights.columns]
    records = result.daily[list(DAILY_COLUMNS)].to_dict("records")
    days = [
        {
            "run_id": result.run_id,
            "as_of": day,
            **record,
            "weights": _json(
                {symbols[j]: round(float(values[k, j]), 8) for j in np.flatnonzero(values[k])}
            ),
        }
        for k, (day, record) in enumerate(zip(result.daily.index, records, strict=True))
    ]
    for row in days:
        for column in ("nav", "cash", "long_value", "exposure", "peak_nav", "drawdown"):
            row[column] = _num(row[column])
        row["level"] = int(row["level"])
        row["rebalanced"] = bool(row["rebalanced"])
    trades = [
        {"run_id": result.run_id, **{("as_of" if k == "date" else k): v for k, v in t.items()}}
        for t in result.trades.to_dict("records")
    ]
    events = [
        {"run_id": result.run_id, **{("as_of" if k == "date" else k): v for k, v in e.items()}}
        for e in result.risk_events.to_dict("records")
    ]
    with store.transaction() as tx:
        tx.execute(
            BACKTEST_RUNS.insert().values(
                run_id=result.run_id,
                label=result.label,
                kind=kind,
                start=result.start,
                end=result.end,
                cadence=result.cadence,
                initial_capital=result.initial_capital,
                config=_json(result.config),
                metrics=_json(result.metrics),
                timings=_json(result.timings),
                created_at=utcnow(),
            )
        )
        store.insert(tx, BACKTEST_DAYS, days)
        store.insert(tx, BACKTEST_TRADES, trades)
        store.insert(tx, BACKTEST_EVENTS, events)


BENCHMARK = "benchmark"
"""The ``kind`` of the tearsheets' cached benchmark runs."""


def list_runs(store: Store, kind: str | None = None) -> pd.DataFrame:
    """Runs, newest first (run id, label, kind, dates, cadence, metrics JSON).

    Without ``kind``: every run but the cached benchmark runs (``kind="benchmark"`` lists
    those)."""
    query = select(BACKTEST_RUNS).order_by(BACKTEST_RUNS.c.created_at.desc())
    if kind is not None:
        query = query.where(BACKTEST_RUNS.c.kind == kind)
    else:
        query = query.where(BACKTEST_RUNS.c.kind != BENCHMARK)
    return store.select(query)


def find_benchmark(store: Store, key: str) -> BacktestResult | None:
    """The newest cached benchmark run whose ``config["benchmark_key"]`` is ``key``."""
    runs = store.select(
        select(BACKTEST_RUNS.c.run_id, BACKTEST_RUNS.c.config)
        .where(BACKTEST_RUNS.c.kind == BENCHMARK)
        .order_by(BACKTEST_RUNS.c.created_at.desc())
    )
    for run_id, config in zip(runs["run_id"], runs["config"], strict=True):
        if json.loads(config).get("benchmark_key") == key:
            return load_result(store, str(run_id))
    return None


def load_result(store: Store, run_id: str) -> BacktestResult:
    """A persisted run, as the engine returned it.

    Raises
    ------
    KeyError
        No run ``run_id``; the message lists how to find the ids.
    """
    runs = store.select(select(BACKTEST_RUNS).where(BACKTEST_RUNS.c.run_id == run_id))
    if runs.empty:
        raise KeyError(f"no backtest run {run_id!r}; `tiller backtest list` shows the run ids")
    run = runs.iloc[0]
    days = store.select(
        select(BACKTEST_DAYS).where(BACKTEST_DAYS.c.run_id == run_id).order_by("as_of")
    )
    days["as_of"] = [_as_date(d) for d in days["as_of"]]
    daily = days.set_index("as_of")[list(DAILY_COLUMNS)]
    daily.index.name = "date"
    weights = pd.DataFrame(
        [json.loads(w) for w in days["weights"]], index=daily.index, dtype=float
    ).fillna(0.0)
    trades = store.select(
        select(BACKTEST_TRADES).where(BACKTEST_TRADES.c.run_id == run_id).order_by("id")
    ).rename(columns={"as_of": "date"})
    events = store.select(
        select(BACKTEST_EVENTS).where(BACKTEST_EVENTS.c.run_id == run_id).order_by("id")
    ).rename(columns={"as_of": "date"})
    for frame in (trades, events):
        for column in ("date", "order_date"):
            if column in frame.columns:
                frame[column] = [_as_date(d) for d in frame[column]]
    return BacktestResult(
        run_id=run_id,
        label=str(run["label"]),
        start=_as_date(run["start"]),
        end=_as_date(run["end"]),
        cadence=str(run["cadence"]),
        initial_capital=float(run["initial_capital"]),
        daily=daily,
        weights=weights,
        trades=trades.reindex(columns=list(TRADE_COLUMNS)),
        risk_events=events.reindex(columns=list(EVENT_COLUMNS)),
        metrics=json.loads(run["metrics"]),
        timings=json.loads(run["timings"]),
        config=json.loads(run["config"]),
    )


def save_stress(store: Store, batch_id: str, outcomes: Sequence[dict[str, Any]]) -> None:
    """Record one stress batch (one row per scenario; the runs are saved already)."""
    now = utcnow()
    with store.transaction() as tx:
        store.insert(
            tx, STRESS_RESULTS, [{"batch_id": batch_id, **o, "created_at": now} for o in outcomes]
        )


ANY_PROFILE = "*"
"""``latest_stress(profile=ANY_PROFILE)``: the latest batch whatever profile it ran under."""


def latest_stress(store: Store, profile: str | None = ANY_PROFILE) -> pd.DataFrame:
    """The scenarios of the most recent stress batch (empty when none ran).

    ``profile``: the latest batch whose runs were made under that configuration profile
    (``config["profile"]`` of the runs; None: no profile; a run saved before profiles were
    recorded counts as None); the default takes the latest batch of any profile."""
    frame = store.select(select(STRESS_RESULTS).order_by(STRESS_RESULTS.c.created_at.desc()))
    if frame.empty:
        return frame
    if profile != ANY_PROFILE:
        configs = store.select(
            select(BACKTEST_RUNS.c.run_id, BACKTEST_RUNS.c.config).where(
                BACKTEST_RUNS.c.run_id.in_(frame["run_id"].unique().tolist())
            )
        )
        profiles = {
            str(r): json.loads(c).get("profile")
            for r, c in zip(configs["run_id"], configs["config"], strict=True)
        }
        frame = frame[[profiles.get(str(r)) == profile for r in frame["run_id"]]]
        if frame.empty:
            return frame.reset_index(drop=True)
    batch = frame["batch_id"].iloc[0]
    return frame[frame["batch_id"] == batch].sort_values("id").reset_index(drop=True)


def risk_levels(store: Store, run_id: str) -> list[int]:
    """The distinct risk levels (0 = normal .. 4 = halt) the sessions of run ``run_id`` were
    at, in no particular order."""
    levels = store.select(
        select(BACKTEST_DAYS.c.level).where(BACKTEST_DAYS.c.run_id == run_id).distinct()
    )
    return [int(v) for v in levels["level"]]


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return (
        value
        if isinstance(value, date) and not isinstance(value, pd.Timestamp)
        else pd.Timestamp(value).date()
    )
