"""The production set-up end to end: a Prefect server (on PostgreSQL when
``TILLER_TEST_DATABASE_URL`` names one, else SQLite), a process work pool,
``tiller deploy --pool`` and a ``prefect worker start --pool`` process in another folder
that runs a ``daily-rebalance`` deployment run to completion with the Tiller settings of
its own environment."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text

from flows.daily_rebalance import STAGES
from tests.conftest import MARKET, PG_URL, REPO
from tests.test_serve import BIN, _free_port, _get, _stop, _wait, run_deployment
from tiller.store.repo import Store

pytestmark = pytest.mark.slow
AS_OF = "2024-03-08"  # a session ../shared/data/market covers
POOL = "tiller-test-pool"


def _post(url: str, body: dict[str, object]) -> object:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _connect_args(url_text: str) -> dict[str, object]:
    """psycopg's connection arguments for a SQLAlchemy PostgreSQL URL."""
    from sqlalchemy.engine import make_url

    url = make_url(url_text)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username,
        "password": url.password,
        "dbname": url.database or "postgres",
    }


def _prefect_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the Prefect server (asyncpg URL), dropped
    afterwards; None (the server's own SQLite file) without TILLER_TEST_DATABASE_URL."""
    if not PG_URL:
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    name = f"tiller_prefect_{uuid.uuid4().hex[:12]}"
    admin = _connect_args(PG_URL)
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(**admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str | None]]:
    """A real Prefect server on 127.0.0.1 with a temporary PREFECT_HOME; yields its API
    URL, the environment of a process that talks to it (no TILLER_* in it) and its
    PostgreSQL database URL (None: SQLite)."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TILLER_")},
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    for database in _prefect_database():
        server_env = {**env, "PREFECT_SERVER_API_HOST": "127.0.0.1"}
        server_env["PREFECT_SERVER_API_PORT"] = str(port)
        if database:
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
        log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(lambda: _get(f"{api}/health"), 180, "the Prefect server")
            yield api, env, database
        finally:
            _stop(server)
            log.close()


def test_a_worker_on_a_process_pool_runs_the_daily_deployment(
    prefect_server: tuple[str, dict[str, str], str | None], tmp_path: Path
) -> None:
    api, env, database = prefect_server
    elsewhere = tmp_path / "elsewhere"  # neither the deploy nor the worker runs in the checkout
    elsewhere.mkdir()

    missing = subprocess.run(
        [str(BIN / "tiller"), "deploy", "--pool", POOL],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2, missing.stdout[-3000:] + missing.stderr[-3000:]
    assert f"work pool {POOL!r} does not exist" in missing.stderr
    deployed = subprocess.run(
        [str(BIN / "tiller"), "deploy", "--pool", POOL, "--create-pool"],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    assert "daily-rebalance/daily-rebalance" in deployed.stdout
    pool = _get(f"{api}/work_pools/{POOL}")
    assert isinstance(pool, dict) and pool["type"] == "process"
    for name, cron in (("daily-rebalance", "30 16 * * 1-5"), ("weekly-review", "0 8 * * 1")):
        deployment = _get(f"{api}/deployments/name/{name}/{name}")
        assert isinstance(deployment, dict)
        assert deployment["work_pool_name"] == POOL
        assert (
            deployment["entrypoint"]
            == f"flows/{name.replace('-', '_')}.py:{name.replace('-', '_')}"
        )
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        (schedule,) = deployment["schedules"]
        assert schedule["schedule"]["cron"] == cron
        assert schedule["schedule"]["timezone"] == "America/New_York"
        assert schedule["active"] is True

    home = tmp_path / "home"
    worker_env = {  # the Tiller settings reach the flow run through the worker's environment
        **env,
        "TILLER_HOME": str(home),
        "TILLER_DATA_SOURCES": f"csv:{MARKET}",
        "TILLER_HISTORY_START": "2023-01-03",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "test-worker"],
        env=worker_env,
        cwd=elsewhere,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(
            lambda: _post(f"{api}/work_pools/{POOL}/workers/filter", {}),
            120,
            "the worker to register with the pool",
        )
        run = run_deployment(env, AS_OF, cwd=elsewhere)
        worked = (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + worked
        assert "Completed" in run.stdout + run.stderr
    finally:
        _stop(worker)
        log.close()

    runs = _post(f"{api}/flow_runs/filter", {"sort": "START_TIME_DESC"})
    assert isinstance(runs, list)
    (flow_run,) = [r for r in runs if r["parameters"].get("as_of") == AS_OF]
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["work_pool_name"] == POOL
    assert "test-worker" in (tmp_path / "worker.log").read_text(errors="replace")
    if database:  # the server keeps its state in its PostgreSQL database
        import psycopg

        with psycopg.connect(**_connect_args(database)) as connection:
            found = connection.execute(
                "SELECT state_type FROM flow_run WHERE id = %s", (flow_run["id"],)
            ).fetchone()
        assert found == ("COMPLETED",)

    store = Store.open(f"sqlite:///{home / 'tiller.db'}")  # the worker's TILLER_HOME
    try:
        checkpoints = {
            c.stage: c.status for c in store.checkpoints("daily-rebalance", date(2024, 3, 8))
        }
        assert checkpoints == dict.fromkeys(STAGES, "completed")
        rows = store.select(
            text(
                "SELECT status, prefect_flow_run_id FROM flow_runs "
                "WHERE flow = 'daily-rebalance' AND as_of = :as_of"
            ).bindparams(as_of=date(2024, 3, 8))
        )
    finally:
        store.close()
    assert rows.to_dict("records") == [
        {"status": "completed", "prefect_flow_run_id": flow_run["id"]}
    ]
    assert (home / "reports" / "daily" / f"{AS_OF}.json").is_file()
