"""Orders from targets (SPEC stage 8): lot rounding, client order ids, hand-worked plans,
every pre-trade check, and properties of random plans."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiller.domain import RiskLevel
from tiller.execution.broker import OrderRequest, OrderSide
from tiller.execution.orders import (
    COST_ALLOWANCE,
    LIVE_TRADING,
    MAX_CLIENT_ORDER_ID,
    OrderPlan,
    client_order_id,
    liquidation_orders,
    lot_size,
    plan_orders,
    round_qty,
)
from tiller.risk import PositionInfo, RiskInputs, RiskState, assess_risk
from tiller.risk.engine import RiskDecision
from tiller.settings import AssetSpec, ExecutionConfig, RiskConfig

DAY = date(2024, 3, 1)
NAV = 100_000.0
CONFIG = ExecutionConfig()  # the defaults, identical to config/execution.yaml
FRACTIONAL = ExecutionConfig(fractional=True)
ASSETS = {  # as in config/universe.yaml
    "GLD": AssetSpec(asset_class="commodity", max_weight=0.50, stop_loss=0.12),
    "SPY": AssetSpec(asset_class="equity", max_weight=0.40, stop_loss=0.12),
    "QQQ": AssetSpec(asset_class="equity", max_weight=0.30, stop_loss=0.12),
    "BTC-USD": AssetSpec(
        asset_class="crypto", max_weight=0.15, stop_loss=0.18, calendar="24/7", cost_class="crypto"
    ),
    "TLT": AssetSpec(asset_class="bond", max_weight=0.30, stop_loss=0.12),
}
PRICES = {"GLD": 185.50, "SPY": 502.37, "QQQ": 440.10, "BTC-USD": 43_210.55, "TLT": 92.40}


def _decision(**changes: Any) -> RiskDecision:
    """An L0 decision allowing everything, with ``changes`` applied."""
    base = RiskDecision(
        as_of=DAY,
        level=RiskLevel.L0,
        drawdown=0.0,
        peak_nav=NAV,
        distance_to_next=0.05,
        allowed_symbols=tuple(sorted(ASSETS)),
        blocked_buys=(),
        buy_allowed=True,
        orders_allowed=True,
        exposure_scale=1.0,
        min_confidence=0.0,
        forced_exits={},
        halve={},
        pair_caps=[],
        correlation_average=None,
        kill_switch=False,
        kill_reason=None,
        halted=False,
        reentry_phase=None,
        ramp_fraction=1.0,
        buy_block_reason=None,
        actions=[],
        decisions=[],
        state=RiskState(),
    )
    return replace(base, **changes)


def _plan(
    targets: dict[str, float],
    positions: dict[str, float] | None = None,
    *,
    cash: float | None = None,
    buying_power: float | None = None,
    decision: RiskDecision | None = None,
    prices: dict[str, float] | None = None,
    config: ExecutionConfig = CONFIG,
    paper_only: bool = True,
) -> OrderPlan:
    positions = positions or {}
    prices = PRICES if prices is None else prices
    held = sum(q * prices.get(s, 0.0) for s, q in positions.items())
    cash = NAV - held if cash is None else cash
    return plan_orders(
        DAY,
        targets,
        positions,
        prices,
        nav=NAV,
        cash=cash,
        buying_power=cash if buying_power is None else buying_power,
        decision=decision,
        assets=ASSETS,
        config=config,
        paper_only=paper_only,
    )


def _orders(plan: OrderPlan) -> list[tuple[str, OrderSide, float]]:
    return [(o.symbol, o.side, o.qty) for o in plan.orders]


# --- client order ids -----------------------------------------------------------------------


def test_client_order_id_is_deterministic_and_readable() -> None:
    cid = client_order_id(DAY, "BTC-USD", OrderSide.BUY, "tiller-rp")
    assert cid == "tiller-rp-20240301-BTC-USD-buy-1"
    assert cid == client_order_id(DAY, "BTC-USD", OrderSide.BUY, "tiller-rp", attempt=1)
    assert client_order_id(DAY, "SPY", OrderSide.SELL, "tiller-rp", 2) == (
        "tiller-rp-20240301-SPY-sell-2"
    )


def test_client_order_ids_differ_in_every_part() -> None:
    parts = [
        (DAY, "SPY", OrderSide.BUY, "tiller-rp", 1),
        (date(2024, 3, 4), "SPY", OrderSide.BUY, "tiller-rp", 1),
        (DAY, "QQQ", OrderSide.BUY, "tiller-rp", 1),
        (DAY, "SPY", OrderSide.SELL, "tiller-rp", 1),
        (DAY, "SPY", OrderSide.BUY, "other", 1),
        (DAY, "SPY", OrderSide.BUY, "tiller-rp", 2),
    ]
    ids = [client_order_id(*p) for p in parts]
    assert len(set(ids)) == len(ids)


def test_client_order_id_is_sanitised_and_bounded() -> None:
    # strategy lower-cased, odd characters -> "-"; symbol odd characters -> "_"
    assert client_order_id(DAY, "BRK.B", OrderSide.BUY, "My Strat!") == (
        "my-strat-20240301-BRK.B-buy-1"
    )
    assert client_order_id(DAY, "^VIX", OrderSide.BUY, "t") == "t-20240301-_VIX-buy-1"
    # 20-character tag + 15-character symbol: 20+1+8+1+15+1+4+1+3 = 54 > 48 -> hashed
    long_a = client_order_id(DAY, "ABCDEFGHIJKLMNO", OrderSide.SELL, "a" * 20, 123)
    long_b = client_order_id(DAY, "ABCDEFGHIJKLMNO", OrderSide.SELL, "a" * 20, 124)
    assert len(long_a) == MAX_CLIENT_ORDER_ID
    assert long_a != long_b
    assert long_a == client_order_id(DAY, "ABCDEFGHIJKLMNO", OrderSide.SELL, "a" * 20, 123)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        ((DAY, "SPY", OrderSide.BUY, "tiller-rp", 0), "attempt"),
        ((DAY, "SPY", OrderSide.BUY, "!!!", 1), "strategy"),
        ((DAY, "", OrderSide.BUY, "tiller-rp", 1), "symbol"),
    ],
)
def test_client_order_id_rejects_bad_input(args: tuple, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        client_order_id(*args)


@given(
    symbol=st.text(min_size=1, max_size=30),
    strategy=st.from_regex(r"[a-z0-9-]{0,25}[a-z0-9]", fullmatch=True),
    attempt=st.integers(1, 10**6),
    side=st.sampled_from(list(OrderSide)),
)
def test_any_client_order_id_is_short_and_plain(
    symbol: str, strategy: str, attempt: int, side: OrderSide
) -> None:
    cid = client_order_id(DAY, symbol, side, strategy, attempt)
    assert len(cid) <= MAX_CLIENT_ORDER_ID
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in cid)
    assert cid == client_order_id(DAY, symbol, side, strategy, attempt)


# --- lot rounding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "asset_class", "config", "expected"),
    [
        (161.72506738544473, "commodity", CONFIG, 161.0),  # 30,000 / 185.50: whole shares
        (-38.27, "equity", CONFIG, -38.0),  # towards zero, not down
        (0.9999, "equity", CONFIG, 0.0),
        (0.34713744675779407, "crypto", CONFIG, 0.3471),  # 15,000 / 43,210.55: 0.0001 BTC
        (0.3471, "crypto", CONFIG, 0.3471),  # 0.3471 / 0.0001 = 3470.9999999999995: kept
        (-0.00009, "crypto", CONFIG, 0.0),
        (161.72506738544473, "commodity", FRACTIONAL, 161.725),  # 0.0001-share lots
        (3.0, "bond", CONFIG, 3.0),
    ],
)
def test_round_qty_hand_worked(
    qty: float, asset_class: str, config: ExecutionConfig, expected: float
) -> None:
    assert round_qty(qty, asset_class, config) == expected


def test_round_qty_rejects_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        round_qty(math.nan, "equity", CONFIG)


@given(
    qty=st.floats(-1e6, 1e6, allow_nan=False),
    asset_class=st.sampled_from(["equity", "crypto"]),
    config=st.sampled_from([CONFIG, FRACTIONAL, ExecutionConfig(crypto_lot=0.001)]),
)
def test_round_qty_properties(qty: float, asset_class: str, config: ExecutionConfig) -> None:
    lot = lot_size(asset_class, config)
    rounded = round_qty(qty, asset_class, config)
    noise = (1e-9 + 1e-14 * abs(qty) / lot) * lot
    assert abs(rounded) <= abs(qty) + noise  # towards zero, up to float noise
    assert abs(qty) - abs(rounded) < lot + 1e-9  # less than one lot is dropped
    assert rounded == 0 or math.copysign(1, rounded) == math.copysign(1, qty)
    count = rounded / lot
    assert abs(count - round(count)) < 1e-6 + 1e-12 * abs(count)  # a lot multiple
    assert round_qty(rounded, asset_class, config) == rounded  # idempotent


# --- hand-worked plans -----------------------------------------------------------------------


def test_buys_from_cash_hand_worked() -> None:
    plan = _plan({"GLD": 0.30, "BTC-USD": 0.15, "SPY": 0.40, "CASH": 0.15})
    # GLD 30,000 / 185.50 = 161.73 -> 161 (29,865.50); SPY 40,000 / 502.37 = 79.62 -> 79
    # (39,687.23); BTC 15,000 / 43,210.55 = 0.347137 -> 0.3471 (14,998.38).
    # Buys go largest notional first: SPY, GLD, BTC.
    assert _orders(plan) == [
        ("SPY", OrderSide.BUY, 79.0),
        ("GLD", OrderSide.BUY, 161.0),
        ("BTC-USD", OrderSide.BUY, 0.3471),
    ]
    assert plan.rejected == []
    ids = [o.client_order_id for o in plan.orders]
    assert ids == [
        "tiller-rp-20240301-SPY-buy-1",
        "tiller-rp-20240301-GLD-buy-1",
        "tiller-rp-20240301-BTC-USD-buy-1",
    ]
    assert [o.time_in_force for o in plan.orders] == ["day", "day", "gtc"]
    assert all(o.as_of == DAY for o in plan.orders)
    # cost with the 0.5% allowance: (39,687.23 + 29,865.50 + 14,998.38) * 1.005 = 84,973.87
    assert plan.buy_cost == pytest.approx(84_973.87, abs=0.01)
    assert plan.budget == NAV
    assert "161.725067" in plan.notes["tiller-rp-20240301-GLD-buy-1"]


def test_the_plan_is_deterministic() -> None:
    targets = {"GLD": 0.30, "BTC-USD": 0.15, "SPY": 0.40}
    assert _plan(targets) == _plan(targets)


def test_fractional_etfs_trade_in_ten_thousandths() -> None:
    plan = _plan({"GLD": 0.30}, config=FRACTIONAL)
    assert _orders(plan) == [("GLD", OrderSide.BUY, 161.725)]  # 161.72506... -> 161.7250


def test_sells_come_first_and_fund_the_buys() -> None:
    # 100 SPY x 502.37 = 50,237 held, cash 49,763.  Target SPY 0 and GLD 50%.
    plan = _plan({"GLD": 0.50, "SPY": 0.0}, {"SPY": 100})
    # SELL 100 SPY: proceeds 50,237 x 0.995 = 49,985.82; budget 49,763 + 49,985.82 = 99,748.82
    # BUY GLD 50,000 / 185.50 = 269.54 -> 269: 269 x 185.50 x 1.005 = 50,149.00 <= budget
    assert _orders(plan) == [("SPY", OrderSide.SELL, 100.0), ("GLD", OrderSide.BUY, 269.0)]
    assert plan.sell_proceeds == pytest.approx(49_985.815, abs=1e-6)
    assert plan.budget == pytest.approx(99_748.815, abs=1e-6)
    assert plan.buy_cost == pytest.approx(50_148.9975, abs=1e-6)


def test_a_sell_never_goes_below_the_target() -> None:
    # 200 GLD held; target 30% = 161.73 shares: sell 38.27 -> 38 (keep 162, not 161)
    plan = _plan({"GLD": 0.30}, {"GLD": 200})
    assert _orders(plan) == [("GLD", OrderSide.SELL, 38.0)]


def test_an_unchanged_holding_makes_no_order() -> None:
    # 161 GLD at 185.50 = 29,865.50 = 29.8655% of NAV: the target is that weight
    plan = _plan({"GLD": 161 * 185.50 / NAV}, {"GLD": 161})
    assert plan.orders == [] and plan.rejected == []
    # a target a fraction of a share away is no order either (0.73 share -> 0)
    assert _plan({"GLD": 0.30}, {"GLD": 161}).orders == []


def test_a_missing_target_sells_the_whole_position_whatever_its_lot() -> None:
    plan = _plan({}, {"GLD": 10.5, "BTC-USD": 0.123456789})
    assert _orders(plan) == [
        ("BTC-USD", OrderSide.SELL, 0.123456789),
        ("GLD", OrderSide.SELL, 10.5),
    ]


# --- pre-trade checks ------------------------------------------------------------------------


def test_position_limit_cuts_a_buy() -> None:
    # SPY 45% asked: 45,000 / 502.37 = 89.58 -> 89; max 40%: 40,000 / 502.37 = 79.62 -> 79
    plan = _plan({"SPY": 0.45})
    assert _orders(plan) == [("SPY", OrderSide.BUY, 79.0)]
    (cut,) = plan.rejected
    assert (cut.symbol, cut.side, cut.qty) == ("SPY", OrderSide.BUY, 10.0)
    # 89 x 502.37 / 100,000 = 44.71%
    assert "position limit" in cut.reason and "44.71%" in cut.reason and "40.00%" in cut.reason
    assert "cut to 79" in cut.reason


def test_position_limit_rejects_a_buy_with_no_room_left() -> None:
    # 80 SPY held = 40,189.60 = 40.19% > 40% already: any buy is rejected
    plan = _plan({"SPY": 0.45}, {"SPY": 80})
    assert plan.orders == []
    (rej,) = plan.rejected
    assert rej.qty == 9.0 and "position limit" in rej.reason and "cut to" not in rej.reason


def test_cash_cuts_a_buy() -> None:
    # 10,000 cash: 10,000 / (185.50 x 1.005 = 186.4275) = 53.64 -> 53 GLD of the 161 wanted
    plan = _plan({"GLD": 0.30}, cash=10_000, buying_power=20_000)
    assert _orders(plan) == [("GLD", OrderSide.BUY, 53.0)]
    (cut,) = plan.rejected
    assert cut.qty == 108.0
    assert cut.reason.startswith("cash: ")
    assert "$30,014.83" in cut.reason  # 161 x 186.4275 = 30,014.8275
    assert "$10,000.00 left" in cut.reason and "cut to 53" in cut.reason


def test_buying_power_cuts_a_buy() -> None:
    # buying power 5,000 < cash 10,000: 5,000 / 186.4275 = 26.82 -> 26
    plan = _plan({"GLD": 0.30}, cash=10_000, buying_power=5_000)
    assert _orders(plan) == [("GLD", OrderSide.BUY, 26.0)]
    assert plan.rejected[0].reason.startswith("buying power: ")


def test_no_money_rejects_the_buy() -> None:
    plan = _plan({"GLD": 0.30}, cash=100, buying_power=100)  # under one share with costs
    assert plan.orders == []
    assert plan.rejected[0].qty == 161.0 and "exceeds the $100.00 left" in plan.rejected[0].reason


def test_kill_switch_rejects_everything() -> None:
    decision = _decision(
        kill_switch=True,
        kill_reason="daily loss 3.40% > 3.00%",
        orders_allowed=False,
        buy_allowed=False,
        forced_exits={"BTC-USD": "L2: close crypto"},
    )
    plan = _plan({"GLD": 0.30, "SPY": 0.0}, {"SPY": 10, "BTC-USD": 0.1}, decision=decision)
    assert plan.orders == []
    assert {(r.symbol, r.side) for r in plan.rejected} == {
        ("BTC-USD", OrderSide.SELL),
        ("SPY", OrderSide.SELL),
        ("GLD", OrderSide.BUY),
    }
    assert all("kill switch on (daily loss 3.40% > 3.00%)" in r.reason for r in plan.rejected)


def test_live_trading_is_refused() -> None:
    plan = _plan({"GLD": 0.30}, {"SPY": 10}, paper_only=False)
    assert plan.orders == []
    assert [r.reason for r in plan.rejected] == [LIVE_TRADING, LIVE_TRADING]
    assert LIVE_TRADING == "live trading is not allowed"


def test_sell_only_rejects_buys_and_keeps_sells() -> None:
    decision = _decision(
        level=RiskLevel.L2, buy_allowed=False, buy_block_reason="L2: sell-only (drawdown 8.50%)"
    )
    plan = _plan({"GLD": 0.30, "SPY": 0.0}, {"SPY": 10}, decision=decision)
    assert _orders(plan) == [("SPY", OrderSide.SELL, 10.0)]
    (rej,) = plan.rejected
    assert (rej.symbol, rej.qty) == ("GLD", 161.0)
    assert rej.reason == "risk: L2: sell-only (drawdown 8.50%)"


def test_buys_of_symbols_not_allowed_or_blocked_are_rejected() -> None:
    decision = _decision(
        level=RiskLevel.L1,
        allowed_symbols=("BTC-USD", "GLD", "SPY"),
        blocked_buys=("BTC-USD",),
    )
    plan = _plan({"GLD": 0.30, "QQQ": 0.10, "BTC-USD": 0.10}, decision=decision)
    assert _orders(plan) == [("GLD", OrderSide.BUY, 161.0)]
    reasons = {r.symbol: r.reason for r in plan.rejected}
    assert reasons["QQQ"] == "risk: QQQ may not be held at L1"
    assert "no new crypto position" in reasons["BTC-USD"]


def test_forced_exits_sell_everything_whatever_the_target() -> None:
    decision = _decision(forced_exits={"BTC-USD": "BTC-USD: exit stop, 19.0% below entry"})
    plan = _plan({"BTC-USD": 0.15, "GLD": 0.30}, {"BTC-USD": 0.2}, decision=decision)
    assert _orders(plan) == [("BTC-USD", OrderSide.SELL, 0.2), ("GLD", OrderSide.BUY, 161.0)]
    assert plan.notes[plan.orders[0].client_order_id].startswith("forced exit: BTC-USD: exit")


def test_halve_sells_at_least_half_whatever_the_target() -> None:
    decision = _decision(halve={"GLD": "GLD: 12.5% below entry"})
    # 161 held, target unchanged; keep round_qty(161 / 2 = 80.5) = 80, sell 81
    plan = _plan({"GLD": 161 * 185.50 / NAV}, {"GLD": 161}, decision=decision)
    assert _orders(plan) == [("GLD", OrderSide.SELL, 81.0)]
    assert "halve" in plan.notes[plan.orders[0].client_order_id]
    # a target below half wins: 10% = 53.9 shares -> sell 161 - 53.9 = 107.1 -> 107
    plan = _plan({"GLD": 0.10}, {"GLD": 161}, decision=decision)
    assert _orders(plan) == [("GLD", OrderSide.SELL, 107.0)]


def test_missing_price_rejects_sizing_but_not_a_full_close() -> None:
    prices = {**PRICES, "QQQ": math.nan}
    del prices["SPY"]
    plan = _plan({"QQQ": 0.10, "SPY": 0.0, "GLD": 0.30}, {"SPY": 10}, cash=50_000, prices=prices)
    assert _orders(plan) == [("SPY", OrderSide.SELL, 10.0), ("GLD", OrderSide.BUY, 161.0)]
    (rej,) = plan.rejected
    assert rej.symbol == "QQQ" and rej.side is None
    assert "no usable price for QQQ (got nan)" in rej.reason
    assert plan.sell_proceeds == 0.0  # an unpriced sell funds nothing


def test_a_new_position_under_one_lot_is_recorded() -> None:
    # BTC 0.002% of 100,000 = 2 USD / 43,210.55 = 0.0000463 BTC < 0.0001
    plan = _plan({"BTC-USD": 0.00002})
    assert plan.orders == []
    (rej,) = plan.rejected
    assert rej.reason.startswith("rounds to zero at lot size")
    assert rej.qty == pytest.approx(4.6285e-05, rel=1e-4)


def test_an_asset_outside_the_universe_table_is_rejected() -> None:
    plan = _plan({"XLE": 0.05}, prices={**PRICES, "XLE": 90.0})
    assert plan.orders == []
    assert "not in the universe table" in plan.rejected[0].reason


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"positions": {"SPY": -1.0}}, "no shorts"),
        ({"targets": {"SPY": -0.1}}, "target weight"),
        ({"nav": 0.0}, "nav"),
        ({"cash": math.inf}, "cash"),
    ],
)
def test_bad_inputs_raise(changes: dict[str, object], phrase: str) -> None:
    args: dict[str, object] = {
        "targets": {"SPY": 0.1},
        "positions": {},
        "nav": NAV,
        "cash": NAV,
    }
    args.update(changes)
    with pytest.raises(ValueError, match=phrase):
        plan_orders(
            DAY,
            args["targets"],  # type: ignore[arg-type]
            args["positions"],  # type: ignore[arg-type]
            PRICES,
            nav=args["nav"],  # type: ignore[arg-type]
            cash=args["cash"],  # type: ignore[arg-type]
            buying_power=NAV,
            decision=None,
            assets=ASSETS,
            config=CONFIG,
        )


def test_with_a_real_l2_decision() -> None:
    """End to end with :func:`assess_risk`: 8.5% drawdown -> L2, BTC closed, sell-only."""
    positions = {
        "BTC-USD": PositionInfo(qty=0.2, entry_price=40_000, price=43_210.55, weight=0.09),
        "GLD": PositionInfo(qty=100, entry_price=180, price=185.50, weight=0.2),
    }
    classes = {s: a.asset_class for s, a in ASSETS.items()}
    inputs = RiskInputs(as_of=DAY, nav=91_500, positions=positions, asset_classes=classes)
    decision = assess_risk(inputs, RiskState(peak_nav=NAV), RiskConfig())
    assert decision.level == RiskLevel.L2 and not decision.buy_allowed
    plan = plan_orders(
        DAY,
        {"BTC-USD": 0.09, "GLD": 0.30},
        {"BTC-USD": 0.2, "GLD": 100},
        PRICES,
        nav=91_500,
        cash=91_500 - 0.2 * 43_210.55 - 100 * 185.50,
        buying_power=50_000,
        decision=decision,
        assets=ASSETS,
        config=CONFIG,
    )
    assert _orders(plan) == [("BTC-USD", OrderSide.SELL, 0.2)]
    assert [(r.symbol, r.side) for r in plan.rejected] == [("GLD", OrderSide.BUY)]


# --- liquidation -----------------------------------------------------------------------------


def test_liquidation_sells_everything_with_its_own_ids() -> None:
    orders = liquidation_orders(
        DAY,
        {"SPY": 79, "BTC-USD": 0.3471, "GLD": 0.0},
        "tiller-rp",
        asset_classes={"BTC-USD": "crypto"},
    )
    assert orders == [
        OrderRequest(
            "tiller-rp-stop-20240301-BTC-USD-sell-1", "BTC-USD", OrderSide.SELL, 0.3471, DAY, "gtc"
        ),
        OrderRequest("tiller-rp-stop-20240301-SPY-sell-1", "SPY", OrderSide.SELL, 79.0, DAY, "day"),
    ]
    rebalance_ids = {client_order_id(DAY, s, OrderSide.SELL, "tiller-rp") for s in ("SPY",)}
    assert not rebalance_ids & {o.client_order_id for o in orders}
    assert liquidation_orders(DAY, {}, "tiller-rp") == []


# --- properties of random plans ------------------------------------------------------------

SYMBOLS = sorted(ASSETS)


@st.composite
def _scenarios(draw: st.DrawFn) -> dict[str, object]:
    prices = {s: draw(st.floats(1.0, 100_000.0)) for s in SYMBOLS}
    positions: dict[str, float] = {}
    for s in SYMBOLS:
        if draw(st.booleans()):
            lot = lot_size(ASSETS[s].asset_class, CONFIG)
            positions[s] = draw(st.integers(1, 5_000)) * lot
    cash = draw(st.floats(0.0, 500_000.0))
    nav = cash + sum(q * prices[s] for s, q in positions.items())
    if nav <= 0:
        nav, cash = 1_000.0, 1_000.0
    targets = {s: draw(st.floats(0.0, 0.6)) for s in SYMBOLS if draw(st.booleans())}
    buying_power = draw(st.floats(0.0, 2 * cash + 1))
    held = sorted(positions)
    kind = draw(st.sampled_from(["none", "normal", "sell_only", "kill"]))
    decision: RiskDecision | None = None
    if kind != "none":
        forced = {s: f"{s}: exit" for s in held if draw(st.booleans())}
        halve = {s: f"{s}: halve" for s in held if s not in forced and draw(st.booleans())}
        decision = _decision(
            forced_exits=forced,
            halve=halve,
            buy_allowed=kind == "normal",
            buy_block_reason=None if kind == "normal" else "sell-only",
            kill_switch=kind == "kill",
            kill_reason="test" if kind == "kill" else None,
            orders_allowed=kind != "kill",
        )
    return {
        "prices": prices,
        "positions": positions,
        "cash": cash,
        "nav": nav,
        "targets": targets,
        "buying_power": buying_power,
        "decision": decision,
        "config": draw(st.sampled_from([CONFIG, FRACTIONAL])),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=_scenarios())
def test_random_plans_keep_every_limit(scenario: dict[str, object]) -> None:
    prices: dict[str, float] = scenario["prices"]  # type: ignore[assignment]
    positions: dict[str, float] = scenario["positions"]  # type: ignore[assignment]
    cash: float = scenario["cash"]  # type: ignore[assignment]
    nav: float = scenario["nav"]  # type: ignore[assignment]
    buying_power: float = scenario["buying_power"]  # type: ignore[assignment]
    decision: RiskDecision | None = scenario["decision"]  # type: ignore[assignment]
    config: ExecutionConfig = scenario["config"]  # type: ignore[assignment]
    plan = plan_orders(
        DAY,
        scenario["targets"],  # type: ignore[arg-type]
        positions,
        prices,
        nav=nav,
        cash=cash,
        buying_power=buying_power,
        decision=decision,
        assets=ASSETS,
        config=config,
    )
    if decision is not None and decision.kill_switch:
        assert plan.orders == []
        return
    ids = [o.client_order_id for o in plan.orders]
    assert len(set(ids)) == len(ids)
    sides = [o.side for o in plan.orders]
    assert sides == sorted(sides, key=lambda s: s != OrderSide.SELL)  # sells first
    symbols_per_side = {(o.symbol, o.side) for o in plan.orders}
    assert len(symbols_per_side) == len(plan.orders)
    if decision is not None:
        for symbol in decision.forced_exits:
            assert (symbol, OrderSide.SELL, positions[symbol]) in _orders(plan)
        if not decision.buy_allowed:
            assert OrderSide.BUY not in sides

    # immediate execution at the given prices, costs at the full allowance
    after = dict(positions)
    new_cash = cash
    for order in plan.orders:
        assert order.qty > 0
        notional = order.qty * prices[order.symbol]
        if order.side == OrderSide.SELL:
            assert order.qty <= positions[order.symbol] + 1e-12  # never short
            new_cash += notional * (1 - COST_ALLOWANCE)
            after[order.symbol] -= order.qty
        else:
            lot = lot_size(ASSETS[order.symbol].asset_class, config)
            count = order.qty / lot
            assert abs(count - round(count)) < 1e-6 + 1e-12 * count  # a lot multiple
            new_cash -= notional * (1 + COST_ALLOWANCE)
            after[order.symbol] = after.get(order.symbol, 0.0) + order.qty
            weight = after[order.symbol] * prices[order.symbol] / nav
            assert weight <= ASSETS[order.symbol].max_weight + 1e-9
    buys = sum(
        o.qty * prices[o.symbol] * (1 + COST_ALLOWANCE) for o in plan.orders if o.side == "buy"
    )
    assert new_cash >= -1e-6  # no leverage
    assert buys <= buying_power + plan.sell_proceeds + 1e-6
