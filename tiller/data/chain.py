"""The fallback chain: providers in configured order, a circuit breaker per provider,
and the cross-source deviation check."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from tiller.data.base import DataProvider, ProviderError, SeriesRequest, empty_frame


@dataclass
class CircuitBreaker:
    """Skips a provider that keeps failing.

    Closed: calls go through.  After ``threshold`` consecutive failures it
    opens: calls are skipped for ``cooldown`` seconds.  Then it is half-open:
    one call goes through; success closes it, failure re-opens it.
    """

    threshold: int = 3
    cooldown: float = 300.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        return self.state != "open"

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.opened_at = self.clock()


# Breakers outlive one run: a long-lived `tiller serve` process keeps skipping a
# source that failed on the previous run until its cool-down ends.
_BREAKERS: dict[str, CircuitBreaker] = {}


def breaker_for(label: str, threshold: int, cooldown: float) -> CircuitBreaker:
    """The process-wide breaker of the provider labelled ``label``."""
    breaker = _BREAKERS.get(label)
    if breaker is None or (breaker.threshold, breaker.cooldown) != (threshold, cooldown):
        breaker = _BREAKERS[label] = CircuitBreaker(threshold, cooldown)
    return breaker


def reset_breakers() -> None:
    _BREAKERS.clear()


@dataclass(frozen=True)
class Attempt:
    """One provider's answer to one request: ``ok``, ``empty``, ``unsupported``,
    ``circuit_open`` or ``error:<kind>``."""

    source: str
    outcome: str
    message: str = ""

    def __str__(self) -> str:
        return f"{self.source}={self.outcome}" + (f" ({self.message})" if self.message else "")


@dataclass(frozen=True)
class Fetched:
    """The chain's answer: the frame of the first provider with rows, and every attempt."""

    request: SeriesRequest
    frame: pd.DataFrame
    source: str | None
    attempts: tuple[Attempt, ...]

    @property
    def failed(self) -> bool:
        """No provider served rows and at least one raised an error."""
        return self.source is None and any(a.outcome.startswith("error") for a in self.attempts)

    @property
    def errors(self) -> str:
        return "; ".join(str(a) for a in self.attempts if a.outcome.startswith("error"))


@dataclass(frozen=True)
class Deviation:
    """Closes of one session from two sources; ``deviation = |secondary / primary - 1|``."""

    series: str
    date: pd.Timestamp
    primary_source: str
    secondary_source: str
    primary_close: float
    secondary_close: float
    deviation: float


@dataclass
class ProviderChain:
    """Providers tried in order for each request, each behind its circuit breaker."""

    providers: Sequence[tuple[str, DataProvider]]
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def _breaker(self, label: str) -> CircuitBreaker:
        return self.breakers.setdefault(label, CircuitBreaker())

    def fetch(self, request: SeriesRequest) -> Fetched:
        """Ask each provider in turn; the first one that returns rows serves the series.

        Transient and permanent provider errors both move on to the next
        provider (and count against the failing provider's breaker); an empty
        answer moves on without counting as a failure.  A
        :class:`~tiller.errors.DataError` (a malformed local file) is not a
        provider outage: it propagates so the operator sees it.
        """
        attempts: list[Attempt] = []
        for label, provider in self.providers:
            if not provider.supports(request.series, request.kind):
                attempts.append(Attempt(label, "unsupported"))
                continue
            breaker = self._breaker(label)
            if not breaker.allow():
                attempts.append(Attempt(label, "circuit_open", "skipped during cool-down"))
                continue
            try:
                frame = provider.fetch(request)
            except ProviderError as exc:
                breaker.record_failure()
                attempts.append(Attempt(label, f"error:{exc.kind}", exc.detail))
                continue
            breaker.record_success()
            if frame.empty:
                attempts.append(Attempt(label, "empty"))
                continue
            attempts.append(Attempt(label, "ok", f"{len(frame)} rows"))
            return Fetched(request, frame, label, tuple(attempts))
        return Fetched(request, empty_frame(request.kind), None, tuple(attempts))

    def cross_check(self, fetched: Fetched, sessions: int) -> list[Deviation]:
        """Compare the served closes with the next provider that can serve the same series.

        Only the last ``sessions`` rows are compared.  A failing or empty
        secondary is not an error (nothing to compare).
        """
        if fetched.source is None or fetched.request.kind.value != "bar":
            return []
        recent = fetched.frame.tail(sessions)
        request = SeriesRequest(
            fetched.request.series,
            fetched.request.kind,
            recent["date"].iloc[0].date(),
            recent["date"].iloc[-1].date(),
        )
        for label, provider in self.providers:
            if label == fetched.source or not provider.supports(request.series, request.kind):
                continue
            breaker = self._breaker(label)
            if not breaker.allow():
                continue
            try:
                other = provider.fetch(request)
            except ProviderError:
                breaker.record_failure()
                continue
            breaker.record_success()
            if other.empty:
                continue
            both = recent[["date", "close"]].merge(
                other[["date", "close"]], on="date", suffixes=("_p", "_s")
            )
            both = both.dropna()
            both = both[both["close_p"] > 0]
            return [
                Deviation(
                    request.series,
                    row.date,
                    fetched.source,
                    label,
                    float(row.close_p),
                    float(row.close_s),
                    abs(float(row.close_s) / float(row.close_p) - 1.0),
                )
                for row in both.itertuples(index=False)
            ]
        return []
