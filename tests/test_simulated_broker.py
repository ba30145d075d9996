"""The simulated paper broker and its cost model, on real bars (SPY, GLD, BTC-USD, 2024 Q1).

Prices quoted in the comments are the rows of ``../shared/data/market/*.csv``.
Broker tests run on SQLite and (when configured) PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import MARKET
from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import CsvProvider
from tiller.execution.broker import (
    Broker,
    BrokerError,
    BrokerErrorKind,
    OrderRequest,
    OrderSide,
    OrderStatus,
)
from tiller.execution.costs import (
    commission,
    daily_volatility,
    fill_price,
    slippage_fraction,
)
from tiller.execution.simulated import SimulatedBroker
from tiller.settings import ExecutionConfig
from tiller.store.repo import Store

EXEC = ExecutionConfig()  # defaults: 5 bps, vol x0.10, 1 bp per $10k over $10k
FRI = date(2024, 2, 2)
SAT = date(2024, 2, 3)
MON = date(2024, 2, 5)
TUE = date(2024, 2, 6)
Q1 = (date(2024, 1, 1), date(2024, 3, 31))


# ------------------------------------------------------------------ costs (pure)
def test_slippage_hand_worked_etf() -> None:
    # base 0.0005 (ETF class) + vol 0.10 * 0.01 = 0.001
    # + impact 1 bp * (25_000 - 10_000) / 10_000 = 0.0001 * 1.5 = 0.00015  -> 0.00165
    assert slippage_fraction(0.0005, 0.01, 25_000, EXEC) == pytest.approx(0.00165)


def test_slippage_below_threshold_has_no_impact() -> None:
    # crypto: base 0.0015 + 0.10 * 0.02 = 0.002 -> 0.0035; $9,999 is under the $10k threshold
    assert slippage_fraction(0.0015, 0.02, 9_999, EXEC) == pytest.approx(0.0035)


def test_slippage_default_base_and_nan_vol() -> None:
    # no class slippage -> base_slippage_bps 5 / 1e4 = 0.0005; NaN vol adds nothing
    assert slippage_fraction(None, math.nan, 1_000, EXEC) == pytest.approx(0.0005)


def test_slippage_uses_config_coefficients() -> None:
    config = ExecutionConfig(volatility_slippage=0.5, impact_threshold=0, impact_bps_per_10k=2)
    # 0.001 + 0.5 * 0.02 = 0.011; + 2 bp * 50_000 / 10_000 = 0.0002 * 5 = 0.001 -> 0.012
    assert slippage_fraction(0.001, 0.02, -50_000, config) == pytest.approx(0.012)


def test_fill_price_and_commission_hand_worked() -> None:
    # buy: 100 * (1 + 0.002) = 100.2; sell: 100 * (1 - 0.002) = 99.8
    assert fill_price(100.0, OrderSide.BUY, 0.002) == pytest.approx(100.2)
    assert fill_price(100.0, OrderSide.SELL, 0.002) == pytest.approx(99.8)
    # 0.10% of $12,345 = $12.345, sign ignored
    assert commission(12_345, 0.001) == pytest.approx(12.345)
    assert commission(-12_345, 0.001) == pytest.approx(12.345)


def test_daily_volatility_hand_worked() -> None:
    # prices 100, 110, 99: returns +0.10, -0.10; mean 0; sample std sqrt((0.01+0.01)/1) = 0.1414
    assert daily_volatility([100, 110, 99]) == pytest.approx(math.sqrt(0.02))
    assert math.isnan(daily_volatility([100, 101]))  # one return: unknown
    # only the last 20 returns count: the early jump drops out of the window
    steady = [100.0] * 3 + [200.0] + [200.0 * 1.01**i for i in range(1, 21)]
    assert daily_volatility(steady) == pytest.approx(0.0, abs=1e-12)


rates = st.floats(0, 0.01)
vols = st.floats(0, 0.2)
notionals = st.floats(0, 5e6)


@given(base=rates, vol=vols, notional=notionals)
def test_slippage_at_least_base(base: float, vol: float, notional: float) -> None:
    assert slippage_fraction(base, vol, notional, EXEC) >= base


@given(base=rates, vol=vols, a=notionals, b=notionals)
def test_slippage_monotone_in_notional(base: float, vol: float, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert slippage_fraction(base, vol, low, EXEC) <= slippage_fraction(base, vol, high, EXEC)


@given(base=rates, a=vols, b=vols, notional=notionals)
def test_slippage_monotone_in_vol(base: float, a: float, b: float, notional: float) -> None:
    low, high = sorted((a, b))
    assert slippage_fraction(base, low, notional, EXEC) <= slippage_fraction(
        base, high, notional, EXEC
    )


@given(ref=st.floats(0.01, 1e6), base=rates, vol=vols, notional=notionals)
def test_buys_never_below_sells_never_above(
    ref: float, base: float, vol: float, notional: float
) -> None:
    slip = slippage_fraction(base, vol, notional, EXEC)
    assert fill_price(ref, OrderSide.BUY, slip) >= ref
    assert fill_price(ref, OrderSide.SELL, slip) <= ref
    assert fill_price(ref, OrderSide.SELL, slip) >= 0


# ------------------------------------------------------------------ the broker
def _bars(symbol: str, end: date = Q1[1]) -> pd.DataFrame:
    return CsvProvider(MARKET).fetch(SeriesRequest(symbol, SeriesKind.BAR, Q1[0], end))


def _store_bars(store: Store, symbol: str, start: date, end: date) -> None:
    frame = _bars(symbol)
    days = frame["date"].dt.date
    with store.transaction() as tx:
        store.upsert_bars(tx, symbol, frame[(days >= start) & (days <= end)], "test")


def _open_store(url: str) -> Store:
    return Store.open(url)  # migration 0003 creates the sim_* tables


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A store with SPY, GLD and BTC-USD bars for 2024 Q1."""
    store = _open_store(db_url)
    for symbol in ("SPY", "GLD", "BTC-USD"):
        _store_bars(store, symbol, *Q1)
    yield store
    store.close()


