"""Rebalance cadence (pure): on which sessions the targets are recomputed.

``daily``
    every session;
``weekly``
    the first session of each ISO week (Monday, or Tuesday after a holiday);
``monthly``
    the first session of each calendar month;
``once``
    the first session only (buy and hold).

Risk checks run every session whatever the cadence; a day on which the risk level rises
rebalances too, so exposure cuts happen the day they are decided (see the callers).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

Cadence = Literal["daily", "weekly", "monthly", "once"]


def is_rebalance_day(session: date, previous: date | None, cadence: Cadence) -> bool:
    """Whether ``session`` starts a new rebalance period, ``previous`` being the session
    before it (None for the first session, which always rebalances)."""
    if previous is None:
        return True
    if cadence == "daily":
        return True
    if cadence == "weekly":
        return session.isocalendar()[:2] != previous.isocalendar()[:2]
    if cadence == "monthly":
        return (session.year, session.month) != (previous.year, previous.month)
    return False
