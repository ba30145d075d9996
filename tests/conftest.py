"""Shared fixtures: a database per test on SQLite (always) and PostgreSQL (when
``TILLER_TEST_DATABASE_URL`` names a server), settings rooted in a temp folder, and
a Prefect API for the flow tests."""

from __future__ import annotations

import os
import socket
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("YF_TELEMETRY", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MARKET = (SHARED / "data" / "market").resolve()
PG_URL = os.environ.get("TILLER_TEST_DATABASE_URL")

# Environment variables a developer's shell may set that would leak into the settings.
_TILLER_ENV = [k for k in os.environ if k.startswith("TILLER_") and k != "TILLER_TEST_DATABASE_URL"]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach beyond this machine: any TCP connect elsewhere fails the test."""
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {address!r}: only 127.0.0.1 is allowed")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in _TILLER_ENV + [
        "MASSIVE_API_KEY",
        "POLYGON_API_KEY",
        "ALPACA_API_KEY",
        "ALPACA_SECRET_KEY",
        "APCA_API_KEY_ID",
        "APCA_API_SECRET_KEY",
        "FRED_API_KEY",
    ]:
        monkeypatch.delenv(key, raising=False)
    from tiller.data.chain import reset_breakers

    reset_breakers()


def _pg_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    assert PG_URL
    admin_url = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"tiller_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        import gc

        gc.collect()  # engines the test left behind close their pooled connections
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as exc:  # a leftover database is harmless; say so and go on
            warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite always, PostgreSQL when TILLER_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tiller.db'}"
    elif not PG_URL:
        pytest.skip("TILLER_TEST_DATABASE_URL not set: PostgreSQL tests skipped")
    else:
        yield from _pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tiller.db'}"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Any]:
    """Settings rooted in the test's temp folder; keyword arguments override config."""
    from tiller.settings import load_settings

    def make(**overrides: Any) -> Any:
        overrides.setdefault("home", tmp_path / "home")
        return load_settings(**overrides)

    return make


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A temporary Prefect API (real server, temporary database) for the flow tests."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(get_current_settings().api.url)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Slack's webhook and a json:// endpoint on 127.0.0.1 (apprise's Slack plugin is
    pointed at it): :class:`tests.fakes.channels.Receiver`."""
    from apprise.plugins.slack import NotifySlack

    from tests.fakes.channels import Receiver
    from tests.fakes.http import FakeServer

    with FakeServer(Receiver) as server:
        monkeypatch.setattr(NotifySlack, "webhook_url", f"{server.url}/services")
        yield server


@pytest.fixture
def smtp() -> Iterator[tuple[int, Any]]:
    """An SMTP server on 127.0.0.1: its port and the
    :class:`tests.fakes.channels.MailHandler` that keeps what it receives."""
    from aiosmtpd.controller import Controller

    from tests.fakes.channels import MailHandler, free_port

    handler = MailHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()