@pytest.fixture
def broker_for(
    store: Store, db_url: str, make_settings: Callable[..., Any]
) -> Callable[..., SimulatedBroker]:
    def make(**execution: Any) -> SimulatedBroker:
        overrides = {"execution": execution} if execution else {}
        settings = make_settings(database_url=db_url, **overrides)
        return SimulatedBroker(store, settings)

    return make


def _order(cid: str, symbol: str, side: OrderSide, qty: float, as_of: date = FRI) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol=symbol, side=side, qty=qty, as_of=as_of)


def _spy_vol_to_friday() -> float:
    """Std of SPY's last 20 adjusted-close returns up to Fri 2024-02-02 (computed apart)."""
    frame = _bars("SPY", FRI).set_index("date")
    return float(frame["adj_close"].pct_change().dropna().iloc[-20:].std(ddof=1))


def test_is_a_broker_and_starts_with_initial_capital(
    broker_for: Callable[..., SimulatedBroker],
) -> None:
    broker = broker_for()
    assert isinstance(broker, Broker)
    assert broker.name == "paper"
    account = broker.account()
    assert account.cash == account.buying_power == account.equity == 100_000
    assert broker.positions() == []


def test_submit_accepts_without_filling(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for()
    order = broker.submit(_order("c-1", "SPY", OrderSide.BUY, 10))
    assert order.status is OrderStatus.ACCEPTED
    assert order.filled_qty == 0 and order.filled_avg_price is None
    assert broker.get_order(order.broker_id) == order
    assert broker.get_order_by_client_id("c-1") == order
    assert broker.get_order_by_client_id("never") is None
    assert broker.open_orders() == [order]
    assert broker.positions() == []
    assert broker.account().cash == 100_000
    # the same day processed: next_open waits for the next session
    assert broker.process(FRI) == []
    assert broker.get_order(order.broker_id).status is OrderStatus.ACCEPTED


def test_next_open_fill_hand_worked(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for()
    order = broker.submit(_order("c-spy", "SPY", OrderSide.BUY, 100))
    # daily vol: std of the 20 adj-close returns 2024-01-04 .. 2024-02-02 = 0.0073078159
    vol = _spy_vol_to_friday()
    assert vol == pytest.approx(0.0073078159, rel=1e-8)
    # fills at Monday 2024-02-05's open 493.70001220703125 (Friday's order, XNYS)
    # notional 100 * 493.70001220703125 = 49,370.001220703125
    # slippage = 0.0005 + 0.10 * 0.0073078159 + 0.0001 * (49,370.001220703125 - 10,000) / 10,000
    #          = 0.0005 + 0.00073078159 + 0.00039370001 = 0.0016244816
    slip = 0.0005 + 0.10 * vol + 0.0001 * (49_370.001220703125 - 10_000) / 10_000
    assert slip == pytest.approx(0.0016244816, rel=1e-8)
    # price = 493.70001220703125 * 1.0016244816 = 494.5020186
    # commission = 0.001 * 100 * price = 49.45
    price = 493.70001220703125 * (1 + slip)
    assert price == pytest.approx(494.5020186, rel=1e-9)
    fee = 0.001 * 100 * price

    filled = broker.process(MON)
    assert [o.broker_id for o in filled] == [order.broker_id]
    got = broker.get_order(order.broker_id)
    assert got.status is OrderStatus.FILLED
    assert got.filled_qty == 100
    assert got.filled_avg_price == pytest.approx(price, rel=1e-9)
    assert got.commission == pytest.approx(fee, rel=1e-9)
    assert got.filled_at is not None and got.filled_at.date() == MON
    assert broker.open_orders() == []
    [position] = broker.positions()
    assert (position.symbol, position.qty) == ("SPY", 100)
    assert position.avg_entry_price == pytest.approx(price, rel=1e-9)
    account = broker.account()
    # cash 100,000 - 49,450.20 - 49.45 = 50,500.35
    # equity marks at Monday's close 492.54998779296875
    assert account.cash == pytest.approx(100_000 - 100 * price - fee, rel=1e-9)
    assert account.cash == 100_000 - 100 * got.filled_avg_price - got.commission
    assert account.cash == pytest.approx(50_500.35, abs=0.01)
    assert account.equity == pytest.approx(account.cash + 100 * 492.54998779296875, rel=1e-12)
    # processing the same day again fills nothing more
    assert broker.process(MON) == []
    assert broker.account().cash == pytest.approx(account.cash, rel=1e-12)


def test_close_mode_fills_at_the_order_days_close(
    broker_for: Callable[..., SimulatedBroker],
) -> None:
    broker = broker_for(fill_price="close", volatility_slippage=0.0)
    order = broker.submit(_order("c-gld", "GLD", OrderSide.BUY, 10))
    # GLD close on Fri 2024-02-02 = 188.61000061035156; $1,886.10 is under the impact threshold
    # slippage = 0.0005 -> price 188.61000061035156 * 1.0005 = 188.70430561
    broker.process(FRI)
    got = broker.get_order(order.broker_id)
    assert got.status is OrderStatus.FILLED
    assert got.filled_avg_price == pytest.approx(188.61000061035156 * 1.0005, rel=1e-12)
    assert got.filled_avg_price == pytest.approx(188.70430561, rel=1e-9)
    assert got.filled_at is not None and got.filled_at.date() == FRI
    # commission 0.001 * 10 * 188.70430561 = 1.8870430561
    assert got.commission == pytest.approx(1.8870430561, rel=1e-9)


def test_fill_delay_sessions(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for(fill_delay_sessions=1, volatility_slippage=0.0)
    order = broker.submit(_order("c-d", "GLD", OrderSide.BUY, 10))
    assert broker.process(MON) == []  # first session after Friday, delayed by one
    broker.process(TUE)
    got = broker.get_order(order.broker_id)
    # Tuesday's open 187.94000244140625 * (1 + 0.0005)
    assert got.filled_avg_price == pytest.approx(187.94000244140625 * 1.0005, rel=1e-12)


def test_partial_fills_over_two_sessions(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for(max_volume_fraction=1e-5, volatility_slippage=0.0, impact_bps_per_10k=0.0)
    order = broker.submit(_order("c-p", "GLD", OrderSide.BUY, 100))
    # Monday: cap 1e-5 * 5,436,100 = 54.361 -> 54 whole shares at 186.8800048828125 * 1.0005
    broker.process(MON)
    first = broker.get_order(order.broker_id)
    assert first.status is OrderStatus.PARTIALLY_FILLED
    assert first.filled_qty == 54
    assert first in broker.open_orders()
    monday = 186.8800048828125 * 1.0005
    assert first.filled_avg_price == pytest.approx(monday, rel=1e-12)
    # Tuesday: cap 1e-5 * 4,866,100 = 48.661 -> 48 >= the 46 left; at 187.94000244140625 * 1.0005
    broker.process(TUE)
    done = broker.get_order(order.broker_id)
    tuesday = 187.94000244140625 * 1.0005
    assert done.status is OrderStatus.FILLED
    assert done.filled_qty == 100
    # average (54 * monday + 46 * tuesday) / 100
    assert done.filled_avg_price == pytest.approx((54 * monday + 46 * tuesday) / 100, rel=1e-12)
    assert done.commission == pytest.approx(0.001 * (54 * monday + 46 * tuesday), rel=1e-12)
    [position] = broker.positions()
    assert position.qty == 100
    assert position.avg_entry_price == pytest.approx(done.filled_avg_price, rel=1e-12)
    assert broker.account().cash == pytest.approx(
        100_000 - 1.001 * (54 * monday + 46 * tuesday), rel=1e-12
    )


def test_catching_up_plays_every_session(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for(max_volume_fraction=1e-5, volatility_slippage=0.0, impact_bps_per_10k=0.0)
    order = broker.submit(_order("c-p", "GLD", OrderSide.BUY, 100))
    broker.process(TUE)  # Monday and Tuesday in one call: 54 + 46
    done = broker.get_order(order.broker_id)
    assert done.status is OrderStatus.FILLED
    expected = (54 * 186.8800048828125 * 1.0005 + 46 * 187.94000244140625 * 1.0005) / 100
    assert done.filled_avg_price == pytest.approx(expected, rel=1e-12)


def test_btc_fills_on_saturday_spy_on_monday(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for(volatility_slippage=0.0)
    btc = broker.submit(_order("c-btc", "BTC-USD", OrderSide.BUY, 0.5))
    spy = broker.submit(_order("c-spy", "SPY", OrderSide.BUY, 10))
    filled = broker.process(SAT)
    assert [o.symbol for o in filled] == ["BTC-USD"]
    got = broker.get_order(btc.broker_id)
    # Saturday 2024-02-03 open 43,184.964844; $21,592 notional:
    # slippage 0.0015 (crypto) + 0.0001 * (21,592.482422 - 10,000) / 10,000 = 0.0016159248242
    slip = 0.0015 + 0.0001 * (0.5 * 43_184.964844 - 10_000) / 10_000
    assert slip == pytest.approx(0.0016159248242, rel=1e-9)
    assert got.status is OrderStatus.FILLED
    assert got.filled_avg_price == pytest.approx(43_184.964844 * (1 + slip), rel=1e-12)
    assert broker.get_order(spy.broker_id).status is OrderStatus.ACCEPTED
    broker.process(MON)
    got_spy = broker.get_order(spy.broker_id)
    assert got_spy.status is OrderStatus.FILLED
    assert got_spy.filled_at is not None and got_spy.filled_at.date() == MON
    assert got_spy.filled_avg_price == pytest.approx(493.70001220703125 * 1.0005, rel=1e-12)
    assert {p.symbol: p.qty for p in broker.positions()} == {"BTC-USD": 0.5, "SPY": 10}


def test_sell_reduces_position_and_adds_cash(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for(volatility_slippage=0.0)
    broker.submit(_order("c-buy", "GLD", OrderSide.BUY, 10))
    broker.process(MON)
    cash = broker.account().cash
    sell = broker.submit(_order("c-sell", "GLD", OrderSide.SELL, 4, as_of=MON))
    broker.process(TUE)
    got = broker.get_order(sell.broker_id)
    # Tuesday's open 187.94000244140625 * (1 - 0.0005); proceeds less 0.10% commission
    price = 187.94000244140625 * (1 - 0.0005)
    assert got.filled_avg_price == pytest.approx(price, rel=1e-12)
    assert broker.account().cash == pytest.approx(cash + 4 * price * 0.999, rel=1e-12)
    [position] = broker.positions()
    assert position.qty == 6
    assert position.avg_entry_price == pytest.approx(186.8800048828125 * 1.0005, rel=1e-12)


def test_duplicate_client_order_id(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for()
    first = broker.submit(_order("c-1", "SPY", OrderSide.BUY, 1))
    with pytest.raises(BrokerError) as caught:
        broker.submit(_order("c-1", "GLD", OrderSide.BUY, 1))
    assert caught.value.kind is BrokerErrorKind.DUPLICATE
    assert broker.open_orders() == [first]


def test_insufficient_cash(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for()
    # 300 SPY at Friday's close 494.3500061035156 = $148,305 > $100,000
    with pytest.raises(BrokerError) as caught:
        broker.submit(_order("c-big", "SPY", OrderSide.BUY, 300))
    assert caught.value.kind is BrokerErrorKind.INSUFFICIENT_BUYING_POWER
    # 150 SPY = $74,152.50 fits; then open buys hold it: 100 more ($49,435) do not
    broker.submit(_order("c-a", "SPY", OrderSide.BUY, 150))
    assert broker.account().buying_power == pytest.approx(100_000 - 150 * 494.3500061035156)
    with pytest.raises(BrokerError) as again:
        broker.submit(_order("c-b", "SPY", OrderSide.BUY, 100))
    assert again.value.kind is BrokerErrorKind.INSUFFICIENT_BUYING_POWER
    assert broker.get_order_by_client_id("c-big") is None


def test_unknown_symbol_and_bad_requests(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for()
    with pytest.raises(BrokerError) as caught:
        broker.submit(_order("c-x", "NOPE", OrderSide.BUY, 1))
    assert caught.value.kind is BrokerErrorKind.UNKNOWN_SYMBOL
    with pytest.raises(BrokerError) as zero:
        broker.submit(_order("c-0", "SPY", OrderSide.BUY, 0))
    assert zero.value.kind is BrokerErrorKind.REJECTED
    with pytest.raises(BrokerError) as short:  # nothing held: no short selling
        broker.submit(_order("c-s", "SPY", OrderSide.SELL, 1))
    assert short.value.kind is BrokerErrorKind.REJECTED
    assert broker.open_orders() == []


def test_state_survives_a_restart(
    broker_for: Callable[..., SimulatedBroker],
    db_url: str,
    make_settings: Callable[..., Any],
) -> None:
    broker = broker_for()
    filled = broker.submit(_order("c-f", "GLD", OrderSide.BUY, 10))
    broker.process(MON)
    pending = broker.submit(_order("c-o", "SPY", OrderSide.BUY, 5, as_of=MON))
    before = (broker.account(), broker.positions(), broker.open_orders())

    store = _open_store(db_url)
    try:
        again = SimulatedBroker(store, make_settings(database_url=db_url), initial_cash=1.0)
        assert (again.account(), again.positions(), again.open_orders()) == before
        assert again.get_order(filled.broker_id).status is OrderStatus.FILLED
        assert again.get_order_by_client_id("c-o") == pending
        again.process(TUE)
        assert again.get_order(pending.broker_id).status is OrderStatus.FILLED
    finally:
        store.close()


def test_cancel(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for()
    order = broker.submit(_order("c-c", "SPY", OrderSide.BUY, 10))
    broker.cancel_order(order.broker_id)
    assert broker.get_order(order.broker_id).status is OrderStatus.CANCELED
    assert broker.open_orders() == []
    assert broker.account().buying_power == 100_000
    broker.cancel_order(order.broker_id)  # again: nothing to do
    assert broker.process(MON) == []
    assert broker.positions() == []
    with pytest.raises(BrokerError) as missing:
        broker.cancel_order("no-such-id")
    assert missing.value.kind is BrokerErrorKind.NOT_FOUND
    with pytest.raises(BrokerError) as unknown:
        broker.get_order("no-such-id")
    assert unknown.value.kind is BrokerErrorKind.NOT_FOUND
    done = broker.submit(_order("c-d", "GLD", OrderSide.BUY, 1))
    broker.process(MON)
    with pytest.raises(BrokerError) as filled:
        broker.cancel_order(done.broker_id)
    assert filled.value.kind is BrokerErrorKind.REJECTED


def test_no_fill_until_the_next_bar_is_stored(
    db_url: str, make_settings: Callable[..., Any]
) -> None:
    store = _open_store(db_url)
    try:
        _store_bars(store, "SPY", Q1[0], FRI)  # nothing after Friday yet
        broker = SimulatedBroker(store, make_settings(database_url=db_url))
        order = broker.submit(_order("c-w", "SPY", OrderSide.BUY, 10))
        assert broker.process(MON) == []
        assert broker.get_order(order.broker_id).status is OrderStatus.ACCEPTED
        _store_bars(store, "SPY", MON, Q1[1])  # Monday's bar (and later ones) arrive
        broker.process(MON)
        got = broker.get_order(order.broker_id)
        assert got.status is OrderStatus.FILLED
        assert got.filled_at is not None and got.filled_at.date() == MON
    finally:
        store.close()


def test_no_look_ahead_in_the_volatility(broker_for: Callable[..., SimulatedBroker]) -> None:
    """A crash after the order date does not change the slippage of the order's fill."""
    broker = broker_for()
    order = broker.submit(_order("c-v", "SPY", OrderSide.BUY, 100))
    with broker.store.transaction() as tx:  # later bars: wild prices that must not count
        later = _bars("SPY")
        later = later[later["date"].dt.date > MON].assign(adj_close=1.0, close=1.0)
        broker.store.upsert_bars(tx, "SPY", later, "test")
    broker.process(MON)
    slip = 0.0005 + 0.10 * _spy_vol_to_friday() + 0.0001 * (49_370.001220703125 - 10_000) / 10_000
    got = broker.get_order(order.broker_id)
    assert got.filled_avg_price == pytest.approx(493.70001220703125 * (1 + slip), rel=1e-9)


def test_bar_without_volume_has_no_cap(broker_for: Callable[..., SimulatedBroker]) -> None:
    broker = broker_for(max_volume_fraction=1e-5)
    monday = _bars("GLD")
    monday = monday[monday["date"].dt.date == MON].assign(volume=math.nan)
    with broker.store.transaction() as tx:
        broker.store.upsert_bars(tx, "GLD", monday, "test")
    order = broker.submit(_order("c-n", "GLD", OrderSide.BUY, 100))
    broker.process(MON)  # the cap would be 54 shares with Monday's real volume
    assert broker.get_order(order.broker_id).filled_qty == 100
