"""Run locks: one run of a flow at a time, on SQLite and PostgreSQL alike.

Two runs of ``daily-rebalance`` at the same moment would read the same book and risk
state and could both send orders.  :func:`run_lock` makes the second one wait (up to
``wait_seconds``) and then give up with one line naming the holder.  Nothing is
written before the lock is held.

* **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) on a key
  derived from the lock's name, held by a connection of its own for the whole run.
  The holder's description is its ``application_name``, so a waiting run can say who
  holds it (``pg_locks`` joined with ``pg_stat_activity``).
* **SQLite**: an exclusive ``flock`` on ``<database file>.<name>.lock`` beside the
  database; the holder's description is written into the file.

Both are released by the operating system or the server when the holding process
dies (its file descriptors close, its connection drops), so a lock left by a killed
process is recovered by the next run without any clean-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tiller.errors import TillerError

POLL_SECONDS = 0.2


class LockBusy(TillerError):
    """Another process holds the run lock (the message names it and what to do)."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.blake2b(f"tiller:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def holder_description(name: str, detail: str) -> str:
    """Who holds a lock: the lock, what runs, the process and host, and since when (UTC);
    short enough for PostgreSQL's 63-character ``application_name``."""
    now = datetime.now(UTC).strftime("%m-%d %H:%M:%SZ")
    host = socket.gethostname()[:12]
    return f"{name} {detail[:24]}, pid {os.getpid()}@{host} since {now}"


@contextmanager
def run_lock(store: Any, name: str, detail: str, wait_seconds: float) -> Iterator[None]:
    """Hold the lock ``name`` for the block; wait up to ``wait_seconds`` for it.

    Parameters
    ----------
    store:
        The :class:`~tiller.store.repo.Store` (or its engine) whose database the lock
        lives in (and beside).
    name:
        The lock, e.g. ``daily-rebalance``: one holder at a time.
    detail:
        What the holder does (``2024-03-08 run 1f0c...``), shown to a waiting run.
    wait_seconds:
        How long a second run waits before giving up (0: do not wait).

    Raises
    ------
    LockBusy
        The lock is still held after ``wait_seconds``; nothing was done.
    """
    holder = holder_description(name, detail)
    engine: Engine = getattr(store, "engine", store)
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, name, holder, wait_seconds):
            yield
    else:
        with _sqlite_lock(engine, name, holder, wait_seconds):
            yield


def _busy(name: str, holder: str | None, waited: float) -> LockBusy:
    who = holder or "another process"
    return LockBusy(
        f"another {name} run holds the run lock ({who}); waited {waited:.0f} s "
        "(run_lock_wait_seconds): run again when it has finished"
    )


@contextmanager
def _postgres_lock(engine: Engine, name: str, holder: str, wait: float) -> Iterator[None]:
    key = lock_key(name)
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        connection.execute(
            text("SELECT set_config('application_name', :h, false)"), {"h": holder[:63]}
        )
        deadline = time.monotonic() + wait
        while not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            if time.monotonic() >= deadline:
                found = connection.execute(
                    text(
                        "SELECT a.application_name FROM pg_locks l "
                        "JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                        "AND l.database = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database()) "
                        "AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"
                    ),
                    {"k": key},
                ).scalar()
                raise _busy(name, found, wait)
            time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        connection.close()


def sqlite_lock_path(engine: Engine, name: str) -> Path | None:
    """``<database file>.<name>.lock``, or None for an in-memory database."""
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser().resolve().with_name(f"{Path(database).name}.{name}.lock")


@contextmanager
def _sqlite_lock(engine: Engine, name: str, holder: str, wait: float) -> Iterator[None]:
    import fcntl

    path = sqlite_lock_path(engine, name)
    if path is None:
        yield
        return
    handle: IO[str] = path.open("a+", encoding="utf-8")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(name, _read_holder(path), wait) from None
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"holder": holder}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _read_holder(path: Path) -> str | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return None
    return str(data.get("holder")) if isinstance(data, dict) and data.get("holder") else None
