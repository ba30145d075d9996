"""Operator errors are one line on stderr that says what is wrong and what to do, exit 2,
checked before any server starts and before anything is written; ``tiller --version``."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import date
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import MARKET
from tests.helpers import cli_env, run_cli
from tiller.calendars import latest_completed_session

UNIVERSE = "SPY,QQQ,GLD,TLT"
LATEST = "{latest}"  # the latest completed session when the test runs (_run_expecting)
SERVER_LINE = "starting a temporary Prefect server"


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return cli_env(tmp_path, market=MARKET, universe=UNIVERSE, history_start="2023-06-01", **more)


_cli = run_cli


def _run_expecting(
    env: dict[str, str], args: tuple[str, ...], expected: str
) -> subprocess.CompletedProcess[str]:
    """Run the command; its one error line must be ``expected`` with ``{latest}`` the
    latest completed session (taken before and after: the run may straddle a close)."""
    before = latest_completed_session()
    done = _cli(env, *args)
    after = latest_completed_session()
    assert _one_line_error(done) in {
        expected.format(latest=before),
        expected.format(latest=after),
    }
    return done


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error line of a command refused with exit 2 (and nothing else on stderr)."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


WEEKEND = (
    "as_of 2024-03-09 is not an XNYS trading session (a weekend); the sessions around it "
    "are 2024-03-08 and 2024-03-11: give one of those"
)
HOLIDAY = (
    "as_of 2024-07-04 is not an XNYS trading session (a market holiday); the sessions "
    "around it are 2024-07-03 and 2024-07-05: give one of those"
)
FUTURE = (
    "as_of 2031-01-02 has not closed yet: the latest completed session is {latest}; "
    "give that date or an earlier one"
)


@pytest.mark.parametrize(
    "command",
    [
        ("run", "daily"),
        ("run", "daily", "--prefect"),
        ("run", "weekly"),
        ("run", "weekly", "--prefect"),
        ("report", "daily"),
        ("report", "weekly"),
    ],
    ids=lambda c: " ".join(c),
)
@pytest.mark.parametrize(
    ("as_of", "expected"),
    [("2024-03-09", WEEKEND), ("2024-07-04", HOLIDAY), ("2031-01-02", FUTURE)],
    ids=["weekend", "holiday", "future"],
)
def test_an_as_of_that_is_no_closed_session_is_one_line_naming_the_sessions_around_it(
    tmp_path: Path, command: tuple[str, ...], as_of: str, expected: str
) -> None:
    done = _run_expecting(_env(tmp_path), (*command, "--as-of", as_of), f"error: {expected}")
    assert SERVER_LINE not in done.stderr + done.stdout  # refused before any server
    assert not (tmp_path / "tiller.db").exists()  # nothing written, not even the database


def test_an_as_of_that_is_no_date_names_the_option_and_the_format(tmp_path: Path) -> None:
    for command in (("run", "daily"), ("run", "weekly"), ("report", "daily")):
        done = _cli(_env(tmp_path), *command, "--as-of", "2024-13-01")
        assert _one_line_error(done) == (
            "error: --as-of: '2024-13-01' is not a date; use YYYY-MM-DD"
        )


def test_json_runs_report_a_bad_date_as_one_json_line(tmp_path: Path) -> None:
    for flow, command in (("daily-rebalance", "daily"), ("weekly-review", "weekly")):
        done = _cli(_env(tmp_path), "run", command, "--as-of", "2024-03-09", "--json")
        assert done.returncode == 2
        summary = json.loads(done.stdout.strip())
        assert summary["flow"] == flow and summary["status"] == "failed"
        assert summary["error"] == WEEKEND


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("backtest", "--start", "2024-03-01", "--end", "2024-01-31"),
            "error: start 2024-03-01 is after end 2024-01-31: give a --start on or "
            "before the --end",
        ),
        (
            ("data", "ingest", "--start", "2024-03-01", "--end", "2024-01-31"),
            "error: start 2024-03-01 is after end 2024-01-31: give a --start on or "
            "before the --end",
        ),
        (
            ("data", "ingest", "--start", "2031-03-03"),
            f"error: start 2031-03-03 is after end {LATEST} (the latest completed "
            "session): give a --start on or before the --end",
        ),
        (
            ("backtest", "--start", "2024-01-02", "--end", "2031-01-02"),
            f"error: --end 2031-01-02 is in the future: the latest completed session is "
            f"{LATEST}; give {LATEST} or an earlier date",
        ),
        (
            ("data", "ingest", "--end", "2031-01-02"),
            f"error: --end 2031-01-02 is in the future: the latest completed session is "
            f"{LATEST}; give {LATEST} or an earlier date",
        ),
    ],
    ids=[
        "backtest-reversed",
        "ingest-reversed",
        "ingest-start-after-default-end",
        "backtest-future-end",
        "ingest-future-end",
    ],
)
def test_reversed_and_future_ranges_are_one_line_before_any_data_source(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    # a data source that would fail if it were asked: the range is checked first
    env = _env(tmp_path, TILLER_DATA_SOURCES=f"csv:{tmp_path / 'no-such-folder'}")
    _run_expecting(env, args, expected)
    assert not (tmp_path / "tiller.db").exists()


def test_an_unknown_stress_scenario_is_one_line_listing_the_configured_ones(
    tmp_path: Path,
) -> None:
    done = _cli(_env(tmp_path), "stress", "--scenario", "nope")
    line = _one_line_error(done)
    assert "unknown stress scenario nope" in line
    assert "configured: covid-2020, gfc-2008, rates-2022, shock-20" in line


@pytest.mark.parametrize("reason", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_the_kill_switch_needs_a_reason_to_go_on(tmp_path: Path, reason: str | None) -> None:
    env = _env(tmp_path)
    args = ["risk", "kill-switch", "on"] + ([] if reason is None else ["--reason", reason])
    line = _one_line_error(_cli(env, *args))
    assert "turning the kill switch on needs a reason: give --reason TEXT" in line
    assert not (tmp_path / "tiller.db").exists()  # nothing recorded
    status = json.loads(_cli(env, "risk", "status", "--json").stdout)
    assert status["kill_switch"] is False
    # with a reason it goes on, and off needs none
    assert _cli(env, "risk", "kill-switch", "on", "--reason", "broker outage").returncode == 0
    status = json.loads(_cli(env, "risk", "status", "--json").stdout)
    assert status["kill_switch"] is True and "broker outage" in status["kill_reason"]
    assert _cli(env, "risk", "kill-switch", "off").returncode == 0


def _save_risk_state(url: str, last: date) -> None:
    from tiller.risk import RiskState
    from tiller.store.repo import Store

    store = Store.open(url)
    try:
        with store.transaction() as tx:
            store.save_risk_state(tx, "paper", last, RiskState(last_date=last).to_dict())
    finally:
        store.close()


def test_a_date_before_the_saved_risk_state_is_refused_before_a_prefect_server_starts(
    tmp_path: Path,
) -> None:
    """With ``--prefect`` the book's last session is checked before the temporary server
    starts, and the message names a command that exists: running it works."""
    env = _env(tmp_path)
    _save_risk_state(env["TILLER_DATABASE_URL"], date(2024, 3, 8))
    for extra in ((), ("--prefect",)):
        done = _cli(env, "run", "daily", "--as-of", "2024-03-06", *extra)
        line = _one_line_error(done)
        assert "as_of 2024-03-06 is before 2024-03-08, the last session the paper book ran" in (
            line
        )
        assert SERVER_LINE not in done.stderr + done.stdout
        named = re.search(r"`tiller (backtest [^`]+)`", line)
        assert named is not None and named.group(1) == (
            "backtest --start 2024-03-06 --end 2024-03-08"
        )
    replay = _cli(env, *named.group(1).split(), "--json")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["end"] == "2024-03-08"


def test_the_risk_engine_names_the_same_command_when_a_date_goes_backwards() -> None:
    from tiller.risk import RiskInputs, RiskState, assess_risk
    from tiller.settings import RiskConfig

    inputs = RiskInputs(as_of=date(2024, 1, 8), nav=100_000.0)
    with pytest.raises(ValueError) as raised:
        assess_risk(inputs, RiskState(peak_nav=100_000.0, last_date=date(2024, 1, 9)), RiskConfig())
    message = str(raised.value)
    assert "\n" not in message
    assert "before the risk state's last assessed date 2024-01-09" in message
    assert "`tiller backtest --start 2024-01-08 --end 2024-01-09`" in message
    assert "load the state saved" not in message  # no command does that


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    done = _cli(_env(tmp_path), "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tiller {version('tiller')}"
    assert done.stderr == ""
