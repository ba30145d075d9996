"""End to end on a real Prefect server: `tiller serve` registers the cron deployment, and
`prefect deployment run daily-rebalance/daily-rebalance` completes a run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from flows.daily_rebalance import STAGES
from tiller.store.repo import Store

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait(predicate, timeout: float, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def run_deployment(
    env: dict[str, str], as_of: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``prefect deployment run daily-rebalance/daily-rebalance --param as_of=... --watch``,
    as an operator triggers a run, waiting up to 10 minutes for it to finish."""
    return subprocess.run(
        [
            str(BIN / "prefect"),
            "deployment",
            "run",
            "daily-rebalance/daily-rebalance",
            "--param",
            f"as_of={as_of}",
            "--watch",
            "--watch-timeout",
            "600",
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=700,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_ENABLED": "false",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(lambda: _get(f"{api}/health"), 120, "the Prefect server")
        yield api, env
    finally:
        _stop(process)
        log.close()


def test_serve_registers_the_cron_deployment_and_a_manual_run_completes(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    api, env = server
    env = {
        **env,
        "TILLER_HOME": str(tmp_path / "home"),
        "TILLER_DATABASE_URL": f"sqlite:///{tmp_path / 'tiller.db'}",
        "TILLER_HISTORY_START": "2023-06-01",
    }
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    serve = subprocess.Popen(
        [str(BIN / "tiller"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deployment = _wait(
            lambda: _get(f"{api}/deployments/name/daily-rebalance/daily-rebalance"),
            180,
            "the daily-rebalance deployment",
        )
        assert isinstance(deployment, dict)
        (schedule,) = deployment["schedules"]
        assert schedule["schedule"]["cron"] == "30 16 * * 1-5"
        assert schedule["schedule"]["timezone"] == "America/New_York"
        assert schedule["active"] is True
        weekly = _wait(  # serve registers its deployments one after the other
            lambda: _get(f"{api}/deployments/name/weekly-review/weekly-review"),
            120,
            "the weekly-review deployment",
        )
        assert isinstance(weekly, dict)
        (weekly_schedule,) = weekly["schedules"]
        assert weekly_schedule["schedule"]["cron"] == "0 8 * * 1"
        assert weekly_schedule["schedule"]["timezone"] == "America/New_York"

        run = run_deployment(env, "2024-03-08")
        served = (tmp_path / "serve.log").read_text(errors="replace")[-4000:]
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + served
        assert "Completed" in run.stdout + run.stderr
    finally:
        _stop(serve)
        log.close()
    store = Store.open(env["TILLER_DATABASE_URL"])
    checkpoints = {
        c.stage: c.status for c in store.checkpoints("daily-rebalance", date(2024, 3, 8))
    }
    assert checkpoints == dict.fromkeys(STAGES, "completed")
