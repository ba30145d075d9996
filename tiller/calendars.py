"""Trading sessions from exchange-calendars (XNYS for US ETFs and VIX, 24/7 for crypto)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
# Calendars are built once per process over a fixed, generous window.
_FIRST = "1990-01-01"
_LAST = "2040-12-31"


def portfolio_calendar(names: Iterable[str]) -> str:
    """The sessions a portfolio trading on the calendars ``names`` runs on: ``XNYS`` when
    any asset trades there (crypto is then marked on exchange sessions), else ``24/7``."""
    return "XNYS" if "XNYS" in set(names) else "24/7"


@lru_cache(maxsize=4)
def _calendar(name: str):
    import exchange_calendars as xcals

    return xcals.get_calendar(name, start=_FIRST, end=_LAST)


@lru_cache(maxsize=8)
def _all_sessions(name: str) -> pd.DatetimeIndex:
    sessions = _calendar(name).sessions
    return pd.DatetimeIndex(sessions.tz_localize(None) if sessions.tz else sessions)


def sessions(name: str, start: date, end: date) -> pd.DatetimeIndex:
    """Session dates of calendar ``name`` in ``[start, end]`` (naive midnight timestamps)."""
    if start > end:
        return pd.DatetimeIndex([])
    allowed = _all_sessions(name)
    lo = allowed.searchsorted(pd.Timestamp(start), side="left")
    hi = allowed.searchsorted(pd.Timestamp(end), side="right")
    return allowed[lo:hi]


def last_session(name: str, on_or_before: date) -> date:
    """The latest session of ``name`` on or before ``on_or_before``."""
    allowed = _all_sessions(name)
    i = allowed.searchsorted(pd.Timestamp(on_or_before), side="right")
    if i == 0:
        raise ValueError(f"no {name} session on or before {on_or_before}")
    return allowed[i - 1].date()


def is_session(name: str, day: date) -> bool:
    """Whether ``day`` is a session of calendar ``name``."""
    return last_session(name, day) == day


def latest_completed_session(
    now: datetime | None = None, close_buffer: timedelta | None = None
) -> date:
    """The most recent XNYS session whose close (16:00 New York) plus a buffer has passed.

    The daily flow is scheduled at 16:30 New York; the buffer (default 30 min)
    gives the data vendors time to publish the day's bar.
    """
    now = (now or datetime.now(NEW_YORK)).astimezone(NEW_YORK)
    buffer = close_buffer if close_buffer is not None else timedelta(minutes=30)
    today = now.date()
    candidate = last_session("XNYS", today)
    close = _calendar("XNYS").session_close(pd.Timestamp(candidate))
    if candidate == today and now < close.to_pydatetime().astimezone(NEW_YORK) + buffer:
        candidate = last_session("XNYS", today - timedelta(days=1))
    return candidate
