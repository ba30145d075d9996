"""YahooProvider against a fake Yahoo Finance over real HTTP (no network beyond 127.0.0.1)."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import requests

from tests.fakes import yahoo_server as fake
from tests.fakes.http import FakeServer
from tiller.data.base import (
    BAR_COLUMNS,
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
)
from tiller.data.providers.yahoo import YahooProvider

# yfinance 1.7 calls DataFrame.sort_index(inplace=True), deprecated in pandas 3.1.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

SESSIONS = pd.bdate_range("2024-03-01", "2024-03-15")  # 11 weekdays, no holidays


def make_bars(base: float, volume: float | None = 1_000_000.0) -> pd.DataFrame:
    """Distinct, exactly representable values per session: open = base + i, etc."""
    i = np.arange(len(SESSIONS), dtype=float)
    return pd.DataFrame(
        {
            "date": SESSIONS.date,
            "open": base + i,
            "high": base + i + 2.0,
            "low": base + i - 1.0,
            "close": base + i + 0.5,
            "adj_close": base + i + 0.25,
            "volume": (volume + 1000.0 * i) if volume is not None else np.nan,
        }
    )


BARS = {
    "SPY": make_bars(500.0),
    "^VIX": make_bars(13.0, volume=None),
    "BTC-USD": make_bars(60_000.0),
}


def req(series: str = "SPY", start: date = date(2024, 3, 4), end: date = date(2024, 3, 8)):
    return SeriesRequest(series, SeriesKind.BAR, start, end)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with fake.yahoo_server(BARS) as srv:
        yield srv


@pytest.fixture
def provider(server: FakeServer) -> YahooProvider:
    return YahooProvider(base_url=server.url, timeout=1.0)


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def fetch_error(provider: YahooProvider, request: SeriesRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider.fetch(request)
    assert info.value.provider == "yfinance"
    assert info.value.series == request.series
    return info.value


# --- happy path -------------------------------------------------------------------------------


def test_bars_are_exact_canonical_and_end_inclusive(provider: YahooProvider) -> None:
    frame = provider.fetch(req("SPY", date(2024, 3, 4), date(2024, 3, 8)))

    assert list(frame.columns) == list(BAR_COLUMNS)
    assert frame["date"].dtype == np.dtype("datetime64[ns]")
    assert all(frame[c].dtype == np.dtype("float64") for c in BAR_COLUMNS[1:])
    expected = BARS["SPY"].iloc[1:6].reset_index(drop=True)  # 2024-03-04 .. 2024-03-08
    assert list(frame["date"]) == [pd.Timestamp(d) for d in expected["date"]]
    assert frame["date"].iloc[-1] == pd.Timestamp("2024-03-08")  # end is inclusive
    for column in ("open", "high", "low", "close", "adj_close", "volume"):
        assert frame[column].tolist() == expected[column].tolist(), column
    assert (frame["close"] != frame["adj_close"]).all()  # auto_adjust=False keeps both


def test_window_sent_to_yahoo_is_exchange_midnights_end_exclusive(
    provider: YahooProvider, server: FakeServer
) -> None:
    provider.fetch(req("SPY", date(2024, 3, 4), date(2024, 3, 8)))

    window = [r for r in fake.chart_requests(server) if "period1" in r.query][-1]
    new_york = ZoneInfo("America/New_York")
    assert int(window.query["period1"][0]) == datetime(2024, 3, 4, tzinfo=new_york).timestamp()
    assert int(window.query["period2"][0]) == datetime(2024, 3, 9, tzinfo=new_york).timestamp()
    assert window.query["interval"] == ["1d"]


def test_vix_maps_to_caret_symbol_with_nan_volume(
    provider: YahooProvider, server: FakeServer
) -> None:
    frame = provider.fetch(req("VIX"))

    assert {r.path for r in fake.chart_requests(server)} == {"/v8/finance/chart/%5EVIX"}
    assert frame["close"].tolist() == [14.5, 15.5, 16.5, 17.5, 18.5]
    assert frame["volume"].isna().all()
    assert list(frame["date"]) == list(pd.to_datetime(SESSIONS[1:6]))


def test_btc_symbol_is_unchanged_and_utc_sessions_map_to_dates(
    provider: YahooProvider, server: FakeServer
) -> None:
    frame = provider.fetch(req("BTC-USD"))

    assert {r.path for r in fake.chart_requests(server)} == {"/v8/finance/chart/BTC-USD"}
    assert list(frame["date"]) == list(pd.to_datetime(SESSIONS[1:6]))
    assert frame["open"].tolist() == [60_001.0, 60_002.0, 60_003.0, 60_004.0, 60_005.0]


def test_rows_after_end_sent_by_yahoo_are_dropped() -> None:
    with fake.yahoo_server(BARS, leak_after_end=3) as srv:
        # The fake really does send sessions after period2 ...
        new_york = ZoneInfo("America/New_York")
        p1 = int(datetime(2024, 3, 4, tzinfo=new_york).timestamp())
        p2 = int(datetime(2024, 3, 9, tzinfo=new_york).timestamp())
        query: dict[str, str | int] = {"period1": p1, "period2": p2, "interval": "1d"}
        raw = requests.get(f"{srv.url}/v8/finance/chart/SPY", params=query, timeout=2).json()
        assert max(raw["chart"]["result"][0]["timestamp"]) > p2
        # ... and the provider never returns them.
        frame = YahooProvider(base_url=srv.url, timeout=1.0).fetch(req("SPY"))

    assert frame["date"].max() == pd.Timestamp("2024-03-08")
    assert len(frame) == 5


def test_empty_window_is_an_empty_frame_not_an_error(provider: YahooProvider) -> None:
    frame = provider.fetch(req("SPY", date(2024, 3, 9), date(2024, 3, 10)))  # a weekend

    assert frame.empty
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert frame["date"].dtype == np.dtype("datetime64[ns]")


def test_window_before_first_session_is_empty(provider: YahooProvider) -> None:
    # Yahoo answers HTTP 400 "Data doesn't exist for startDate = ..., endDate = ...".
    frame = provider.fetch(req("SPY", date(2020, 1, 6), date(2020, 1, 10)))

    assert frame.empty
    assert list(frame.columns) == list(BAR_COLUMNS)


def test_single_server_error_is_resent_once_by_yfinance(
    provider: YahooProvider, server: FakeServer
) -> None:
    # yfinance re-sends any request answered >= 400 once (after switching cookie strategy).
    server.fail_next(500, fake.SERVER_ERROR_BODY, **fake.HTML)

    frame = provider.fetch(req("SPY"))

    assert len(frame) == 5
    assert not server.faults  # the 500 was served ...
    sent = [
        (r.path, sorted((k, v) for k, v in r.query.items() if k != "crumb"))
        for r in fake.chart_requests(server)
    ]
    assert any(sent.count(s) == 2 for s in sent)  # ... and the request it hit was sent again


def test_yfinance_disk_caches_live_in_a_private_temp_dir(provider: YahooProvider) -> None:
    from yfinance import cache

    provider.fetch(req("SPY"))

    location = cache._TzDBManager.get_location()
    assert location.startswith(tempfile.gettempdir())
    assert "tiller-yfinance-" in location


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, fake.UNAUTHORIZED_BODY), (403, fake.FORBIDDEN_BODY)],
)
def test_401_and_403_are_auth(
    provider: YahooProvider, server: FakeServer, status: int, body: object
) -> None:
    server.fail_next(status, body, times=2)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.AUTH
    assert str(status) in str(error)
    assert not error.kind.transient


def test_429_is_rate_limit(provider: YahooProvider, server: FakeServer) -> None:
    server.fail_next(429, fake.TOO_MANY_REQUESTS_BODY, times=2, **fake.TEXT)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.RATE_LIMIT
    assert error.kind.transient


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, fake.SERVER_ERROR_BODY), (502, fake.SERVER_ERROR_BODY), (503, fake.UNAVAILABLE_BODY)],
)
def test_5xx_is_server(provider: YahooProvider, server: FakeServer, status: int, body: str) -> None:
    server.fail_next(status, body, times=2, **fake.HTML)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.SERVER
    assert f"HTTP {status}" in str(error)


def test_maintenance_page_is_server(provider: YahooProvider, server: FakeServer) -> None:
    # yfinance turns Yahoo's "Will be right back" page into "YAHOO! FINANCE IS CURRENTLY DOWN".
    server.fail_next(200, fake.UNAVAILABLE_BODY, times=2, **fake.HTML)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.SERVER


def test_slow_answer_is_timeout(provider: YahooProvider, server: FakeServer) -> None:
    provider = YahooProvider(base_url=server.url, timeout=0.3)
    server.delay_next(1.5)

    started = time.monotonic()
    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.TIMEOUT
    assert time.monotonic() - started < 1.0  # yfinance's own 10-30 s timeouts are capped


def test_connection_refused_is_network() -> None:
    provider = YahooProvider(base_url=f"http://127.0.0.1:{closed_port()}", timeout=0.5)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.NETWORK


def test_unknown_symbol_is_not_found(provider: YahooProvider, server: FakeServer) -> None:
    error = fetch_error(provider, req("NOSUCH"))

    assert error.kind is ProviderErrorKind.NOT_FOUND
    assert "NOSUCH" in str(error)
    assert any(r.path == "/v8/finance/chart/NOSUCH" for r in server.requests)


def test_unreadable_answer_is_bad_data(provider: YahooProvider, server: FakeServer) -> None:
    server.fail_next(200, "<html><body>consent</body></html>", times=2, **fake.HTML)

    error = fetch_error(provider, req("SPY"))

    assert error.kind is ProviderErrorKind.BAD_DATA


def test_macro_series_are_unsupported(provider: YahooProvider, server: FakeServer) -> None:
    assert provider.supports("SPY", SeriesKind.BAR)
    assert not provider.supports("DGS10", SeriesKind.MACRO)

    error = fetch_error(
        provider, SeriesRequest("DGS10", SeriesKind.MACRO, date(2024, 3, 4), date(2024, 3, 8))
    )

    assert error.kind is ProviderErrorKind.UNSUPPORTED
    assert server.requests == []


def test_symbol_mapping() -> None:
    assert YahooProvider.symbol("VIX") == "^VIX"
    assert YahooProvider.symbol("BTC-USD") == "BTC-USD"
    assert YahooProvider.symbol("SPY") == "SPY"
    assert YahooProvider(base_url="http://127.0.0.1:9").name == "yfinance"
