"""AlpacaDataProvider over real HTTP against the local fake market-data API."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import pytest
import requests

from tests.fakes.alpaca_data_server import AlpacaDataState, alpaca_data_server
from tests.fakes.http import FakeServer
from tiller.data.base import (
    BAR_COLUMNS,
    DataProvider,
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
)
from tiller.data.providers.alpaca_data import AlpacaDataProvider

KEY = "PKTESTKEYID9Q8W7E6R5T"
SECRET = "sEcReTkEy0123456789abcdefghijklmnopqrstu"

# Five sessions around the 2024 DST switch (Sunday 2024-03-10): stock bars are
# stamped 05:00Z before it and 04:00Z after it.
STOCK_DAYS = pd.to_datetime(["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13"])
SPY = pd.DataFrame(
    {
        "date": STOCK_DAYS,
        "open": [510.25, 512.0, 511.5, 513.75, 516.0],
        "high": [514.0, 515.5, 513.0, 517.25, 518.5],
        "low": [509.0, 510.75, 509.5, 512.0, 514.25],
        "close": [513.5, 511.75, 512.25, 516.5, 517.0],
        "volume": [61_000_000, 72_500_000, 58_250_000, 66_125_000, 49_875_000],
        "adj_factor": [0.98, 0.98, 0.99, 0.99, 1.0],
    }
)
CRYPTO_DAYS = pd.date_range("2024-03-07", "2024-03-13", freq="D")
BTC = pd.DataFrame(
    {
        "date": CRYPTO_DAYS,
        "open": [66_000.5, 66_900.0, 68_300.0, 68_500.0, 69_000.0, 72_100.0, 71_400.0],
        "high": [67_000.0, 69_900.0, 68_600.0, 70_000.0, 72_800.0, 72_900.0, 73_600.0],
        "low": [65_600.0, 66_600.0, 68_100.0, 68_200.0, 68_700.0, 71_000.0, 71_300.0],
        "close": [66_900.0, 68_300.0, 68_500.0, 69_000.0, 72_100.0, 71_400.0, 73_000.0],
        "volume": [12.5, 20.25, 5.125, 4.0, 18.75, 22.5, 15.0625],
    }
)


def req(series: str, start: str, end: str, kind: SeriesKind = SeriesKind.BAR) -> SeriesRequest:
    return SeriesRequest(series, kind, date.fromisoformat(start), date.fromisoformat(end))


def expected(frame: pd.DataFrame, start: str, end: str, adjusted: bool) -> pd.DataFrame:
    out = frame[(frame["date"] >= start) & (frame["date"] <= end)].copy()
    factor = out["adj_factor"] if adjusted else 1.0
    out["adj_close"] = (out["close"] * factor).round(6)
    out["date"] = out["date"].astype("datetime64[ns]")
    out = out.loc[:, list(BAR_COLUMNS)].astype({c: "float64" for c in BAR_COLUMNS[1:]})
    return out.reset_index(drop=True)


def assert_no_secrets(err: ProviderError) -> None:
    for text in (str(err), err.detail, repr(err.args)):
        assert KEY not in text
        assert SECRET not in text


@pytest.fixture
def state() -> AlpacaDataState:
    return AlpacaDataState(
        stocks={"SPY": SPY, "BRK.B": SPY.assign(close=SPY["close"] * 0.8)},
        crypto={"BTC/USD": BTC},
        api_key=KEY,
        secret_key=SECRET,
    )


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeServer]:
    # One server per module: FakeServer.__exit__ waits up to 0.5 s (serve_forever's poll).
    with alpaca_data_server() as srv:
        yield srv


@pytest.fixture
def server(shared_server: FakeServer, state: AlpacaDataState) -> FakeServer:
    shared_server.state = state
    shared_server.requests.clear()
    shared_server.faults.clear()
    return shared_server


def provider(server: FakeServer, **kwargs: object) -> AlpacaDataProvider:
    kwargs.setdefault("retry_wait", 0.0)
    return AlpacaDataProvider(KEY, SECRET, base_url=server.url, **kwargs)  # type: ignore[arg-type]


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def fetch_error(p: AlpacaDataProvider, request: SeriesRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        p.fetch(request)
    assert info.value.provider == "alpaca"
    assert info.value.series == request.series
    assert_no_secrets(info.value)
    return info.value


# --------------------------------------------------------------------------- happy paths


def test_is_a_data_provider(server: FakeServer) -> None:
    assert isinstance(provider(server), DataProvider)
    assert provider(server).name == "alpaca"


def test_stock_bars_exact_values_dates_and_dtypes(server: FakeServer) -> None:
    out = provider(server).fetch(req("SPY", "2024-03-07", "2024-03-13"))

    pd.testing.assert_frame_equal(out, expected(SPY, "2024-03-07", "2024-03-13", adjusted=True))
    assert list(out.columns) == list(BAR_COLUMNS)
    assert out["date"].dtype == np.dtype("datetime64[ns]")
    assert all(out[c].dtype == np.dtype("float64") for c in BAR_COLUMNS[1:])
    # The session dates survive the DST switch: 2024-03-11 was stamped 04:00Z.
    assert list(out["date"].dt.strftime("%Y-%m-%d")) == [
        "2024-03-07",
        "2024-03-08",
        "2024-03-11",
        "2024-03-12",
        "2024-03-13",
    ]


def test_stock_requests_use_split_then_all_adjustment_feed_and_key_headers(
    server: FakeServer,
) -> None:
    provider(server).fetch(req("SPY", "2024-03-08", "2024-03-11"))

    assert [r.path for r in server.requests] == ["/v2/stocks/bars"] * 2
    assert [r.query["adjustment"] for r in server.requests] == [["split"], ["all"]]
    for r in server.requests:
        assert r.query["symbols"] == ["SPY"]
        assert r.query["timeframe"] == ["1Day"]
        assert r.query["feed"] == ["iex"]
        # Window: New York midnight of start to the last second of end (New York).
        assert r.query["start"] == ["2024-03-08T05:00:00+00:00"]
        assert r.query["end"] == ["2024-03-12T03:59:59+00:00"]
        assert r.headers["APCA-API-KEY-ID"] == KEY
        assert r.headers["APCA-API-SECRET-KEY"] == SECRET


def test_end_is_inclusive_and_rows_after_end_are_clipped(
    server: FakeServer, state: AlpacaDataState
) -> None:
    state.leak = True
    # The misbehaving upstream really does send rows after the requested end...
    raw = requests.get(
        f"{server.url}/v2/stocks/bars",
        params={
            "symbols": "SPY",
            "timeframe": "1Day",
            "feed": "iex",
            "start": "2024-03-08T05:00:00Z",
            "end": "2024-03-11T23:59:59-04:00",
        },
        headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
        timeout=2,
    ).json()
    assert [b["t"] for b in raw["bars"]["SPY"]][-1] == "2024-03-13T04:00:00Z"

    out = provider(server).fetch(req("SPY", "2024-03-08", "2024-03-11"))

    # ...and the provider keeps the end date itself but nothing after it.
    assert list(out["date"]) == [pd.Timestamp("2024-03-08"), pd.Timestamp("2024-03-11")]
    pd.testing.assert_frame_equal(out, expected(SPY, "2024-03-08", "2024-03-11", adjusted=True))


def test_crypto_btc_usd_maps_to_btc_slash_usd_and_keeps_weekends(server: FakeServer) -> None:
    out = provider(server).fetch(req("BTC-USD", "2024-03-08", "2024-03-12"))

    (request,) = server.requests
    assert request.path == "/v1beta3/crypto/us/bars"
    assert request.query["symbols"] == ["BTC/USD"]
    assert "adjustment" not in request.query and "feed" not in request.query
    want = BTC[(BTC["date"] >= "2024-03-08") & (BTC["date"] <= "2024-03-12")].copy()
    want["adj_close"] = want["close"]
    want["date"] = want["date"].astype("datetime64[ns]")
    want = want.loc[:, list(BAR_COLUMNS)].astype({c: "float64" for c in BAR_COLUMNS[1:]})
    # Crypto bars are stamped midnight Chicago (06:00Z, then 05:00Z after DST);
    # the dates are still the calendar days, weekend included.
    pd.testing.assert_frame_equal(out, want.reset_index(drop=True))


def test_pagination_follows_next_page_token(server: FakeServer, state: AlpacaDataState) -> None:
    state.page_size = 2  # 5 bars -> 3 pages per adjustment

    out = provider(server).fetch(req("SPY", "2024-03-07", "2024-03-13"))

    pd.testing.assert_frame_equal(out, expected(SPY, "2024-03-07", "2024-03-13", adjusted=True))
    tokens = [r.query.get("page_token", [None])[0] for r in server.requests]
    assert len(server.requests) == 6
    assert tokens[0] is None and tokens[3] is None
    assert all(tokens[i] for i in (1, 2, 4, 5))
    assert tokens[1] != tokens[2]


def test_crypto_pagination(server: FakeServer, state: AlpacaDataState) -> None:
    state.page_size = 3
    out = provider(server).fetch(req("BTC-USD", "2024-03-07", "2024-03-13"))
    assert len(server.requests) == 3
    assert list(out["close"]) == list(BTC["close"])


def test_class_share_dash_is_sent_as_dot(server: FakeServer) -> None:
    out = provider(server).fetch(req("BRK-B", "2024-03-07", "2024-03-07"))
    assert server.requests[0].query["symbols"] == ["BRK.B"]
    assert out["close"].tolist() == [513.5 * 0.8]


def test_no_bars_in_window_is_an_empty_frame(server: FakeServer) -> None:
    out = provider(server).fetch(req("SPY", "2024-03-09", "2024-03-10"))  # a weekend
    assert out.empty
    assert list(out.columns) == list(BAR_COLUMNS)
    assert out["date"].dtype == np.dtype("datetime64[ns]")
    assert len(server.requests) == 1  # no second (adjusted) request for nothing


def test_unknown_but_valid_ticker_is_empty_like_alpaca(server: FakeServer) -> None:
    # Alpaca answers 200 {"bars":{},"next_page_token":null} for a well-formed unknown ticker.
    out = provider(server).fetch(req("ZZZZ", "2024-03-07", "2024-03-13"))
    assert out.empty and list(out.columns) == list(BAR_COLUMNS)


def test_start_after_end_is_empty_without_a_request(server: FakeServer) -> None:
    out = provider(server).fetch(req("SPY", "2024-03-13", "2024-03-07"))
    assert out.empty and not server.requests


# --------------------------------------------------------------------------- supports


def test_supports() -> None:
    p = AlpacaDataProvider(KEY, SECRET, base_url="http://127.0.0.1:9")
    assert p.supports("SPY", SeriesKind.BAR)
    assert p.supports("BTC-USD", SeriesKind.BAR)
    assert p.supports("ETH-USD", SeriesKind.BAR)
    assert p.supports("BRK-B", SeriesKind.BAR)
    assert not p.supports("VIX", SeriesKind.BAR)
    assert not p.supports("^VIX", SeriesKind.BAR)
    assert not p.supports("SPY", SeriesKind.MACRO)
    assert not p.supports("DGS10", SeriesKind.MACRO)
    assert AlpacaDataProvider.crypto_symbol("BTC-USD") == "BTC/USD"
    assert AlpacaDataProvider.crypto_symbol("BRK-B") is None


def test_vix_is_unsupported_without_a_request(server: FakeServer) -> None:
    err = fetch_error(provider(server), req("VIX", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.UNSUPPORTED
    assert not server.requests


# --------------------------------------------------------------------------- errors


def test_wrong_credentials_are_auth(server: FakeServer) -> None:
    p = AlpacaDataProvider("PKWRONGKEY", "wrongsecret", base_url=server.url, retry_wait=0.0)
    with pytest.raises(ProviderError) as info:
        p.fetch(req("SPY", "2024-03-07", "2024-03-13"))
    assert info.value.kind is ProviderErrorKind.AUTH
    assert "403" in info.value.detail and "forbidden" in info.value.detail
    assert "PKWRONGKEY" not in str(info.value) and "wrongsecret" not in str(info.value)


def test_401_not_authorized_is_auth(server: FakeServer) -> None:
    server.fail_next(401, {"code": 40110000, "message": "request is not authorized"})
    err = fetch_error(provider(server), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.AUTH
    assert "request is not authorized" in err.detail
    assert not err.kind.transient


def test_sip_feed_without_subscription_is_auth(server: FakeServer) -> None:
    err = fetch_error(provider(server, feed="sip"), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.AUTH
    assert "subscription does not permit" in err.detail
    assert server.requests[0].query["feed"] == ["sip"]


def test_429_is_retried_once_then_rate_limit(server: FakeServer) -> None:
    server.fail_next(429, {"message": "too many requests"}, times=2)
    err = fetch_error(provider(server), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.RATE_LIMIT and err.kind.transient
    assert len(server.requests) == 2  # the first try and one SDK retry


def test_one_429_then_success_is_absorbed_by_the_sdk_retry(server: FakeServer) -> None:
    server.fail_next(429, {"message": "too many requests"})
    out = provider(server).fetch(req("SPY", "2024-03-07", "2024-03-13"))
    assert len(out) == 5


def test_no_retries_when_disabled(server: FakeServer) -> None:
    server.fail_next(429, {"message": "too many requests"})
    err = fetch_error(provider(server, retries=0), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.RATE_LIMIT
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"message": "internal server error"}),
        (503, {"message": "service unavailable"}),
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    ],
)
def test_5xx_is_server(server: FakeServer, status: int, body: object) -> None:
    server.fail_next(status, body)
    err = fetch_error(provider(server), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.SERVER and err.kind.transient
    assert f"HTTP {status}" in err.detail
    assert len(server.requests) == 1  # the SDK retries only 429 and 504


def test_504_is_retried_once_then_server(server: FakeServer) -> None:
    server.fail_next(504, "Gateway Timeout", times=2)
    err = fetch_error(provider(server), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.SERVER
    assert len(server.requests) == 2


def test_invalid_symbol_is_not_found(server: FakeServer) -> None:
    # Alpaca's answer when it rejects a ticker (e.g. one with a digit: "invalid symbol: YZCDE2").
    server.fail_next(400, {"message": "invalid symbol: QQQQQ"})
    err = fetch_error(provider(server), req("QQQQQ", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.NOT_FOUND
    assert "invalid symbol: QQQQQ" in err.detail


def test_other_4xx_is_bad_data(server: FakeServer) -> None:
    server.fail_next(422, {"code": 42210000, "message": "invalid start"})
    err = fetch_error(provider(server), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.BAD_DATA and not err.kind.transient


@pytest.mark.parametrize("body", [{"unexpected": []}, "", "not json"])
def test_malformed_payload_is_bad_data(server: FakeServer, body: object) -> None:
    server.fail_next(200, body)
    err = fetch_error(provider(server), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.BAD_DATA


def test_timeout(server: FakeServer) -> None:
    server.delay_next(1.5)
    began = time.monotonic()
    err = fetch_error(provider(server, timeout=0.3), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.TIMEOUT and err.kind.transient
    assert time.monotonic() - began < 1.2


def test_connection_refused_is_network() -> None:
    p = AlpacaDataProvider(KEY, SECRET, base_url=f"http://127.0.0.1:{closed_port()}", timeout=1)
    err = fetch_error(p, req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.NETWORK and err.kind.transient


def test_crypto_errors_are_mapped_too(server: FakeServer) -> None:
    server.fail_next(503, {"message": "service unavailable"})
    err = fetch_error(provider(server), req("BTC-USD", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.SERVER


def test_keys_never_in_messages_even_if_the_server_echoes_them(server: FakeServer) -> None:
    server.fail_next(403, {"message": f"forbidden: key {KEY} secret {SECRET}"})
    err = fetch_error(provider(server), req("SPY", "2024-03-07", "2024-03-13"))
    assert err.kind is ProviderErrorKind.AUTH
    assert "***" in err.detail
