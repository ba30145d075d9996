"""MassiveProvider against a fake Massive API over real HTTP (no network beyond 127.0.0.1)."""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import pytest

from tests.fakes import massive_server as fake
from tests.fakes.http import FakeServer
from tiller.data.base import (
    BAR_COLUMNS,
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
)
from tiller.data.providers.massive import MassiveProvider

API_KEY = "mK7_test_4f2a9c1e8b3d6a5f0e7c2b9d"
SESSIONS = pd.bdate_range("2024-03-01", "2024-03-15")  # 11 weekdays, no holidays
CALENDAR = pd.date_range("2024-03-01", "2024-03-15")  # crypto trades every day


def make_bars(days: pd.DatetimeIndex, base: float) -> pd.DataFrame:
    i = np.arange(len(days), dtype=float)
    return pd.DataFrame(
        {
            "date": days.date,
            "open": base + i,
            "high": base + i + 2.0,
            "low": base + i - 1.0,
            "close": base + i + 0.5,
            "volume": 1_000_000.0 + 1000.0 * i,
        }
    )


BARS = {
    "SPY": make_bars(SESSIONS, 500.0),
    "I:VIX": make_bars(SESSIONS, 13.0),
    "X:BTCUSD": make_bars(CALENDAR, 60_000.0),
}


def req(series: str = "SPY", start: date = date(2024, 3, 4), end: date = date(2024, 3, 8)):
    return SeriesRequest(series, SeriesKind.BAR, start, end)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with fake.massive_server(BARS, API_KEY, not_entitled={"I:NDX"}) as srv:
        yield srv


@pytest.fixture
def provider(server: FakeServer) -> MassiveProvider:
    return MassiveProvider(API_KEY, base_url=server.url, timeout=1.0)


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def fetch_error(provider: MassiveProvider, request: SeriesRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider.fetch(request)
    error = info.value
    assert error.provider == "massive"
    assert error.series == request.series
    assert_no_key(error)
    return error


def assert_no_key(error: ProviderError) -> None:
    """The key is nowhere in the error: message, detail, chained causes or formatted traceback."""
    rendered = "".join(traceback.format_exception(error))
    for text in (str(error), error.detail, repr(error.args), rendered):
        assert API_KEY not in text
    assert error.__cause__ is None
    assert error.__suppress_context__


# --- happy path -------------------------------------------------------------------------------


def test_bars_are_exact_canonical_and_end_inclusive(
    provider: MassiveProvider, server: FakeServer
) -> None:
    frame = provider.fetch(req("SPY", date(2024, 3, 4), date(2024, 3, 8)))

    assert list(frame.columns) == list(BAR_COLUMNS)
    assert frame["date"].dtype == np.dtype("datetime64[ns]")
    assert all(frame[c].dtype == np.dtype("float64") for c in BAR_COLUMNS[1:])
    expected = BARS["SPY"].iloc[1:6].reset_index(drop=True)  # 2024-03-04 .. 2024-03-08
    assert list(frame["date"]) == [pd.Timestamp(d) for d in expected["date"]]
    assert frame["date"].iloc[-1] == pd.Timestamp("2024-03-08")  # end is inclusive
    for column in ("open", "high", "low", "close", "volume"):
        assert frame[column].tolist() == expected[column].tolist(), column
    assert frame["adj_close"].tolist() == frame["close"].tolist()  # split-adjusted only


def test_request_sent_through_the_sdk(provider: MassiveProvider, server: FakeServer) -> None:
    provider.fetch(req("SPY", date(2024, 3, 4), date(2024, 3, 8)))

    (sent,) = server.requests
    assert sent.path == "/v2/aggs/ticker/SPY/range/1/day/2024-03-04/2024-03-08"
    assert sent.query == {"adjusted": ["true"], "sort": ["asc"], "limit": ["50000"]}
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert "apiKey" not in sent.query


def test_vix_maps_to_index_ticker_without_volume(
    provider: MassiveProvider, server: FakeServer
) -> None:
    frame = provider.fetch(req("VIX"))

    assert server.requests[0].path.startswith("/v2/aggs/ticker/I:VIX/")
    assert frame["close"].tolist() == [14.5, 15.5, 16.5, 17.5, 18.5]
    assert frame["volume"].isna().all()  # index aggregates carry no "v"
    assert list(frame["date"]) == list(pd.to_datetime(SESSIONS[1:6]))


def test_btc_maps_to_crypto_ticker_and_utc_midnights_to_dates(
    provider: MassiveProvider, server: FakeServer
) -> None:
    # Crypto bars start at 00:00 UTC, i.e. 19:00 New York the day before: reading them in
    # New York time would shift every bar back one day.
    frame = provider.fetch(req("BTC-USD", date(2024, 3, 2), date(2024, 3, 4)))

    assert server.requests[0].path.startswith("/v2/aggs/ticker/X:BTCUSD/")
    assert list(frame["date"]) == list(pd.to_datetime(["2024-03-02", "2024-03-03", "2024-03-04"]))
    assert frame["open"].tolist() == [60_001.0, 60_002.0, 60_003.0]


def test_rows_after_end_sent_by_the_api_are_dropped() -> None:
    with fake.massive_server(BARS, API_KEY, leak_after_end=3) as srv:
        frame = MassiveProvider(API_KEY, base_url=srv.url, timeout=1.0).fetch(req("SPY"))

    assert frame["date"].max() == pd.Timestamp("2024-03-08")
    assert len(frame) == 5


def test_empty_window_is_an_empty_frame(provider: MassiveProvider) -> None:
    frame = provider.fetch(req("SPY", date(2024, 3, 9), date(2024, 3, 10)))  # a weekend

    assert frame.empty
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert frame["date"].dtype == np.dtype("datetime64[ns]")


def test_unknown_ticker_is_an_empty_frame(provider: MassiveProvider, server: FakeServer) -> None:
    # The API answers 200 {"resultsCount":0, ...} without "results" for an unknown ticker.
    frame = provider.fetch(req("NOSUCH"))

    assert frame.empty
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert server.requests[0].path.startswith("/v2/aggs/ticker/NOSUCH/")


# --- failures ---------------------------------------------------------------------------------


def test_wrong_key_is_auth(server: FakeServer) -> None:
    provider = MassiveProvider("not-the-key", base_url=server.url, timeout=1.0)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.AUTH
    assert "HTTP 401" in str(error)
    assert "Unknown API Key" in str(error)
    assert "not-the-key" not in str(error)


def test_not_entitled_is_auth(provider: MassiveProvider) -> None:
    error = fetch_error(provider, req("I:NDX"))

    assert error.kind is ProviderErrorKind.AUTH
    assert "HTTP 403" in str(error)
    assert "not entitled" in str(error)


def test_429_is_rate_limit_and_not_retried(provider: MassiveProvider, server: FakeServer) -> None:
    server.fail_next(429, fake.rate_limit_body())

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.RATE_LIMIT
    assert "exceeded the maximum requests per minute" in str(error)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (500, fake.SERVER_ERROR_BODY, {}),
        (502, fake.UNAVAILABLE_BODY.replace("503", "502"), fake.HTML),
        (503, fake.UNAVAILABLE_BODY, fake.HTML),
    ],
)
def test_5xx_is_server_and_not_retried(
    provider: MassiveProvider,
    server: FakeServer,
    status: int,
    body: object,
    headers: dict[str, str],
) -> None:
    server.fail_next(status, body, **headers)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.SERVER
    assert f"HTTP {status}" in str(error)
    assert len(server.requests) == 1


