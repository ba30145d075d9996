"""The work of a study: backtest a chunk of points on the shared price history (runs on
whichever process the executor picks; pure but for a log line per point)."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tiller.backtest.engine import MarketHistory, run_backtest
from tiller.errors import TillerError
from tiller.settings import Settings

log = logging.getLogger("tiller.research")


@dataclass(frozen=True)
class Task:
    """One point to compute: its resolved settings and window, keyed by its hash."""

    point_hash: str
    settings: Settings
    start: date
    end: date


@dataclass(frozen=True)
class PointResult:
    """A computed point: headline metrics and the daily NAV (or the error that stopped it)."""

    point_hash: str
    metrics: dict[str, Any] = field(default_factory=dict)
    dates: list[str] = field(default_factory=list)
    nav: list[float] = field(default_factory=list)
    seconds: float = 0.0
    worker: str = ""
    error: str | None = None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def compute(tasks: list[Task], market: MarketHistory) -> list[PointResult]:
    """Backtest each task on ``market`` (the union of every point's bars, loaded once)."""
    out = []
    for task in tasks:
        began = time.perf_counter()
        try:
            result = run_backtest(task.settings, market, task.start, task.end, label="sweep")
        except TillerError as exc:
            out.append(PointResult(task.point_hash, worker=worker_name(), error=str(exc)))
            continue
        nav = result.daily["nav"]
        seconds = time.perf_counter() - began
        out.append(
            PointResult(
                task.point_hash,
                metrics=dict(result.metrics),
                dates=[d.isoformat() for d in nav.index],
                nav=[float(v) for v in nav],
                seconds=seconds,
                worker=worker_name(),
            )
        )
        log.info("computed point %s on %s in %.2f s", task.point_hash[:12], worker_name(), seconds)
    return out
