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
    for command in ("demo", "run", "data", "db", "serve", "risk", "report"):
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


def test_risk_status_kill_switch_and_reset_need_a_person(tmp_path: Path) -> None:
    status = _tiller(tmp_path, "risk", "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["level"] == "L0" and shown["kill_switch"] is False
    assert shown["distance_to_next"] == 0.05  # no drawdown yet: 5 points to L1
    assert _tiller(tmp_path, "risk", "kill-switch", "on", "--reason", "manual test").returncode == 0
    killed = json.loads(_tiller(tmp_path, "risk", "status", "--json").stdout)
    assert killed["kill_switch"] is True and "manual test" in killed["kill_reason"]
    assert _tiller(tmp_path, "risk", "kill-switch", "off").returncode == 0
    assert json.loads(_tiller(tmp_path, "risk", "status", "--json").stdout)["kill_switch"] is False
    unconfirmed = _tiller(tmp_path, "risk", "reset")
    assert unconfirmed.returncode == 2 and "--confirm" in unconfirmed.stderr
    not_halted = _tiller(tmp_path, "risk", "reset", "--confirm")
    assert not_halted.returncode == 2 and "not halted" in not_halted.stderr
