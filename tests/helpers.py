"""Small helpers shared by the stage tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
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


def cli_env(
    tmp_path: Path,
    *,
    market: Path,
    universe: str,
    history_start: str,
    db_url: str | None = None,
    **more: str,
) -> dict[str, str]:
    """The environment of a ``tiller`` subprocess: this one's without any ``TILLER_`` or
    ``PREFECT_`` setting, a home and a database under ``tmp_path`` (or ``db_url``), CSV
    data from ``market``, ``universe`` (comma-separated) and ``more`` on top."""
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("TILLER_", "PREFECT_"))}
    return base | {
        "TILLER_HOME": str(tmp_path / "home"),
        "TILLER_DATABASE_URL": db_url or f"sqlite:///{tmp_path / 'tiller.db'}",
        "TILLER_DATA_SOURCES": f"csv:{market}",
        "TILLER_UNIVERSE": universe,
        "TILLER_HISTORY_START": history_start,
        "TILLER_OPTIMIZE__SOLVER": "newton",
        "GX_ANALYTICS_ENABLED": "false",
        **more,
    }


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tiller.cli *args`` in ``env``, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "tiller.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


RULES_DAILY = {
    "TILLER_STRATEGY__SIGNALS__RULE": "rules",
    "TILLER_STRATEGY__SIGNALS__BUY_MOMENTUM": "0.02",
    "TILLER_STRATEGY__SIGNALS__SELL_MOMENTUM": "-0.02",
    "TILLER_BACKTEST__CADENCE": "daily",
    "TILLER_OPTIMIZE__MIN_HOLDING_DAYS": "0",
    "TILLER_OPTIMIZE__VOL_TARGET": "0.10",
}
"""The strategy the flow-mechanics tests (crashes, reruns, locks, quarantine, the
operator's screens) were worked out on: the rules signals with the SPEC's +-2% momentum
thresholds, a rebalance every session, no minimum holding period and a 10% volatility
target (their hand-derived orders, e.g. "QQQ 38, SPY 40 on 2021-06-01", come from it).
The shipped default rebalances weekly, so a run of a few sessions would trade once and
leave those tests nothing to check."""
