"""The `tiller` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tiller.store.repo import Store

from .conftest import MARKET


def _tiller(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TILLER_")},
        "TILLER_HOME": str(tmp_path / "home"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "tiller.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = _tiller(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("demo", "run", "data", "db", "serve"):
        assert command in result.stdout


def test_db_init_creates_and_then_keeps_the_schema(tmp_path: Path) -> None:
    first = _tiller(tmp_path, "db", "init")
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty to revision" in first.stdout
    assert (tmp_path / "home" / "tiller.db").exists()
    second = _tiller(tmp_path, "db", "init")
    assert "already at revision" in second.stdout


def test_a_bad_setting_is_one_line_of_error_and_a_json_failure(tmp_path: Path) -> None:
    result = _tiller(tmp_path, "db", "init", TILLER_UNIVERSE="SPY,NOPE")
    assert result.returncode == 2
    assert "TILLER_UNIVERSE" in result.stderr and "NOPE" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = _tiller(tmp_path, "run", "daily", "--json", TILLER_DATA_SOURCES="ftp")
    assert as_json.returncode == 2
    summary = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and "TILLER_DATA_SOURCES" in summary["error"]


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    result = _tiller(
        tmp_path,
        "db",
        "init",
        TILLER_DATABASE_URL="postgresql+psycopg://tiller:hunter2@127.0.0.1:1/tiller",
    )
    assert result.returncode == 2
    assert "cannot connect to the database postgresql+psycopg://tiller:***@127.0.0.1:1" in (
        result.stderr
    )
    assert "hunter2" not in result.stderr + result.stdout


def test_data_ingest_from_the_shared_csv_files(tmp_path: Path) -> None:
    result = _tiller(
        tmp_path,
        "data",
        "ingest",
        "--start",
        "2020-01-02",
        "--end",
        "2020-03-31",
        TILLER_DATA_SOURCES=f"csv:{MARKET}",
    )
    assert result.returncode == 0, result.stderr
    assert "SPY" in result.stdout and "csv:" in result.stdout
    store = Store.open(f"sqlite:///{tmp_path / 'home' / 'tiller.db'}")
    spy = store.load_bars(["SPY"])
    assert spy["date"].min().date().isoformat() == "2020-01-02"
    assert spy["date"].max().date().isoformat() == "2020-03-31"
    bad = _tiller(tmp_path, "data", "ingest", "--end", "2020-13-01")
    assert bad.returncode == 2 and "--end: '2020-13-01' is not a date" in bad.stderr
