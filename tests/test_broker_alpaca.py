"""AlpacaPaperBroker over real HTTP against the local stateful fake trading API."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests.fakes.alpaca_trading_server import (
    INTERNAL_ERROR,
    RATE_LIMITED,
    AlpacaTradingServer,
    AlpacaTradingState,
    alpaca_trading_server,
)
from tiller.execution.alpaca import (
    AlpacaPaperBroker,
    _kind_for,
    check_paper_url,
    from_alpaca_symbol,
    to_alpaca_symbol,
)
from tiller.execution.broker import (
    Broker,
    BrokerError,
    BrokerErrorKind,
    OrderRequest,
    OrderSide,
    OrderStatus,
)
from tiller.execution.retry import RetryingBroker
from tiller.settings import ExecutionConfig

KEY = "PKTESTTRADEKEY7Q8W9E"
SECRET = "tRaDeSeCrEt0123456789abcdefghijklmnopqrs"
AS_OF = date(2024, 3, 8)


def order(
    cid: str, symbol: str = "SPY", side: OrderSide = OrderSide.BUY, qty: float = 10
) -> OrderRequest:
    return OrderRequest(cid, symbol, side, qty, AS_OF)


def assert_no_secrets(err: BaseException) -> None:
    texts = [str(err), repr(err.args), getattr(err, "detail", "")]
    for text in texts:
        assert KEY not in text
        assert SECRET not in text


@pytest.fixture
def fake() -> Iterator[AlpacaTradingServer]:
    with alpaca_trading_server(AlpacaTradingState(api_key=KEY, secret_key=SECRET)) as server:
        yield server


@pytest.fixture
def make_broker(fake: AlpacaTradingServer) -> Callable[..., RetryingBroker]:
    """The adapter behind the one retry layer, as the orders stage builds it."""

    def make(timeout: float = 2.0, retries: int = 2, retry_wait: float = 0.01) -> RetryingBroker:
        adapter = AlpacaPaperBroker(KEY, SECRET, base_url=fake.url, timeout=timeout)
        return RetryingBroker(adapter, retries, retry_wait)

    return make


@pytest.fixture
def broker(make_broker: Callable[..., RetryingBroker]) -> RetryingBroker:
    return make_broker()


# ------------------------------------------------------------ refusals (no network)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.alpaca.markets",
        "https://api.alpaca.markets/v2",
        "HTTPS://API.ALPACA.MARKETS/",
        "http://paper-api.alpaca.markets",  # keys in clear text
        "https://paper-api.alpaca.markets.evil.example",
        "https://paper-api.alpaca.markets:8443",
        "https://user:pw@paper-api.alpaca.markets",
        "https://broker-api.alpaca.markets",
        # read as a loopback host with user info by a URL parser, while the HTTP stack
        # ends the host at the backslash and connects to the live host
        "https://api.alpaca.markets\\@localhost:8443",
        "http://api.alpaca.markets\\@127.0.0.1",
        "https://paper-api.alpaca.markets.",
        "http://localhost.:8080",
        "http://127.0.0.2:8080",
        "http://0.0.0.0:8080",
        "https://paper-api.alpaca.markets:443",
        " https://paper-api.alpaca.markets",
        "https://paper-api.alpaca.markets\n",
        "https://paper-api.alpaca.markets/v2?x=1",
        "https://paper-api.alpaca.markets#frag",
        "https://paper-api.alpaca.markets/v1",
        "https://paper%2Dapi.alpaca.markets",
        "ftp://127.0.0.1:21",
        "http:/127.0.0.1:8080",
        "",
        "not a url",
    ],
)
def test_refuses_non_paper_urls_before_any_request(fake: AlpacaTradingServer, url: str) -> None:
    with pytest.raises(BrokerError) as info:
        AlpacaPaperBroker(KEY, SECRET, base_url=url)
    assert info.value.kind is BrokerErrorKind.CONFIG
    assert "paper" in str(info.value)
    assert_no_secrets(info.value)
    assert fake.requests == []


LOOPBACK_OR_PAPER = {"paper-api.alpaca.markets", "127.0.0.1", "localhost", "::1", "[::1]"}
_URL_PARTS = {
    "scheme": ["https", "http", "HTTPS", "ftp", "javascript", "", "http:"],
    "separator": ["://", ":/", ":\\\\", "//", ":///", "://\\", ":\\/"],
    "userinfo": ["", "user@", "user:pw@", "@", "api.alpaca.markets\\@", "api.alpaca.markets@"],
    "host": [
        "paper-api.alpaca.markets",
        "PAPER-API.alpaca.markets",
        "paper-api.alpaca.markets.",
        "api.alpaca.markets",
        "paper-api.alpaca.markets.evil.example",
        "127.0.0.1",
        "127.0.0.2",
        "0.0.0.0",
        "localhost",
        "localhost.",
        "LOCALHOST",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0x7f000001",
        "127.0.0.1.nip.io",
        "example.com",
        "",
    ],
    "port": ["", ":8080", ":443", ":0", ":99999", ":80@api.alpaca.markets", ":"],
    "path": ["", "/", "/v2", "/v2/", "/v1", "/x", "?a=b", "#f", "\\", "%2f", " ", "\t", "/\\@x"],
}


@st.composite
def _url_spellings(draw: st.DrawFn) -> str:
    parts = {name: draw(st.sampled_from(choices)) for name, choices in _URL_PARTS.items()}
    url = "".join(parts[k] for k in ("scheme", "separator", "userinfo", "host", "port", "path"))
    if draw(st.booleans()):  # and a random edit somewhere
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(st.text(max_size=3)) + url[at:]
    return url


@settings(max_examples=1500, deadline=None)
@given(url=_url_spellings())
def test_every_accepted_url_reaches_only_the_paper_host_or_loopback(url: str) -> None:
    """Many spellings: whatever is accepted, the URL alpaca-py builds from it (base + /v2 +
    path) is sent by requests/urllib3 to the paper host or to a loopback address."""
    from alpaca.trading.client import TradingClient
    from urllib3.util import parse_url

    try:
        base = check_paper_url(url)
    except BrokerError as exc:
        assert exc.kind is BrokerErrorKind.CONFIG
        return
    client = TradingClient(KEY, SECRET, paper=True, url_override=base)
    assert client._base_url == base  # the SDK uses exactly the approved URL
    request_url = f"{client._base_url}/v2/account"
    prepared = requests.Request("GET", request_url).prepare()
    assert prepared.url is not None
    assert parse_url(prepared.url).host in LOOPBACK_OR_PAPER
    assert (base == "https://paper-api.alpaca.markets") or parse_url(base).host in (
        "127.0.0.1",
        "localhost",
        "[::1]",
    )


def test_live_url_message_names_the_problem() -> None:
    with pytest.raises(BrokerError, match="live trading endpoint"):
        AlpacaPaperBroker(KEY, SECRET, base_url="https://api.alpaca.markets")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://paper-api.alpaca.markets", "https://paper-api.alpaca.markets"),
        ("https://paper-api.alpaca.markets/", "https://paper-api.alpaca.markets"),
        ("https://Paper-API.alpaca.markets/v2", "https://paper-api.alpaca.markets"),
        ("http://127.0.0.1:8123/", "http://127.0.0.1:8123"),
        ("http://localhost:9000/v2", "http://localhost:9000"),
    ],
)
def test_accepts_paper_and_loopback_urls(url: str, expected: str) -> None:
    assert check_paper_url(url) == expected
    broker = AlpacaPaperBroker(KEY, SECRET, base_url=url)  # no request is made here
    assert broker.base_url == expected
    assert KEY not in repr(broker) and SECRET not in repr(broker)


@pytest.mark.parametrize(("key", "secret"), [("", SECRET), (KEY, ""), ("  ", "  ")])
def test_refuses_missing_keys_before_any_request(
    fake: AlpacaTradingServer, key: str, secret: str
) -> None:
    with pytest.raises(BrokerError) as info:
        AlpacaPaperBroker(key, secret, base_url=fake.url)
    assert info.value.kind is BrokerErrorKind.CONFIG
    assert "ALPACA_" in str(info.value)
    assert_no_secrets(info.value)
    assert fake.requests == []


def test_from_settings_names_missing_env_vars(fake: AlpacaTradingServer) -> None:
    settings = SimpleNamespace(
        alpaca_api_key=SecretStr(KEY),
        alpaca_secret_key=None,
        alpaca_url=None,
        execution=ExecutionConfig(alpaca_url=fake.url),
    )
    with pytest.raises(BrokerError) as info:
        AlpacaPaperBroker.from_settings(settings)
    assert info.value.kind is BrokerErrorKind.CONFIG
    assert "ALPACA_SECRET_KEY" in str(info.value)
    assert "ALPACA_API_KEY" not in str(info.value)
    settings.alpaca_api_key = None
    with pytest.raises(BrokerError, match="ALPACA_API_KEY and ALPACA_SECRET_KEY"):
        AlpacaPaperBroker.from_settings(settings)
    assert fake.requests == []


def test_from_settings_refuses_live_url_from_config(fake: AlpacaTradingServer) -> None:
    settings = SimpleNamespace(
        alpaca_api_key=SecretStr(KEY),
        alpaca_secret_key=SecretStr(SECRET),
        alpaca_url=None,
        execution=ExecutionConfig(alpaca_url="https://api.alpaca.markets"),
    )
    with pytest.raises(BrokerError) as info:
        AlpacaPaperBroker.from_settings(settings)
    assert info.value.kind is BrokerErrorKind.CONFIG
    assert fake.requests == []


def test_from_real_settings_and_environment(
    fake: AlpacaTradingServer, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    monkeypatch.setenv("TILLER_ALPACA_URL", fake.url)
    broker = AlpacaPaperBroker.from_settings(make_settings())
    assert broker.base_url == fake.url
    assert broker.account().cash == pytest.approx(100_000.0)


def test_is_a_broker(broker: RetryingBroker) -> None:
    assert isinstance(broker, Broker)
    assert broker.name == "alpaca"


# ------------------------------------------------------------------------ orders


def test_submit_returns_accepted_order_and_fill_is_observed_later(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    sent = broker.submit(order("tiller-rp-20240308-SPY-buy"))
    assert sent.status in (OrderStatus.ACCEPTED, OrderStatus.PENDING_NEW, OrderStatus.NEW)
    assert not sent.status.terminal
    assert sent.filled_qty == 0 and sent.filled_avg_price is None
    assert sent.symbol == "SPY" and sent.side is OrderSide.BUY and sent.qty == 10
    assert sent.client_order_id == "tiller-rp-20240308-SPY-buy"
    assert sent.submitted_at is not None and sent.filled_at is None
    assert fake.order_requests() == [
        {
            "symbol": "SPY",
            "qty": 10.0,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "tiller-rp-20240308-SPY-buy",
        }
    ]
    # Nothing fills until the venue says so.
    assert broker.get_order(sent.broker_id).status is sent.status
    assert broker.positions() == []

    fake.fill(sent.broker_id, 501.25)
    done = broker.get_order(sent.broker_id)
    assert done.status is OrderStatus.FILLED
    assert done.filled_qty == 10 and done.filled_avg_price == pytest.approx(501.25)
    assert done.filled_at is not None
    [pos] = broker.positions()
    assert (pos.symbol, pos.qty, pos.avg_entry_price) == ("SPY", 10.0, pytest.approx(501.25))
    assert broker.account().cash == pytest.approx(100_000 - 5012.5)


def test_market_closed_day_order_is_accepted_and_queued(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    fake.state.market_open = False
    sent = broker.submit(order("after-hours"))
    assert sent.status is OrderStatus.ACCEPTED
    fake.fill("after-hours", 499.0)  # filled at the next open
    assert broker.get_order(sent.broker_id).status is OrderStatus.FILLED


def test_partial_fill(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    sent = broker.submit(order("partial", qty=10))
    fake.fill("partial", 100.0, qty=4)
    part = broker.get_order(sent.broker_id)
    assert part.status is OrderStatus.PARTIALLY_FILLED and not part.status.terminal
    assert part.filled_qty == 4 and part.filled_avg_price == pytest.approx(100.0)
    assert part.filled_at is None
    assert [o.broker_id for o in broker.open_orders()] == [sent.broker_id]
    assert broker.positions()[0].qty == 4

    fake.fill("partial", 101.0)
    done = broker.get_order(sent.broker_id)
    assert done.status is OrderStatus.FILLED
    assert done.filled_qty == 10 and done.filled_avg_price == pytest.approx(100.6)
    assert broker.positions()[0].avg_entry_price == pytest.approx(100.6)
    assert broker.open_orders() == []


def test_duplicate_client_order_id(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    first = broker.submit(order("dup-1"))
    with pytest.raises(BrokerError) as info:
        broker.submit(order("dup-1"))
    assert info.value.kind is BrokerErrorKind.DUPLICATE
    assert "client_order_id must be unique" in str(info.value)
    assert not info.value.kind.transient
    found = broker.get_order_by_client_id("dup-1")
    assert found is not None and found.broker_id == first.broker_id
    assert broker.get_order_by_client_id("never-sent") is None
    assert len(fake.state.orders) == 1


def test_lost_submit_answer_is_recovered_by_client_order_id(
    fake: AlpacaTradingServer, make_broker: Callable[..., RetryingBroker]
) -> None:
    """The first POST reaches Alpaca but its answer times out; the retry is a duplicate."""
    broker = make_broker(timeout=0.3, retries=2)
    fake.state.stall_after_submit.append(0.6)
    sent = broker.submit(order("lost-answer", qty=3))
    assert sent.client_order_id == "lost-answer" and sent.qty == 3
    assert len(fake.state.orders) == 1
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/v2/orders"),
        ("POST", "/v2/orders"),  # refused: client_order_id must be unique
        ("GET", "/v2/orders:by_client_order_id"),
    ]


def test_duplicate_after_lost_answer_for_a_different_order_is_still_duplicate(
    fake: AlpacaTradingServer, make_broker: Callable[..., RetryingBroker]
) -> None:
    broker = make_broker(retries=2)
    broker.submit(order("reused", qty=1))
    fake.fail_next(503, INTERNAL_ERROR)
    with pytest.raises(BrokerError) as info:
        broker.submit(order("reused", qty=5))  # same id, different order
    assert info.value.kind is BrokerErrorKind.DUPLICATE


def test_insufficient_buying_power(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    with pytest.raises(BrokerError) as info:
        broker.submit(order("too-big", qty=1000))  # 1000 x 500 > 100k
    assert info.value.kind is BrokerErrorKind.INSUFFICIENT_BUYING_POWER
    assert "insufficient buying power" in str(info.value)
    with pytest.raises(BrokerError) as crypto:
        broker.submit(order("too-much-btc", symbol="BTC-USD", qty=2))
    assert crypto.value.kind is BrokerErrorKind.INSUFFICIENT_BUYING_POWER
    assert "insufficient balance for USD" in str(crypto.value)
    # Open buy orders reserve buying power.
    broker.submit(order("reserve", qty=150))  # 75k
    assert broker.account().buying_power == pytest.approx(25_000)
    with pytest.raises(BrokerError) as second:
        broker.submit(order("over-reserved", qty=60))
    assert second.value.kind is BrokerErrorKind.INSUFFICIENT_BUYING_POWER
    assert [o["client_order_id"] for o in fake.state.orders.values()] == ["reserve"]


def test_selling_more_than_held_is_rejected(broker: RetryingBroker) -> None:
    with pytest.raises(BrokerError) as info:
        broker.submit(order("sell-none", side=OrderSide.SELL, qty=5))
    assert info.value.kind is BrokerErrorKind.REJECTED
    assert "insufficient qty available" in str(info.value)
    with pytest.raises(BrokerError) as crypto:
        broker.submit(order("sell-btc", symbol="BTC-USD", side=OrderSide.SELL, qty=0.5))
    assert crypto.value.kind is BrokerErrorKind.REJECTED
    assert "insufficient balance for BTC" in str(crypto.value)


@pytest.mark.parametrize("symbol", ["XYZQ", "HALT"])
def test_unknown_or_untradable_symbol(
    fake: AlpacaTradingServer, broker: RetryingBroker, symbol: str
) -> None:
    with pytest.raises(BrokerError) as info:
        broker.submit(order(f"bad-{symbol}", symbol=symbol))
    assert info.value.kind is BrokerErrorKind.UNKNOWN_SYMBOL
    assert symbol in str(info.value)
    assert fake.state.orders == {}


def test_non_positive_qty_is_refused_locally(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    with pytest.raises(BrokerError) as info:
        broker.submit(order("zero", qty=0))
    assert info.value.kind is BrokerErrorKind.REJECTED
    assert fake.requests == []


def test_rejected_after_acceptance(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    sent = broker.submit(order("later-rejected"))
    fake.state.reject(sent.broker_id)
    got = broker.get_order(sent.broker_id)
    assert got.status is OrderStatus.REJECTED and got.reject_reason


# ----------------------------------------------------------------- crypto symbols


def test_btc_usd_mapping_both_ways(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    sent = broker.submit(order("btc-buy", symbol="BTC-USD", qty=0.1234))
    [body] = fake.order_requests()
    assert body["symbol"] == "BTC/USD"
    assert body["time_in_force"] == "gtc"  # Alpaca refuses day for crypto
    assert body["qty"] == pytest.approx(0.1234)
    assert sent.symbol == "BTC-USD" and sent.status is OrderStatus.PENDING_NEW

    fake.fill("btc-buy", 61_000.0)
    raw = requests.get(
        f"{fake.url}/v2/positions",
        headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
        timeout=2,
    ).json()
    assert raw[0]["symbol"] == "BTCUSD" and raw[0]["qty"] == "0.1234"
    [pos] = broker.positions()
    assert pos.symbol == "BTC-USD" and pos.qty == pytest.approx(0.1234)
    assert pos.avg_entry_price == pytest.approx(61_000.0)
    assert broker.get_order(sent.broker_id).symbol == "BTC-USD"


def test_symbol_helpers() -> None:
    assert to_alpaca_symbol("BTC-USD") == "BTC/USD"
    assert to_alpaca_symbol("ETH-USDT") == "ETH/USDT"
    assert to_alpaca_symbol("BRK-B") == "BRK.B"
    assert to_alpaca_symbol("SPY") == "SPY"
    assert from_alpaca_symbol("BTC/USD") == "BTC-USD"
    assert from_alpaca_symbol("BTCUSD", crypto=True) == "BTC-USD"
    assert from_alpaca_symbol("ETHUSDT", crypto=True) == "ETH-USDT"
    assert from_alpaca_symbol("BRK.B") == "BRK-B"
    assert from_alpaca_symbol("SPY", crypto=False) == "SPY"


def test_class_share_mapping(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    sent = broker.submit(order("brk", symbol="BRK-B", qty=2))
    assert fake.order_requests()[0]["symbol"] == "BRK.B"
    assert sent.symbol == "BRK-B"
    fake.fill_all({"BRK-B": 405.0})
    assert [(p.symbol, p.qty) for p in broker.positions()] == [("BRK-B", 2.0)]


# ---------------------------------------------------------- positions and account


def test_positions_and_account_parse_strings(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    fake.set_position("SPY", 10, 450.5)  # a fill Tiller never recorded
    fake.set_position("BTC-USD", 0.25, 58_000.0)
    fake.state.cash = 12_345.67
    positions = {p.symbol: p for p in broker.positions()}
    assert set(positions) == {"SPY", "BTC-USD"}
    assert positions["SPY"].qty == 10.0 and isinstance(positions["SPY"].qty, float)
    assert positions["SPY"].avg_entry_price == pytest.approx(450.5)
    assert positions["BTC-USD"].qty == pytest.approx(0.25)
    account = broker.account()
    assert account.cash == pytest.approx(12_345.67)
    assert account.buying_power == pytest.approx(12_345.67)
    assert account.equity == pytest.approx(12_345.67 + 10 * 500 + 0.25 * 60_000)
    raw = json.loads(
        requests.get(
            f"{fake.url}/v2/account",
            headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
            timeout=2,
        ).text
    )
    assert raw["cash"] == "12345.67" and isinstance(raw["equity"], str)


def test_open_orders_and_cancel(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    a = broker.submit(order("open-a", qty=1))
    b = broker.submit(order("open-b", symbol="GLD", qty=2))
    c = broker.submit(order("open-c", symbol="TLT", qty=3))
    fake.fill("open-c", 95.0)
    assert {o.client_order_id for o in broker.open_orders()} == {"open-a", "open-b"}

    broker.cancel_order(a.broker_id)
    assert broker.get_order(a.broker_id).status is OrderStatus.CANCELED
    broker.cancel_order(a.broker_id)  # already canceled: no-op
    assert [o.broker_id for o in broker.open_orders()] == [b.broker_id]

    with pytest.raises(BrokerError) as filled:
        broker.cancel_order(c.broker_id)
    assert filled.value.kind is BrokerErrorKind.REJECTED
    assert "filled" in str(filled.value)
    with pytest.raises(BrokerError) as missing:
        broker.cancel_order("8a0b7a4e-0000-4000-8000-000000000000")
    assert missing.value.kind is BrokerErrorKind.NOT_FOUND


def test_get_order_unknown_ids(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    with pytest.raises(BrokerError) as info:
        broker.get_order("not-a-uuid")
    assert info.value.kind is BrokerErrorKind.NOT_FOUND
    assert fake.requests == []
    with pytest.raises(BrokerError) as missing:
        broker.get_order("8a0b7a4e-0000-4000-8000-000000000000")
    assert missing.value.kind is BrokerErrorKind.NOT_FOUND


def test_fake_cancel_all_speaks_207(fake: AlpacaTradingServer, broker: RetryingBroker) -> None:
    broker.submit(order("ca-1", qty=1))
    broker.submit(order("ca-2", qty=1))
    assert isinstance(broker.inner, AlpacaPaperBroker)
    results = broker.inner._client.cancel_orders()
    assert [r.status for r in results] == [200, 200]  # type: ignore[union-attr]
    assert broker.open_orders() == []


# ------------------------------------------------------------- transient failures


def test_rate_limit_then_success_within_retries(
    fake: AlpacaTradingServer, make_broker: Callable[..., RetryingBroker]
) -> None:
    broker = make_broker(retries=3, retry_wait=0.01)
    fake.fail_next(429, RATE_LIMITED, times=2)
    started = time.monotonic()
    assert broker.account().cash == pytest.approx(100_000)
    assert time.monotonic() - started < 1.0  # not the SDK's 3 s sleeps
    assert len(fake.requests) == 3


def test_rate_limit_exhausted(
    fake: AlpacaTradingServer, make_broker: Callable[..., RetryingBroker]
) -> None:
    broker = make_broker(retries=1)
    fake.fail_next(429, RATE_LIMITED, times=5)
    with pytest.raises(BrokerError) as info:
        broker.positions()
    assert info.value.kind is BrokerErrorKind.RATE_LIMIT and info.value.kind.transient
    assert len(fake.requests) == 2


def test_submit_retries_rate_limit_once_per_order(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    fake.fail_next(429, RATE_LIMITED)
    sent = broker.submit(order("after-429"))
    assert sent.client_order_id == "after-429"
    assert len(fake.state.orders) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_exhausted(
    fake: AlpacaTradingServer, make_broker: Callable[..., RetryingBroker], status: int
) -> None:
    broker = make_broker(retries=2)
    fake.fail_next(status, INTERNAL_ERROR, times=3)
    with pytest.raises(BrokerError) as info:
        broker.submit(order(f"five-{status}"))
    assert info.value.kind is BrokerErrorKind.SERVER
    assert f"HTTP {status}" in str(info.value)
    assert len(fake.requests) == 3
    assert fake.state.orders == {}


def test_non_json_gateway_error(
    fake: AlpacaTradingServer, make_broker: Callable[..., RetryingBroker]
) -> None:
    broker = make_broker(retries=0)
    fake.fail_next(
        502, "<html><body>502 Bad Gateway</body></html>", **{"Content-Type": "text/html"}
    )
    with pytest.raises(BrokerError) as info:
        broker.account()
    assert info.value.kind is BrokerErrorKind.SERVER


def test_timeout(fake: AlpacaTradingServer, make_broker: Callable[..., RetryingBroker]) -> None:
    broker = make_broker(timeout=0.2, retries=0)
    fake.delay_next(0.6)
    with pytest.raises(BrokerError) as info:
        broker.account()
    assert info.value.kind is BrokerErrorKind.TIMEOUT
    assert "0.2 s" in str(info.value)


def test_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broker = RetryingBroker(
        AlpacaPaperBroker(KEY, SECRET, base_url=f"http://127.0.0.1:{port}", timeout=1), 1, 0
    )
    with pytest.raises(BrokerError) as info:
        broker.open_orders()
    assert info.value.kind is BrokerErrorKind.NETWORK
    assert_no_secrets(info.value)


# -------------------------------------------------------------------- auth/secrets


def test_wrong_keys_are_auth_errors_without_secrets(fake: AlpacaTradingServer) -> None:
    broker = AlpacaPaperBroker(KEY, SECRET + "x", base_url=fake.url)
    with pytest.raises(BrokerError) as info:
        broker.account()
    assert info.value.kind is BrokerErrorKind.AUTH
    assert "HTTP 401" in str(info.value)
    assert_no_secrets(info.value)


def test_forbidden_without_business_code_is_auth(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    fake.fail_next(403, {"message": "forbidden"})
    with pytest.raises(BrokerError) as info:
        broker.positions()
    assert info.value.kind is BrokerErrorKind.AUTH


def test_secrets_echoed_by_the_server_are_masked(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    fake.fail_next(422, {"code": 40010001, "message": f"bad key {KEY} / {SECRET}"})
    with pytest.raises(BrokerError) as info:
        broker.submit(order("echo"))
    assert info.value.kind is BrokerErrorKind.REJECTED
    assert_no_secrets(info.value)
    assert "***" in str(info.value)


def test_every_error_in_this_file_is_secret_free(
    fake: AlpacaTradingServer, broker: RetryingBroker
) -> None:
    errors: list[BrokerError] = []
    for attempt in (
        lambda: broker.submit(order("x", symbol="NOPE")),
        lambda: broker.submit(order("y", qty=10_000)),
        lambda: broker.cancel_order("8a0b7a4e-0000-4000-8000-000000000000"),
    ):
        with pytest.raises(BrokerError) as info:
            attempt()
        errors.append(info.value)
    for err in errors:
        assert_no_secrets(err)


# ---------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (422, 40010001, "client_order_id must be unique", BrokerErrorKind.DUPLICATE),
        (422, 40010001, "qty must be > 0", BrokerErrorKind.REJECTED),
        (422, 42210000, 'asset "ZZZZNOTREAL" not found', BrokerErrorKind.UNKNOWN_SYMBOL),
        (422, 42210000, 'asset "RGC" is not tradable', BrokerErrorKind.UNKNOWN_SYMBOL),
        (422, 40010001, "could not find us_equity 'b0b6dd9d'", BrokerErrorKind.UNKNOWN_SYMBOL),
        (422, 42210000, 'asset "EIDO" cannot be sold short', BrokerErrorKind.REJECTED),
        (403, 40310000, "insufficient buying power", BrokerErrorKind.INSUFFICIENT_BUYING_POWER),
        (
            403,
            40310000,
            "insufficient balance for USD (requested: 214.04, available: 0)",
            BrokerErrorKind.INSUFFICIENT_BUYING_POWER,
        ),
        (403, 40310000, "insufficient balance for BTC", BrokerErrorKind.REJECTED),
        (403, 40310000, "potential wash trade detected", BrokerErrorKind.REJECTED),
        (403, None, "forbidden", BrokerErrorKind.AUTH),
        (401, 40110000, "request is not authorized", BrokerErrorKind.AUTH),
        (404, 40410000, "order not found", BrokerErrorKind.NOT_FOUND),
        (429, 42910000, "rate limit exceeded", BrokerErrorKind.RATE_LIMIT),
        (503, None, "service unavailable", BrokerErrorKind.SERVER),
    ],
)
def test_kind_for_real_alpaca_answers(
    status: int, code: int | None, message: str, kind: BrokerErrorKind
) -> None:
    assert _kind_for(status, code, message) is kind
