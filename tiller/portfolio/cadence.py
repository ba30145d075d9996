"""Rebalance cadence (pure): on which sessions the targets are recomputed.

``daily``
    every session;
``weekly``
    the first session of each ISO week (Monday, or Tuesday after a holiday);
``monthly``
    the first session of each calendar month;
``month_end``
    the last session of each calendar month: a session whose next session falls in
    another month (the last session of a window is never one: its next is unknown);
``once``
    the first session only (buy and hold).

Risk checks run every session whatever the cadence; a day on which the risk level rises
rebalances too, so exposure cuts happen the day they are decided (see the callers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Literal

import numpy as np

from tiller import calendars

Cadence = Literal["daily", "weekly", "monthly", "month_end", "once"]


def is_rebalance_day(
    session: date, previous: date | None, cadence: Cadence, following: date | None = None
) -> bool:
    """Whether ``session`` rebalances, ``previous`` being the session before it (None for
    the first session, which always starts a period) and ``following`` the session after it
    (None when unknown; only ``month_end`` reads it)."""
    if cadence == "month_end":
        return following is not None and (following.year, following.month) != (
            session.year,
            session.month,
        )
    if previous is None:
        return True
    if cadence == "daily":
        return True
    if cadence == "weekly":
        return session.isocalendar()[:2] != previous.isocalendar()[:2]
    if cadence == "monthly":
        return (session.year, session.month) != (previous.year, previous.month)
    return False


def rebalance_days(sessions: Sequence[date], cadence: Cadence) -> np.ndarray:
    """:func:`is_rebalance_day` of every session of a window at once (boolean array)."""
    out = np.zeros(len(sessions), dtype=bool)
    for i, session in enumerate(sessions):
        previous = sessions[i - 1] if i > 0 else None
        following = sessions[i + 1] if i + 1 < len(sessions) else None
        out[i] = is_rebalance_day(session, previous, cadence, following)
    return out


def scheduled_on(day: date, cadence: Cadence, calendar: str, first: bool) -> bool:
    """:func:`is_rebalance_day` of the daily flow's ``day`` on exchange ``calendar``, its
    neighbours read from the calendar (``first``: no earlier targets exist, so ``day``
    starts the first period)."""
    before = calendars.sessions(calendar, day - timedelta(days=14), day - timedelta(days=1))
    after = calendars.sessions(calendar, day + timedelta(days=1), day + timedelta(days=14))
    previous = None if first or not len(before) else before[-1].date()
    following = after[0].date() if len(after) else None
    return is_rebalance_day(day, previous, cadence, following)
