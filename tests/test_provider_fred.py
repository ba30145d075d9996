"""FredProvider over real HTTP against the local fake FRED API."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import pytest

from tests.fakes.fred_server import (
    API_KEY_NOT_REGISTERED,
    RATE_LIMITED,
    XML_HEADERS,
    FredState,
    fred_error,
    fred_server,
)
from tests.fakes.http import FakeServer, Fault
from tiller.data.base import (
    MACRO_COLUMNS,
    DataProvider,
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
)
from tiller.data.providers.fred import FredProvider

KEY = "abcdef0123456789abcdef0123456789"
OTHER_KEY = "ffffffffffffffffffffffffffffffff"

# DGS10 around New Year 2024: FRED writes "." for the 2024-01-01 holiday.
DGS10 = pd.DataFrame(
    {
        "date": pd.to_datetime(
            ["2023-12-28", "2023-12-29", "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
        ),
        "value": [3.84, 3.88, np.nan, 3.95, 3.91, 3.99],
    }
)
CPI = pd.DataFrame(
    {
        "date": pd.to_datetime(["2023-10-01", "2023-11-01", "2023-12-01"]),
        "value": [307.653, 308.087, 308.735],
    }
)


def req(series: str, start: str, end: str, kind: SeriesKind = SeriesKind.MACRO) -> SeriesRequest:
    return SeriesRequest(series, kind, date.fromisoformat(start), date.fromisoformat(end))


def assert_no_key(err: ProviderError, *keys: str) -> None:
    for key in keys or (KEY,):
        for text in (str(err), err.detail, repr(err.args)):
            assert key not in text


@pytest.fixture
def state() -> FredState:
    return FredState(series={"DGS10": DGS10, "CPIAUCSL": CPI}, api_key=KEY)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeServer]:
    # One server per module: FakeServer.__exit__ waits up to 0.5 s (serve_forever's poll).
    with fred_server() as srv:
        yield srv


@pytest.fixture
def server(shared_server: FakeServer, state: FredState) -> FakeServer:
    shared_server.state = state
    shared_server.requests.clear()
    shared_server.faults.clear()
    return shared_server


def provider(server: FakeServer, key: str = KEY, timeout: float = 2.0) -> FredProvider:
    return FredProvider(key, base_url=server.url, timeout=timeout)


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def fetch_error(p: FredProvider, request: SeriesRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        p.fetch(request)
    assert info.value.provider == "fred"
    assert info.value.series == request.series
    return info.value


# --------------------------------------------------------------------------- happy paths


def test_is_a_data_provider(server: FakeServer) -> None:
    p = provider(server)
    assert isinstance(p, DataProvider)
    assert p.name == "fred"


def test_observations_exact_with_missing_dot_as_nan(server: FakeServer) -> None:
    out = provider(server).fetch(req("DGS10", "2023-12-29", "2024-01-03"))

    want = pd.DataFrame(
        {
            "date": pd.to_datetime(["2023-12-29", "2024-01-01", "2024-01-02", "2024-01-03"]).astype(
                "datetime64[ns]"
            ),
            "value": [3.88, np.nan, 3.95, 3.91],
        }
    )
    pd.testing.assert_frame_equal(out, want)
    assert list(out.columns) == list(MACRO_COLUMNS)
    assert out["date"].dtype == np.dtype("datetime64[ns]")
    assert out["value"].dtype == np.dtype("float64")


def test_request_goes_through_fredapi_with_window_and_key(server: FakeServer) -> None:
    provider(server).fetch(req("DGS10", "2023-12-29", "2024-01-03"))

    (request,) = server.requests
    assert request.path == "/fred/series/observations"
    assert request.query == {
        "series_id": ["DGS10"],
        "observation_start": ["2023-12-29"],
        "observation_end": ["2024-01-03"],
        "api_key": [KEY],
    }


def test_the_fake_really_writes_dot_for_missing(server: FakeServer) -> None:
    url = (
        f"{server.url}/fred/series/observations?series_id=DGS10&observation_start=2024-01-01"
        f"&observation_end=2024-01-01&api_key={KEY}"
    )
    with urllib.request.urlopen(url, timeout=2) as response:
        body = response.read().decode()
    assert 'date="2024-01-01" value="."' in body
    assert 'count="1"' in body


def test_end_is_inclusive_and_rows_after_end_are_clipped(
    server: FakeServer, state: FredState
) -> None:
    state.leak = True  # the upstream ignores observation_end...
    url = (
        f"{server.url}/fred/series/observations?series_id=DGS10&observation_start=2023-12-28"
        f"&observation_end=2024-01-02&api_key={KEY}"
    )
    with urllib.request.urlopen(url, timeout=2) as response:
        assert 'date="2024-01-04"' in response.read().decode()
    # ...and the provider keeps the end date itself but nothing after it.
    out = provider(server).fetch(req("DGS10", "2023-12-28", "2024-01-02"))
    assert out["date"].max() == pd.Timestamp("2024-01-02")
    assert out["value"].tolist()[-1] == 3.95
    assert len(out) == 4


def test_monthly_series(server: FakeServer) -> None:
    out = provider(server).fetch(req("CPIAUCSL", "2023-01-01", "2023-12-31"))
    assert out["value"].tolist() == [307.653, 308.087, 308.735]
    assert out["date"].tolist() == list(pd.to_datetime(["2023-10-01", "2023-11-01", "2023-12-01"]))


def test_no_observations_in_window_is_an_empty_frame(server: FakeServer) -> None:
    out = provider(server).fetch(req("DGS10", "2023-12-30", "2023-12-31"))  # a weekend
    assert out.empty
    assert list(out.columns) == list(MACRO_COLUMNS)
    assert out["date"].dtype == np.dtype("datetime64[ns]")
    assert out["value"].dtype == np.dtype("float64")


def test_start_after_end_is_empty_without_a_request(server: FakeServer) -> None:
    assert provider(server).fetch(req("DGS10", "2024-01-04", "2024-01-01")).empty
    assert not server.requests


# --------------------------------------------------------------------------- supports


def test_supports() -> None:
    p = FredProvider(KEY, base_url="http://127.0.0.1:9")
    for series in ("DGS10", "CPIAUCSL", "VIXCLS", "BAMLH0A0HYM2", "T10Y2Y"):
        assert p.supports(series, SeriesKind.MACRO)
    assert not p.supports("DGS10", SeriesKind.BAR)
    assert not p.supports("BTC-USD", SeriesKind.MACRO)
    assert not p.supports("^VIX", SeriesKind.MACRO)
    assert not p.supports("", SeriesKind.MACRO)


def test_bars_are_unsupported_without_a_request(server: FakeServer) -> None:
    err = fetch_error(provider(server), req("SPY", "2024-01-01", "2024-01-04", SeriesKind.BAR))
    assert err.kind is ProviderErrorKind.UNSUPPORTED
    assert not server.requests


# --------------------------------------------------------------------------- errors


def test_unregistered_key_is_auth(server: FakeServer) -> None:
    err = fetch_error(provider(server, key=OTHER_KEY), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.AUTH and not err.kind.transient
    assert "HTTP 400" in err.detail and "is not registered" in err.detail
    assert_no_key(err, OTHER_KEY)


def test_malformed_key_is_auth(server: FakeServer) -> None:
    err = fetch_error(provider(server, key="NOT-A-KEY"), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.AUTH
    assert "32 character" in err.detail
    assert_no_key(err, "NOT-A-KEY")


def test_unknown_series_is_not_found(server: FakeServer) -> None:
    err = fetch_error(provider(server), req("NOSUCHSERIES", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.NOT_FOUND
    assert "The series does not exist." in err.detail
    assert_no_key(err)


def test_429_is_rate_limit(server: FakeServer) -> None:
    server.faults.append(Fault(429, fred_error(429, RATE_LIMITED), dict(XML_HEADERS)))
    err = fetch_error(provider(server), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.RATE_LIMIT and err.kind.transient
    assert_no_key(err)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, fred_error(500, "Internal Server Error")),
        (503, "<html><head><title>503 Service Unavailable</title></head><body>down</body>"),
        (502, ""),
    ],
)
def test_5xx_is_server(server: FakeServer, status: int, body: str) -> None:
    server.fail_next(status, body)
    err = fetch_error(provider(server), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.SERVER and err.kind.transient
    assert f"HTTP {status}" in err.detail
    assert_no_key(err)


def test_malformed_xml_is_bad_data(server: FakeServer) -> None:
    server.fail_next(200, "<observations><observation date=")
    err = fetch_error(provider(server), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.BAD_DATA
    assert_no_key(err)


def test_non_numeric_value_is_bad_data(server: FakeServer) -> None:
    server.fail_next(
        200,
        '<?xml version="1.0" encoding="utf-8" ?><observations count="1">'
        '<observation date="2024-01-02" value="n/a"/></observations>',
    )
    err = fetch_error(provider(server), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.BAD_DATA


def test_timeout(server: FakeServer) -> None:
    server.delay_next(1.5)
    began = time.monotonic()
    err = fetch_error(provider(server, timeout=0.3), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.TIMEOUT and err.kind.transient
    assert time.monotonic() - began < 1.2
    assert_no_key(err)


def test_connection_refused_is_network() -> None:
    p = FredProvider(KEY, base_url=f"http://127.0.0.1:{closed_port()}", timeout=1)
    err = fetch_error(p, req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.NETWORK and err.kind.transient
    assert_no_key(err)


def test_key_never_in_messages_even_if_the_server_echoes_it(server: FakeServer) -> None:
    server.fail_next(400, fred_error(400, f"{API_KEY_NOT_REGISTERED} (api_key={KEY})"))
    err = fetch_error(provider(server), req("DGS10", "2024-01-01", "2024-01-04"))
    assert err.kind is ProviderErrorKind.AUTH
    assert "***" in err.detail
    assert_no_key(err)
