"""Progress of the long commands: done/total and ETA drawn on a terminal (rich), nothing
with ``--json`` or when stdout is not a terminal; the engine and stage hooks behind it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MARKET
from tests.helpers import cli_env, context, run_cli
from tests.test_backtest import fixed_settings, synthetic_market
from tiller.backtest.engine import run_backtest
from tiller.progress import TerminalProgress, wanted

UNIVERSE = "SPY,QQQ,GLD,TLT"
BAR = "━"  # what rich draws a bar with


class _Stream(StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # as a real file does
        return self.tty


def test_progress_is_wanted_only_on_a_terminal_and_never_with_json() -> None:
    assert wanted(False, _Stream(tty=True)) is True
    assert wanted(True, _Stream(tty=True)) is False
    assert wanted(False, _Stream(tty=False)) is False
    assert wanted(True, _Stream(tty=False)) is False
    closed = _Stream(tty=True)
    closed.close()
    assert wanted(False, closed) is False


def test_a_disabled_progress_draws_nothing_and_its_callbacks_do_nothing() -> None:
    with TerminalProgress(False) as bars:
        bars.task("backtest sessions")(5, 10)
        bars.named("stress {name}")("gfc-2008", 3, 7)
    assert bars._progress is None


def test_the_bars_show_done_total_elapsed_and_eta_on_a_terminal() -> None:
    from rich.console import Console

    out = StringIO()
    console = Console(file=out, force_terminal=True, width=140)
    with TerminalProgress(True, console) as bars:
        bars.task("backtest sessions")(5, 10)
        named = bars.named("stress {name}")
        named("gfc-2008", 3, 7)
        named("covid-2020", 1, 2)
        named("gfc-2008", 4, 7)
    drawn = out.getvalue()
    for text in ("backtest sessions", "5/10", "stress gfc-2008", "4/7", "stress covid-2020"):
        assert text in drawn
    assert "elapsed" in drawn and "ETA" in drawn and BAR in drawn


def test_run_backtest_reports_progress_about_every_percent(make_settings: Any) -> None:
    settings = fixed_settings(make_settings)
    n = 250
    market = synthetic_market(
        {"GLD": [100.0 + 0.1 * i for i in range(n)], "TLT": [90.0 + 0.05 * i for i in range(n)]}
    )
    calls: list[tuple[int, int]] = []
    start, end = date(2024, 1, 2), market.bars["date"].max().date()
    with_progress = run_backtest(
        settings, market, start, end, run_id="bt-p", progress=lambda d, t: calls.append((d, t))
    )
    without = run_backtest(settings, market, start, end, run_id="bt-p")
    sessions = len(with_progress.daily)
    assert sessions == n
    assert calls[-1] == (sessions, sessions)
    assert {t for _, t in calls} == {sessions}
    done = [d for d, _ in calls]
    assert done == sorted(set(done))  # strictly increasing
    step = max(1, sessions // 100)
    assert all(b - a <= step for a, b in zip([0, *done], done, strict=False))
    assert len(calls) <= 201
    # the hook changes nothing else
    assert with_progress.daily["nav"].tolist() == without.daily["nav"].tolist()


def test_stress_and_ingest_report_their_progress(make_settings: Any) -> None:
    from tasks.ingest import ingest_stage
    from tiller.backtest.service import stress
    from tiller.data.factory import series_specs

    settings = make_settings(data_sources=f"csv:{MARKET}", universe=UNIVERSE)
    seen: list[tuple[str, int, int]] = []
    outcome = stress(settings, ["shock-20"], progress=lambda *call: seen.append(call))
    assert {name for name, _, _ in seen} == {"shock-20"}
    sessions = seen[-1][2]
    assert seen[-1] == ("shock-20", sessions, sessions) and sessions > 200
    assert outcome["scenarios"][0]["scenario"] == "shock-20"

    ingest = make_settings(
        data_sources=f"csv:{MARKET}", universe=UNIVERSE, history_start=date(2024, 1, 2)
    )
    calls: list[tuple[int, int]] = []
    ctx = context(ingest, date(2024, 3, 8), flow="data-ingest", force=True)
    ingest_stage(ctx, lambda d, t: calls.append((d, t)))
    total = len(series_specs(ingest))
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == list(range(total + 1))


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return cli_env(tmp_path, market=MARKET, universe=UNIVERSE, history_start="2022-06-01", **more)


def test_a_daily_run_reports_its_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiller.cli import run_daily_flow

    for key, value in _env(tmp_path).items():
        if key.startswith(("TILLER_", "GX_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # restored afterwards
    calls: list[tuple[int, int]] = []
    summary = run_daily_flow(date(2024, 3, 8), False, progress=lambda d, t: calls.append((d, t)))
    assert summary["status"] == "completed", summary["error"]
    assert calls == [(i, 9) for i in range(1, 10)]


_captured = run_cli


def _in_a_terminal(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run a command with its stdout on a pseudo-terminal (160 columns); return its exit
    code and everything it wrote there (stderr goes to a file)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tiller.cli", *args],
            env=env | {"TERM": "xterm-256color", "COLUMNS": "160"},
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=stderr,
        )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = process.wait(timeout=300)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def _no_drawing(text: str) -> None:
    assert "\x1b[" not in text and BAR not in text and "ETA" not in text


def test_backtest_progress_on_a_terminal_and_silent_otherwise(tmp_path: Path) -> None:
    env = _env(tmp_path)
    window = ("backtest", "--start", "2023-01-01", "--end", "2023-12-31")
    code, drawn = _in_a_terminal(env, tmp_path, *window)
    assert code == 0, (tmp_path / "stderr.txt").read_text()
    assert "backtest sessions" in drawn and "250/250" in drawn and "ETA" in drawn
    assert "final NAV" in drawn  # the summary follows the bar

    code, as_json = _in_a_terminal(env, tmp_path, *window, "--json")
    assert code == 0
    _no_drawing(as_json)
    assert json.loads(as_json)["end"] == "2023-12-29"

    piped = _captured(env, *window)
    assert piped.returncode == 0, piped.stderr
    _no_drawing(piped.stdout + piped.stderr)
    assert "final NAV" in piped.stdout
    piped_json = _captured(env, *window, "--json")
    _no_drawing(piped_json.stdout + piped_json.stderr)
    assert json.loads(piped_json.stdout)["end"] == "2023-12-29"


def test_stress_ingest_and_daily_progress_on_a_terminal_and_silent_with_json(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    stress = ("stress", "--scenario", "shock-20")
    code, drawn = _in_a_terminal(env, tmp_path, *stress)
    assert code in (0, 1), (tmp_path / "stderr.txt").read_text()  # 1: the criteria failed
    assert "stress shock-20" in drawn and "ETA" in drawn
    code, as_json = _in_a_terminal(env, tmp_path, *stress, "--json")
    _no_drawing(as_json)
    assert json.loads(as_json)["scenarios"][0]["scenario"] == "shock-20"

    code, drawn = _in_a_terminal(env, tmp_path, "data", "ingest", "--end", "2024-03-07")
    assert code == 0, (tmp_path / "stderr.txt").read_text()
    assert "ingest series" in drawn and "ingested" in drawn
    piped = _captured(env, "data", "ingest", "--end", "2024-03-07")
    assert piped.returncode == 0, piped.stderr
    _no_drawing(piped.stdout + piped.stderr)

    code, drawn = _in_a_terminal(env, tmp_path, "run", "daily", "--as-of", "2024-03-08")
    assert code == 0, (tmp_path / "stderr.txt").read_text()
    assert "daily-rebalance stages" in drawn and "9/9" in drawn
    assert "daily-rebalance 2024-03-08: completed" in drawn
    code, as_json = _in_a_terminal(env, tmp_path, "run", "daily", "--as-of", "2024-03-08", "--json")
    assert code == 0
    _no_drawing(as_json)
    assert json.loads(as_json.strip())["status"] == "completed"
