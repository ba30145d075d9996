"""Schema migrations (Alembic, scripts under ``sql/migrations``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parents[2] / "sql" / "migrations"


def _config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this code."""
    from alembic.script import ScriptDirectory

    from tiller.store.engine import Engine  # noqa: F401  (keeps import order obvious)

    script = ScriptDirectory(str(MIGRATIONS))
    head = script.get_current_head()
    assert head is not None, "no migration scripts found"
    return head


MIGRATION_LOCK_WAIT = 300.0
"""Seconds a process waits for another one's migration of the same database."""


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to ``revision`` (default: the newest); a no-op when already there.

    Processes opening a new database at the same moment would each create its tables:
    the upgrade runs under a lock (:func:`tiller.store.locks.run_lock`), and a process
    that waited finds the work done.
    """
    from alembic import command

    from tiller.store.locks import run_lock

    if revision == "head" and current_revision(engine) == head_revision():
        return current_revision(engine)
    with run_lock(engine, "schema-migration", f"migrating to {revision}", MIGRATION_LOCK_WAIT):
        if revision != "head" or current_revision(engine) != head_revision():
            command.upgrade(_config(engine), revision)
    return current_revision(engine)
