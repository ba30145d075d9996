"""Portfolio accounting (SPEC stage 8): average cost, cash and fees in whole cents, NAV
snapshots and their invariants, reconciliation with the broker."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiller.execution import accounting
from tiller.execution.accounting import (
    Discrepancy,
    Fill,
    Portfolio,
    PositionState,
    apply_fill,
    apply_fills,
    check_invariants,
    reconcile,
    snapshot,
    update_peak,
)
from tiller.execution.broker import BrokerPosition, OrderSide

DAY = date(2024, 3, 1)
AT = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


def _to_cent(amount: float) -> float:
    """USD to the cent, half away from zero (as booked)."""
    return float(Decimal(repr(amount)).quantize(Decimal("0.01"), ROUND_HALF_UP))


def _fill(symbol: str, side: str, qty: float, price: float, commission: float = 0.0) -> Fill:
    return Fill(f"t-{symbol}-{side}", symbol, OrderSide(side), qty, price, commission, AT)


def test_buy_then_partial_sell_hand_worked() -> None:
    book = Portfolio.initial(10_000)
    book = apply_fill(book, _fill("SPY", "buy", 10, 100.0, 1.0))
    # cash 10,000 - 10 x 100 - 1 = 8,999; basis 1,000 (avg 100; the commission is a fee)
    assert book.cash == 8_999.0 and book.fees == 1.0 and book.realized_pnl == 0.0
    assert book.positions["SPY"] == PositionState("SPY", 10.0, 1_000.0, opened=DAY)
    assert book.positions["SPY"].avg_cost == 100.0
    book = apply_fill(book, _fill("SPY", "buy", 10, 110.0, 1.1))
    # cash 8,999 - 1,100 - 1.10 = 7,897.90; basis 2,100 over 20 -> avg 105
    assert book.cash == 7_897.9 and book.positions["SPY"].avg_cost == 105.0
    book = apply_fill(book, _fill("SPY", "sell", 5, 120.0, 0.6))
    # cash 7,897.90 + 600 - 0.60 = 8,497.30; released 2,100 x 5 / 20 = 525;
    # realized 600 - 525 = 75 = (120 - 105) x 5; fees 1 + 1.10 + 0.60 = 2.70
    assert book.cash == 8_497.3
    assert book.realized_pnl == 75.0
    assert book.fees == 2.7
    assert book.positions["SPY"] == PositionState("SPY", 15.0, 1_575.0, opened=DAY)
    assert book.quantities() == {"SPY": 15.0}


def test_round_trip_realized_equals_price_change_times_qty() -> None:
    book = Portfolio.initial(100_000)
    # 0.3471 BTC at 43,210.55 = 14,998.381905 -> booked 14,998.38; commission 15.00
    book = apply_fill(book, _fill("BTC-USD", "buy", 0.3471, 43_210.55, 15.0))
    # sold at 45,000.00: 0.3471 x 45,000 = 15,619.50; commission 15.62
    book = apply_fill(book, _fill("BTC-USD", "sell", 0.3471, 45_000.0, 15.62))
    assert book.positions == {}
    # realized 15,619.50 - 14,998.38 = 621.12 ~ (45,000 - 43,210.55) x 0.3471 = 621.1181
    assert book.realized_pnl == 621.12
    assert book.fees == 30.62
    # net: realized - fees = (sell - buy) x qty - commissions, to the cent
    assert book.realized_pnl - book.fees == pytest.approx(
        (45_000.0 - 43_210.55) * 0.3471 - 15.0 - 15.62, abs=0.01
    )
    assert book.cash == pytest.approx(100_000 + 621.12 - 30.62, abs=1e-9)


@pytest.mark.parametrize(
    ("fills", "sell"),
    [
        ([], ("SPY", "sell", 1, 100.0)),
        ([("SPY", "buy", 10, 100.0)], ("SPY", "sell", 10.5, 100.0)),
        ([("BTC-USD", "buy", 0.3471, 40_000.0)], ("BTC-USD", "sell", 0.3472, 40_000.0)),
    ],
)
def test_selling_more_than_held_raises(
    fills: list[tuple[str, str, float, float]], sell: tuple[str, str, float, float]
) -> None:
    book = apply_fills(Portfolio.initial(100_000), [_fill(*f) for f in fills])
    with pytest.raises(ValueError, match="no short positions"):
        apply_fill(book, _fill(*sell))


def test_a_sell_within_float_noise_closes_the_position() -> None:
    book = Portfolio.initial(100_000)
    book = apply_fills(book, [_fill("BTC-USD", "buy", q, 40_000.0) for q in (0.1, 0.2)])
    assert book.positions["BTC-USD"].qty == 0.3  # 0.1 + 0.2 = 0.30000000000000004, cleaned
    book = apply_fill(book, _fill("BTC-USD", "sell", 0.3, 40_000.0))
    assert book.positions == {} and book.realized_pnl == 0.0


@pytest.mark.parametrize(
    ("qty", "price", "commission"), [(0, 1.0, 0.0), (1, 0.0, 0.0), (1, 1.0, -0.01)]
)
def test_a_fill_must_make_sense(qty: float, price: float, commission: float) -> None:
    with pytest.raises(ValueError, match="fill t-SPY-buy"):
        _fill("SPY", "buy", qty, price, commission)


def test_snapshot_hand_worked() -> None:
    book = apply_fills(
        Portfolio.initial(100_000),
        [
            _fill("GLD", "buy", 161, 185.50, 29.87),  # 29,865.50 + 29.87
            _fill("BTC-USD", "buy", 0.3471, 43_210.55, 15.00),  # 14,998.38 + 15.00
        ],
    )
    # cash 100,000 - 29,865.50 - 29.87 - 14,998.38 - 15.00 = 55,091.25
    assert book.cash == 55_091.25
    snap = snapshot(book, {"GLD": 190.00, "BTC-USD": 40_000.00}, DAY)
    # GLD 161 x 190 = 30,590.00 (unrealized +724.50); BTC 0.3471 x 40,000 = 13,884.00
    # (unrealized 13,884.00 - 14,998.38 = -1,114.38)
    assert snap.positions["GLD"].value == 30_590.0
    assert snap.positions["GLD"].unrealized == 724.5
    assert snap.positions["BTC-USD"].value == 13_884.0
    assert snap.positions["BTC-USD"].unrealized == -1_114.38
    assert snap.positions_value == 44_474.0
    # NAV 55,091.25 + 44,474.00 = 99,565.25 = 100,000 + 0 + (724.50 - 1,114.38) - 44.87
    assert snap.nav == 99_565.25
    assert snap.unrealized_pnl == -389.88
    assert snap.fees == 44.87
    assert snap.peak_nav == 100_000.0
    assert snap.drawdown == pytest.approx(1 - 99_565.25 / 100_000)  # 0.43%
    check_invariants(snap, 100_000)
    assert snap.to_dict()["positions"]["GLD"]["qty"] == 161


def test_peak_follows_a_new_high() -> None:
    book = apply_fill(Portfolio.initial(1_000), _fill("SPY", "buy", 2, 400.0))
    snap = snapshot(book, {"SPY": 500.0}, DAY)  # 200 + 1,000 = 1,200 > 1,000
    assert (snap.nav, snap.peak_nav, snap.drawdown) == (1_200.0, 1_200.0, 0.0)
    book = update_peak(book, snap)
    assert book.peak_nav == 1_200.0
    later = snapshot(book, {"SPY": 450.0}, DAY)  # 200 + 900 = 1,100: 1 - 1,100 / 1,200
    assert later.peak_nav == 1_200.0 and later.drawdown == pytest.approx(1 / 12)


def test_snapshot_needs_a_price_for_every_holding() -> None:
    book = apply_fill(Portfolio.initial(1_000), _fill("SPY", "buy", 1, 400.0))
    with pytest.raises(ValueError, match="no usable price for held SPY"):
        snapshot(book, {"GLD": 1.0}, DAY)


def test_check_invariants_reports_the_numbers() -> None:
    book = apply_fill(Portfolio.initial(1_000), _fill("SPY", "buy", 1, 400.0, 1.0))
    snap = snapshot(book, {"SPY": 410.0}, DAY)
    check_invariants(snap, 1_000)
    with pytest.raises(ValueError, match=r"\$599.00 \+ positions \$410.00 = \$1,009.00"):
        check_invariants(replace(snap, nav=1_010.0), 1_000)
    # 1,000 + 0 + 10 - 1 = 1,009 = NAV; with 990 of capital it is off by 10
    with pytest.raises(ValueError, match=r"off by \$10.00"):
        check_invariants(snap, 990)
    with pytest.raises(ValueError, match="unrealized_pnl"):
        check_invariants(replace(snap, unrealized_pnl=0.0), 1_000)
    with pytest.raises(ValueError, match="positions_value"):
        check_invariants(replace(snap, positions_value=0.0), 1_000)


def test_position_from_a_broker_average() -> None:
    pos = PositionState.from_avg_cost("BTC-USD", 0.3471, 43_210.55)
    assert pos.cost_basis == 14_998.38
    assert pos.avg_cost == pytest.approx(43_210.55, abs=0.01)


def test_reconcile() -> None:
    broker = [
        BrokerPosition("SPY", 79.0, 500.0),
        BrokerPosition("GLD", 160.0, 185.0),
        BrokerPosition("TLT", 5.0, 90.0),
    ]
    local = {"SPY": 79.0, "GLD": 161.0, "BTC-USD": 0.3471}
    assert reconcile(local, broker) == [
        Discrepancy("BTC-USD", 0.3471, 0.0),
        Discrepancy("GLD", 161.0, 160.0),
        Discrepancy("TLT", 0.0, 5.0),
    ]
    assert reconcile(local, broker)[1].difference == -1.0
    assert reconcile({"SPY": 79.0}, [BrokerPosition("SPY", 79.0 + 1e-12, 500.0)]) == []
    assert reconcile({}, []) == []


# --- properties ------------------------------------------------------------------------------

SYMBOLS = ["GLD", "SPY", "BTC-USD"]


@st.composite
def _histories(draw: st.DrawFn) -> tuple[float, list[Fill], dict[str, float]]:
    """A start capital, a valid fill sequence (sells of at most what is held), end prices."""
    capital = draw(st.floats(1_000, 10_000_000))
    held: dict[str, float] = {}
    fills: list[Fill] = []
    for i in range(draw(st.integers(0, 30))):
        symbol = draw(st.sampled_from(SYMBOLS))
        price = draw(st.floats(0.01, 100_000))
        commission = draw(st.floats(0, 50))
        if held.get(symbol, 0) > 0 and draw(st.booleans()):
            fraction = draw(st.sampled_from([0.25, 0.5, 1.0]) | st.floats(0.001, 1.0))
            qty = held[symbol] if fraction == 1.0 else round(held[symbol] * fraction, 6)
            if qty <= 0:
                continue
            side = OrderSide.SELL
            held[symbol] = round(held[symbol] - qty, 10)
        else:
            qty = draw(st.integers(1, 10_000)) * draw(st.sampled_from([1.0, 0.0001, 0.001]))
            side = OrderSide.BUY
            held[symbol] = round(held.get(symbol, 0) + qty, 10)
        fills.append(Fill(f"f{i}", symbol, side, qty, price, commission, AT))
    prices = {s: draw(st.floats(0.01, 100_000)) for s in SYMBOLS}
    return capital, fills, prices


@settings(max_examples=300, deadline=None)
@given(history=_histories())
def test_invariants_hold_to_the_cent_after_any_history(
    history: tuple[float, list[Fill], dict[str, float]],
) -> None:
    capital, fills, prices = history
    book = Portfolio.initial(capital)
    for fill in fills:
        book = apply_fill(book, fill)
        check_invariants(snapshot(book, prices, DAY), capital)
    assert all(p.qty > 0 for p in book.positions.values())
    # cash = capital - bought + sold - commissions, each notional booked to the cent
    flows = sum(
        (-1 if f.side == OrderSide.BUY else 1) * _to_cent(f.qty * f.price) - _to_cent(f.commission)
        for f in fills
    )
    assert book.cash == pytest.approx(_to_cent(capital) + flows, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    qty=st.integers(1, 100_000).map(lambda n: n * 0.0001),
    buy=st.floats(0.01, 100_000),
    sell=st.floats(0.01, 100_000),
    fees=st.tuples(st.floats(0, 100), st.floats(0, 100)),
)
def test_round_trip_realized_is_price_change_times_qty(
    qty: float, buy: float, sell: float, fees: tuple[float, float]
) -> None:
    book = Portfolio.initial(10_000_000)
    book = apply_fill(book, _fill("SPY", "buy", qty, buy, fees[0]))
    book = apply_fill(book, _fill("SPY", "sell", qty, sell, fees[1]))
    assert book.positions == {}
    # each of two notionals and two commissions is booked to the cent: <= 2 cents apart
    net = (sell - buy) * qty - fees[0] - fees[1]
    assert book.realized_pnl - book.fees == pytest.approx(net, abs=0.02 + 1e-9)
    assert book.cash == pytest.approx(10_000_000 + book.realized_pnl - book.fees, abs=1e-6)


@given(
    qty=st.integers(1, 10_000),
    extra=st.floats(1e-6, 100),
)
def test_any_oversell_raises(qty: int, extra: float) -> None:
    book = apply_fill(Portfolio.initial(10_000_000), _fill("SPY", "buy", qty, 10.0))
    with pytest.raises(ValueError, match="no short positions"):
        apply_fill(book, _fill("SPY", "sell", qty + extra, 10.0))


@given(
    st.one_of(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
        # half cents and their neighbours, where the fast path must defer to Decimal
        st.integers(min_value=-(10**11), max_value=10**11).map(lambda c: (c + 0.5) / 100),
        st.integers(min_value=-(10**9), max_value=10**9).map(
            lambda c: math.nextafter((c + 0.5) / 100, math.inf)
        ),
    )
)
def test_cents_fast_path_equals_the_decimal_rounding(amount: float) -> None:
    # 0.005 -> 1 cent and -0.005 -> -1 (half away from zero, on the shortest decimal form);
    # the fast path (amount * 100 rounded) may only answer where it cannot differ.
    assert accounting._cents(amount) == accounting._exact_cents(amount)


def test_cents_hand_examples() -> None:
    assert accounting._cents(0.005) == 1  # "0.005" x 100 = 0.5 -> up
    assert accounting._cents(-0.005) == -1
    assert accounting._cents(14_998.381905) == 1_499_838  # 1,499,838.1905 -> down
    assert accounting._cents(1.234999999) == 123  # 123.4999999 -> down, via Decimal
