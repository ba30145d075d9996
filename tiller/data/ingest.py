"""Incremental ingestion: which windows to fetch, and fetching them through the chain.

No database here: the caller passes the last stored date per series and
persists the returned :class:`IngestResult` (``tasks/ingest.py``), so the
backtest and tests can run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from tiller import calendars
from tiller.data.base import ProviderErrorKind, SeriesKind, SeriesRequest
from tiller.data.chain import Deviation, Fetched, ProviderChain
from tiller.errors import DataError


@dataclass(frozen=True)
class SeriesSpec:
    """A series to keep up to date: name, kind and (for bars) its exchange calendar."""

    series: str
    kind: SeriesKind
    calendar: str | None = None
    required: bool = True  # a required series that no source can serve fails the ingest


@dataclass(frozen=True)
class SeriesPlan:
    """What to fetch for one series: ``request`` is None when it is already up to date."""

    spec: SeriesSpec
    request: SeriesRequest | None
    missing_sessions: int


def plan_ingest(
    specs: Sequence[SeriesSpec],
    last_stored: Mapping[str, date],
    as_of: date,
    history_start: date,
) -> list[SeriesPlan]:
    """Plan one fetch window per series: from the day after its last stored row to ``as_of``.

    A series with no stored rows starts at ``history_start``.  A bar series
    whose calendar has no session in the window is up to date (no provider
    call).  ``as_of`` is the inclusive end of every window: nothing later is
    ever requested.
    """
    plans = []
    for spec in specs:
        last = last_stored.get(spec.series)
        start = history_start if last is None else last + timedelta(days=1)
        if start > as_of:
            plans.append(SeriesPlan(spec, None, 0))
            continue
        if spec.kind is SeriesKind.BAR:
            missing = len(calendars.sessions(spec.calendar or "XNYS", start, as_of))
            if missing == 0:
                plans.append(SeriesPlan(spec, None, 0))
                continue
        else:
            missing = 0
        plans.append(SeriesPlan(spec, SeriesRequest(spec.series, spec.kind, start, as_of), missing))
    return plans


class IngestFailed(DataError):
    """Required series could not be served; ``transient`` when every error was transient
    (rate limit, 5xx, timeout, network), so a retry later may succeed."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


@dataclass
class IngestResult:
    """Everything one ingest fetched: frames to upsert, per-series outcome, cross-source checks."""

    as_of: date
    fetched: list[Fetched] = field(default_factory=list)
    up_to_date: list[SeriesSpec] = field(default_factory=list)
    deviations: list[Deviation] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(f.frame) for f in self.fetched)


def run_ingest(
    plans: Sequence[SeriesPlan],
    chain: ProviderChain,
    as_of: date,
    cross_check_sessions: int | None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Fetch every planned window through ``chain``; ``progress(series done, total)`` is
    called before each series and once at the end.

    Raises
    ------
    IngestFailed
        A required series could not be served by any source because of errors
        (each source's error is listed), or no configured source can serve it
        at all.  Nothing has been written at that point.
    """
    result = IngestResult(as_of=as_of)
    problems: list[str] = []
    transient = True
    for index, plan in enumerate(plans):
        if progress is not None:
            progress(index, len(plans))  # series done before this one
        if plan.request is None:
            result.up_to_date.append(plan.spec)
            continue
        fetched = chain.fetch(plan.request)
        if fetched.source is None and plan.spec.required:
            if fetched.failed:
                problems.append(f"{plan.spec.series}: every source failed: {fetched.errors}")
                transient &= all(
                    ProviderErrorKind(a.outcome.removeprefix("error:")).transient
                    for a in fetched.attempts
                    if a.outcome.startswith("error:")
                )
            elif all(a.outcome == "unsupported" for a in fetched.attempts):
                sources = ", ".join(label for label, _ in chain.providers)
                problems.append(f"{plan.spec.series}: no configured source has it ({sources})")
                transient = False
        if not fetched.frame.empty and fetched.frame["date"].iloc[-1] > pd.Timestamp(as_of):
            # Providers clip to the window already; this guards the no-look-ahead rule.
            raise DataError(f"{plan.spec.series}: {fetched.source} returned rows after {as_of}")
        if plan.spec.kind is SeriesKind.BAR and not fetched.frame.empty:
            prices = fetched.frame[["open", "high", "low", "close"]]
            gaps = prices.isna().any(axis=1).to_numpy()
            if gaps.any():
                row = fetched.frame.loc[gaps].iloc[0]
                column = next(c for c in prices.columns if pd.isna(row[c]))
                raise DataError(
                    f"{plan.spec.series}: {fetched.source} returned a bar without {column} on "
                    f"{row['date'].date()}; nothing was written (fix the source, or list "
                    "another source first in TILLER_DATA_SOURCES)"
                )
        result.fetched.append(fetched)
        if cross_check_sessions and fetched.source is not None:
            result.deviations.extend(chain.cross_check(fetched, cross_check_sessions))
    if progress is not None:
        progress(len(plans), len(plans))
    if problems:
        raise IngestFailed(
            "ingest failed, nothing was written:\n  " + "\n  ".join(problems), transient
        )
    return result
