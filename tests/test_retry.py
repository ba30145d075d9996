"""Bounded retries with backoff for broker calls."""

from __future__ import annotations

import pytest

from tiller.execution.broker import BrokerError, BrokerErrorKind
from tiller.execution.retry import with_retries


def _flaky(errors: list[BrokerErrorKind]):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if errors:
            raise BrokerError("fake", errors.pop(0), "boom")
        return "ok"

    return call, calls


def test_transient_errors_are_retried_with_doubling_backoff() -> None:
    waits: list[float] = []
    call, calls = _flaky([BrokerErrorKind.RATE_LIMIT, BrokerErrorKind.SERVER])
    assert with_retries(call, retries=3, backoff=0.5, sleep=waits.append) == ("ok", 3)
    assert waits == [0.5, 1.0] and calls["n"] == 3


def test_retries_are_bounded() -> None:
    waits: list[float] = []
    call, calls = _flaky([BrokerErrorKind.TIMEOUT] * 10)
    with pytest.raises(BrokerError) as error:
        with_retries(call, retries=3, backoff=1, sleep=waits.append)
    assert calls["n"] == 4 and waits == [1, 2, 4]
    assert error.value.attempts == 4  # type: ignore[attr-defined]


def test_a_permanent_error_is_not_retried() -> None:
    call, calls = _flaky([BrokerErrorKind.INSUFFICIENT_BUYING_POWER])
    with pytest.raises(BrokerError):
        with_retries(call, retries=3, backoff=1, sleep=lambda s: None)
    assert calls["n"] == 1
