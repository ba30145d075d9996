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


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to ``revision`` (default: the newest); a no-op when already there."""
    from alembic import command

    if revision == "head" and current_revision(engine) == head_revision():
        return current_revision(engine)
    command.upgrade(_config(engine), revision)
    return current_revision(engine)
