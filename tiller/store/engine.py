"""Engine creation: URL checks, SQLite pragmas, and readable connection errors."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from tiller.errors import StoreError

ALLOWED = "sqlite:///<path> or postgresql+psycopg://user:password@host:5432/dbname"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to log and show)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def normalise_url(url: str) -> str:
    """Map ``postgres://`` / ``postgresql://`` to the psycopg 3 driver; reject other schemes."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"TILLER_DATABASE_URL is not a database URL ({mask_url(url)}); use {ALLOWED}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        if driver not in ("", "psycopg"):
            raise StoreError(
                f"TILLER_DATABASE_URL: driver {driver!r} is not installed; use {ALLOWED}"
            )
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if driver:
            raise StoreError(f"TILLER_DATABASE_URL: use plain sqlite:///<path> (got {driver!r})")
    else:
        raise StoreError(
            f"TILLER_DATABASE_URL: unsupported database {backend!r} in {mask_url(url)}; "
            f"use {ALLOWED}"
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def connect(url: str) -> Engine:
    """Create an engine for ``url`` and prove it answers.

    SQLite: the parent folder is created, WAL and foreign keys are switched on
    for every connection.  PostgreSQL: psycopg 3, pre-ping, 10 s connect timeout.

    Raises
    ------
    StoreError
        The URL is malformed, names an unsupported database, or the database
        cannot be reached; the message shows the URL without its password.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).expanduser().resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"TILLER_DATABASE_URL: cannot create folder {folder} for the SQLite file: "
                    f"{exc.strerror}"
                ) from None
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": 10}, pool_size=5
        )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (OperationalError, SQLAlchemyError) as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StoreError(
            f"cannot connect to the database {mask_url(url)}: {reason}. "
            "Check TILLER_DATABASE_URL and that the server is running."
        ) from None
    return engine