def test_slow_answer_is_timeout(server: FakeServer) -> None:
    provider = MassiveProvider(API_KEY, base_url=server.url, timeout=0.3)
    server.delay_next(1.5)

    started = time.monotonic()
    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.TIMEOUT
    assert time.monotonic() - started < 1.0
    assert len(server.requests) == 1


def test_connection_refused_is_network() -> None:
    provider = MassiveProvider(API_KEY, base_url=f"http://127.0.0.1:{closed_port()}", timeout=0.5)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.NETWORK


def test_unreadable_answer_is_bad_data(provider: MassiveProvider, server: FakeServer) -> None:
    # The SDK itself would log and return [] here (massive/rest/base.py, _get).
    server.fail_next(200, "<html><body>maintenance</body></html>", **fake.HTML)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.BAD_DATA


def test_truncated_answer_is_bad_data(provider: MassiveProvider, server: FakeServer) -> None:
    page = {
        "ticker": "SPY",
        "queryCount": 1,
        "resultsCount": 1,
        "adjusted": True,
        "results": [{"o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1.0, "t": 1709528400000}],
        "status": "OK",
        "request_id": fake.request_id(),
        "next_url": f"{server.url}/v2/aggs/ticker/SPY/range/1/day/1709528400000/1709874000000"
        "?cursor=bGltaXQ9MSZzb3J0PWFzYw",
    }
    server.fail_next(200, page)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.BAD_DATA
    assert "next_url" in str(error)


def test_key_echoed_by_an_intermediary_is_redacted(
    provider: MassiveProvider, server: FakeServer
) -> None:
    # Not something the API does; a proxy echoing the request would.
    server.fail_next(502, f"upstream failed: GET /v2/aggs?apiKey={API_KEY} (Bearer {API_KEY})")

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.SERVER
    assert "***" in str(error)


def test_macro_series_are_unsupported(provider: MassiveProvider, server: FakeServer) -> None:
    assert provider.supports("SPY", SeriesKind.BAR)
    assert not provider.supports("DGS10", SeriesKind.MACRO)

    macro = SeriesRequest("DGS10", SeriesKind.MACRO, date(2024, 3, 4), date(2024, 3, 8))
    error = fetch_error(provider, macro)

    assert error.kind is ProviderErrorKind.UNSUPPORTED
    assert server.requests == []


def test_symbol_mapping() -> None:
    assert MassiveProvider.symbol("VIX") == "I:VIX"
    assert MassiveProvider.symbol("BTC-USD") == "X:BTCUSD"
    assert MassiveProvider.symbol("SPY") == "SPY"
