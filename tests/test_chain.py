"""The fallback chain: order, circuit breaker, cross-source deviations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from tiller.data.base import ProviderError, ProviderErrorKind, SeriesKind, SeriesRequest
from tiller.data.chain import CircuitBreaker, ProviderChain
from tiller.data.providers.csv import CsvProvider
from tiller.data.providers.synthetic import SyntheticProvider
from tiller.errors import DataError

from .conftest import MARKET

REQUEST = SeriesRequest("SPY", SeriesKind.BAR, date(2020, 3, 2), date(2020, 3, 13))


@dataclass
class OutageProvider:
    """A source that is down: every call raises the given error kind (counts its calls)."""

    kind: ProviderErrorKind = ProviderErrorKind.SERVER
    name: str = "down"
    calls: int = field(default=0)

    def supports(self, series: str, kind: SeriesKind) -> bool:
        return True

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        self.calls += 1
        raise ProviderError(self.name, request.series, self.kind, "HTTP 503 Service Unavailable")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_source_with_rows_serves_and_every_attempt_is_recorded() -> None:
    chain = ProviderChain([("down", OutageProvider()), ("csv", CsvProvider(MARKET))])
    fetched = chain.fetch(REQUEST)
    assert fetched.source == "csv"
    assert len(fetched.frame) == 10
    assert [a.outcome for a in fetched.attempts] == ["error:server", "ok"]
    assert "HTTP 503" in fetched.attempts[0].message


def test_unsupported_and_empty_sources_are_passed_over(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "SPY.csv").write_text(
        "date,open,high,low,close,adj_close,volume\n1999-01-04,1,2,0.5,1,1,1\n"
    )
    chain = ProviderChain(
        [
            ("nothing", CsvProvider(tmp_path)),
            ("stale", CsvProvider(empty)),
            ("synthetic", SyntheticProvider()),
        ]
    )
    fetched = chain.fetch(REQUEST)
    assert fetched.source == "synthetic"
    assert [a.outcome for a in fetched.attempts] == ["unsupported", "empty", "ok"]


def test_all_sources_failing_is_reported_with_each_error() -> None:
    chain = ProviderChain(
        [("a", OutageProvider(ProviderErrorKind.RATE_LIMIT)), ("b", OutageProvider())]
    )
    fetched = chain.fetch(REQUEST)
    assert fetched.failed and fetched.source is None and fetched.frame.empty
    assert "a=error:rate_limit" in fetched.errors and "b=error:server" in fetched.errors


def test_circuit_breaker_skips_a_failing_source_for_the_cooldown_then_retries_once() -> None:
    clock = Clock()
    down = OutageProvider()
    breaker = CircuitBreaker(threshold=3, cooldown=300, clock=clock)
    chain = ProviderChain(
        [("down", down), ("synthetic", SyntheticProvider())], breakers={"down": breaker}
    )
    for _ in range(3):
        assert chain.fetch(REQUEST).source == "synthetic"
    assert down.calls == 3 and breaker.state == "open"
    fetched = chain.fetch(REQUEST)  # skipped without a call during the cool-down
    assert down.calls == 3 and fetched.attempts[0].outcome == "circuit_open"
    clock.now = 301
    assert breaker.state == "half_open"
    chain.fetch(REQUEST)  # one trial call, fails, opens again
    assert down.calls == 4 and breaker.state == "open"


def test_a_recovered_source_closes_its_breaker() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.now = 11
    chain = ProviderChain([("synthetic", SyntheticProvider())], breakers={"synthetic": breaker})
    assert chain.fetch(REQUEST).source == "synthetic"
    assert breaker.state == "closed" and breaker.failures == 0


def test_a_malformed_local_file_stops_the_chain(tmp_path: Path) -> None:
    (tmp_path / "SPY.csv").write_text("date,open\n2020-03-02,1\n")
    chain = ProviderChain([("csv", CsvProvider(tmp_path)), ("synthetic", SyntheticProvider())])
    with pytest.raises(DataError, match="missing column"):
        chain.fetch(REQUEST)


def test_cross_check_measures_the_deviation_between_two_sources(tmp_path: Path) -> None:
    real = CsvProvider(MARKET).fetch(REQUEST)
    shifted = real.copy()
    shifted.loc[shifted.index[-1], "close"] *= 1.02  # 2% off on the last session
    shifted.to_csv(tmp_path / "SPY.csv", index=False, date_format="%Y-%m-%d")
    chain = ProviderChain([("csv", CsvProvider(MARKET)), ("copy", CsvProvider(tmp_path))])
    fetched = chain.fetch(REQUEST)
    deviations = chain.cross_check(fetched, sessions=3)
    assert [d.date for d in deviations] == list(real["date"].tail(3))
    assert [round(d.deviation, 6) for d in deviations] == [0.0, 0.0, 0.02]
    assert deviations[-1].secondary_source == "copy"
