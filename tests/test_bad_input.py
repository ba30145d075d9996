"""Bad input gets one line that names the problem and what to do, before any work starts
where it can be checked early, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import MARKET
from tests.helpers import cli_env, copy_market, run_cli
from tests.runner import run_daily
from tiller.store.repo import BARS, CHECKPOINTS, RUNS, Store

UNIVERSE = ["SPY", "QQQ", "GLD", "TLT"]


def _env(tmp_path: Path, db_url: str, market: Path = MARKET, **more: str) -> dict[str, str]:
    return cli_env(
        tmp_path,
        market=market,
        universe=",".join(UNIVERSE),
        history_start="2020-03-02",
        db_url=db_url,
        **more,
    )


_cli = run_cli


def _count(url: str, table) -> int:  # type: ignore[no-untyped-def]
    store = Store.open(url)
    try:
        return int(store.select(select(func.count()).select_from(table)).iloc[0, 0])
    finally:
        store.close()


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        (
            "2024-03-09",
            "as_of 2024-03-09 is not an XNYS trading session (a weekend); the sessions around "
            "it are 2024-03-08 and 2024-03-11",
        ),
        (
            "2024-07-04",
            "as_of 2024-07-04 is not an XNYS trading session (a market holiday); the sessions "
            "around it are 2024-07-03 and 2024-07-05",
        ),
        ("2031-01-02", "as_of 2031-01-02 has not closed yet: the latest completed session is"),
    ],
)
def test_a_date_that_is_no_closed_session_is_one_line_and_nothing_is_written(
    tmp_path: Path, as_of: str, message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'tiller.db'}"
    done = _cli(_env(tmp_path, url), "run", "daily", "--as-of", as_of)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert message in done.stderr
    assert not (tmp_path / "tiller.db").exists()  # not even the database was created


@pytest.mark.slow
def test_a_date_before_the_books_last_session_is_refused_before_any_stage(
    tmp_path: Path, db_url: str
) -> None:
    """The README's ``--param as_of=2024-03-08`` after later sessions ran: refused in one
    line naming the last session and a command that replays the gap; nothing written."""
    env = _env(tmp_path, db_url)
    assert run_daily(env, "2021-06-02").exitcode == 0
    before = (_count(db_url, RUNS), _count(db_url, CHECKPOINTS), _count(db_url, BARS))
    refused = run_daily(env, "2021-06-01")
    assert refused.exitcode == 2 and refused.error is not None and "\n" not in refused.error
    assert "2021-06-01 is before 2021-06-02, the last session the paper book ran" in refused.error
    assert "tiller backtest --start 2021-06-01 --end 2021-06-02" in refused.error
    assert (_count(db_url, RUNS), _count(db_url, CHECKPOINTS), _count(db_url, BARS)) == before
    # a completed earlier date may be rerun (nothing changes), but not recomputed
    assert run_daily(env, "2021-06-03").exitcode == 0
    again = run_daily(env, "2021-06-02")
    assert again.exitcode == 0 and again.summary is not None
    assert set(again.summary["stages"].values()) == {"skipped"}
    forced = run_daily(env, "2021-06-02", "--force")
    assert forced.exitcode == 2 and forced.error and "only move forward" in forced.error


def _edit(path: Path, day: str, column: int, value: str) -> int:
    """Set one cell of the row dated ``day``; returns its line number (header = 1)."""
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{day},"))
    cells = lines[index].split(",")
    cells[column] = value
    lines[index] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return index + 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        ("SPY", ("2023-05-10", 4, ""), "close is empty; every bar needs open, high, low and close"),
        ("VIX", ("2023-11-01", 4, ""), "close is empty; every bar needs open, high, low and close"),
        ("QQQ", ("2023-05-10", 0, "2300-01-01"), "date 2300-01-01 is in the future"),
    ],
)
def test_a_bad_csv_fails_the_run_in_one_line_naming_file_and_line_writing_no_bars(
    tmp_path: Path, sqlite_url: str, file: str, change: tuple[str, int, str], expected: str
) -> None:
    market = copy_market(MARKET, tmp_path / "market", [*UNIVERSE, "VIX"])
    line = _edit(market / f"{file}.csv", *change)
    done = _cli(_env(tmp_path, sqlite_url, market), "run", "daily", "--as-of", "2024-03-08")
    assert done.returncode == 1
    error = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("error")]
    assert len(error) == 1, done.stdout
    assert f"{file}.csv: line {line}: {expected}" in error[0]
    assert _count(sqlite_url, BARS) == 0


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unwritable_home_is_one_line_naming_tiller_home(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    home = blocker / "home" if where == "under-a-file" else Path("/proc/tiller-home")
    url = f"sqlite:///{tmp_path / 'tiller.db'}"
    for args in (
        ("run", "daily", "--as-of", "2024-03-08"),
        ("backtest", "--start", "2024-01-02", "--end", "2024-03-08"),
    ):
        done = _cli(_env(tmp_path, url, TILLER_HOME=str(home)), *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().startswith(f"error: TILLER_HOME={home} cannot be written")
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "tiller.db").exists()


@pytest.mark.parametrize(
    "url",
    ["https://api.alpaca.markets", "https://api.alpaca.markets\\@localhost:8443"],
)
def test_a_live_broker_url_is_refused_before_any_stage(tmp_path: Path, url: str) -> None:
    db = tmp_path / "tiller.db"
    env = _env(
        tmp_path,
        f"sqlite:///{db}",
        TILLER_BROKER="alpaca",
        TILLER_ALPACA_URL=url,
        ALPACA_API_KEY="PKTESTKEY",
        ALPACA_SECRET_KEY="testsecret",
    )
    done = _cli(env, "run", "daily", "--as-of", "2024-03-08", "--json")
    assert done.returncode == 2
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and summary["stages"] == {}
    assert summary["error"].startswith("TILLER_BROKER=alpaca: refusing")
    assert not db.exists()  # nothing written, no stage ran


def test_an_unwritable_home_is_a_json_line_too(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", TILLER_HOME=str(blocker / "home"))
    done = _cli(env, "run", "daily", "--as-of", "2024-03-08", "--json")
    assert done.returncode == 2
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and "TILLER_HOME=" in summary["error"]
