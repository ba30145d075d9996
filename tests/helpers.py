"""Small helpers shared by the stage tests."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tiller.store.repo import Store


def context(settings: Any, as_of: date, flow: str = "daily-rebalance", force: bool = False):
    """A RunContext with a fresh flow-run row, as the flow would create it."""
    store = Store.open(settings.db_url)
    run_id = store.start_run(flow, as_of, force, None)
    return RunContext(settings, store, flow, as_of, run_id, force)


def copy_market(source: Path, target: Path, symbols: list[str]) -> Path:
    """Copy some shared CSV files into a temp folder a test may corrupt (never into the repo)."""
    target.mkdir(parents=True, exist_ok=True)
    for symbol in symbols:
        shutil.copy(source / f"{symbol}.csv", target / f"{symbol}.csv")
    return target
