"""What a run checks before its first stage: each problem is one line, and nothing is
written (no flow-run row, no stage output) when a check fails.

* the date: an XNYS session that has closed (:func:`resolve_as_of`);
* ``TILLER_HOME`` can be written (reports, audit files, the SQLite file live there);
* the data sources can be built (CSV folders exist, keyed sources have their keys);
* the broker: Alpaca needs its keys and a paper or loopback URL (never the live host);
* the paper book only moves forward: a date before the last session its risk state
  assessed is refused unless that date already completed (a rerun changes nothing)
  (:func:`check_book_date`, checked under the run lock).
"""

from __future__ import annotations

from datetime import date, timedelta

from tiller.calendars import is_session, last_session, latest_completed_session, sessions
from tiller.errors import ConfigError
from tiller.runtime import check_home
from tiller.settings import Settings
from tiller.store.repo import Store

RISK_PORTFOLIO = "paper"


def resolve_as_of(as_of: date | None, latest: date | None = None) -> date:
    """``as_of`` or the latest completed XNYS session; it must be a session that closed.

    Raises
    ------
    ConfigError
        A weekend or holiday (naming the sessions before and after it), or a session
        that has not closed yet (naming the latest one that has).
    """
    closed = latest or latest_completed_session()
    day = as_of or closed
    if not is_session("XNYS", day):
        before = last_session("XNYS", day)
        after = sessions("XNYS", day, day + timedelta(days=10))
        what = "a weekend" if day.weekday() >= 5 else "a market holiday"
        following = f" and {after[0].date()}" if len(after) else ""
        raise ConfigError(
            f"as_of {day} is not an XNYS trading session ({what}); the sessions around it "
            f"are {before}{following}: give one of those"
        )
    if day > closed:
        raise ConfigError(
            f"as_of {day} has not closed yet: the latest completed session is {closed}; "
            "give that date or an earlier one"
        )
    return day


def check_broker(settings: Settings) -> None:
    """The configured broker can be used: Alpaca needs its keys and a paper URL."""
    if settings.broker != "alpaca":
        return
    from tiller.execution.alpaca import AlpacaPaperBroker
    from tiller.execution.broker import BrokerError

    try:
        AlpacaPaperBroker.check_settings(settings)
    except BrokerError as exc:
        raise ConfigError(f"TILLER_BROKER=alpaca: {exc.detail}") from None


def check_settings(settings: Settings) -> None:
    """Everything that needs no database: the home folder, the data sources, the broker."""
    from tiller.data.factory import check_sources

    check_home(settings)
    check_sources(settings)
    check_broker(settings)


def check_book_date(
    store: Store, flow: str, stages: tuple[str, ...], day: date, force: bool
) -> None:
    """Refuse a date before the last session the paper book's risk state assessed.

    The book, the broker and the risk state only move forward.  A rerun of an earlier
    date whose stages all completed is allowed without ``--force`` (nothing changes).

    Raises
    ------
    ConfigError
        Naming the last session and what to do instead.
    """
    stored = store.load_risk_state(RISK_PORTFOLIO)
    raw = (stored or {}).get("last_date")
    if not raw:
        return
    last = date.fromisoformat(str(raw))
    if day >= last:
        return
    done = {c.stage for c in store.checkpoints(flow, day) if c.status == "completed"}
    if not force and done >= set(stages):
        return
    raise ConfigError(
        f"as_of {day} is before {last}, the last session the paper book ran: the book and its "
        f"risk state only move forward. Run {last} or a later session; to replay {day}..{last} "
        f"use `tiller backtest --start {day} --end {last}`"
    )
