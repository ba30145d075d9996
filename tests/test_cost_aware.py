"""Cost-aware trading: no-trade bands, trend hysteresis and volatility targeting (the same
functions in the flow's optimize stage and the backtest)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_strategy_options import _inputs
from tiller.portfolio.optimize import CASH, apply_bands, optimize_weights, volatility_scale
from tiller.risk.window import ReturnWindow
from tiller.strategy.signals import BUY, HOLD, SELL, signal_panel, signals_at

NAV = 100_000.0


def optimize_config(make_settings: Any, **options: Any) -> Any:
    base = {
        "min_weight_change": 0.0,
        "min_trade_value": 0,
        "max_turnover": 4.0,
        "max_trades": 100,
        "cash_buffer": 0.05,
        "vol_target": None,  # each test sets its own
    }
    return make_settings(optimize={**base, **options}).optimize


# ------------------------------------------------------------------------------ bands
def test_band_hand_worked(make_settings: Any) -> None:
    config = optimize_config(make_settings, band_absolute=0.02)
    target = {"A": 0.25, "B": 0.25, "C": 0.0}
    held = {"A": 0.24, "B": 0.20, "C": 0.05}
    # A: |0.25 - 0.24| = 0.01 <= 0.02 -> keep 0.24; B: |0.25 - 0.20| = 0.05 > 0.02 ->
    # trade to 0.25; C: an exit (target 0) is never banded
    assert apply_bands(target, held, config) == {"A": 0.24, "B": 0.25, "C": 0.0}
    edge = optimize_config(make_settings, band_absolute=0.02, band_trade_to="edge")
    # B to the nearer edge: 0.25 - 0.02 = 0.23
    assert apply_bands(target, held, edge) == pytest.approx({"A": 0.24, "B": 0.23, "C": 0.0})
    relative = optimize_config(make_settings, band_relative=0.1)
    # band = 0.1 x 0.25 = 0.025: A (0.01 off) kept, B (0.05 off) traded
    assert apply_bands(target, held, relative) == {"A": 0.24, "B": 0.25, "C": 0.0}
    off = optimize_config(make_settings)
    assert apply_bands(target, held, off) == target


def _returns(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vols = rng.uniform(0.005, 0.03, n)
    return pd.DataFrame(rng.normal(0, 1, (120, n)) * vols, columns=[f"S{i}" for i in range(n)])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 6),
    band=st.floats(0.0, 0.1),
    relative=st.floats(0.0, 0.5),
    drift=st.lists(st.floats(0.0, 0.3), min_size=6, max_size=6),
    edge=st.booleans(),
)
def test_bands_never_add_turnover_and_keep_caps_and_cash(
    make_settings: Any,
    seed: int,
    n: int,
    band: float,
    relative: float,
    drift: list[float],
    edge: bool,
) -> None:
    returns = _returns(seed, n)
    caps = {c: 0.4 for c in returns.columns}
    raw_held = np.array(drift[:n])
    held = dict(zip(returns.columns, raw_held / max(1.0, raw_held.sum() / 0.9), strict=True))
    plain = optimize_config(make_settings)
    banded = optimize_config(
        make_settings,
        band_absolute=band,
        band_relative=relative,
        band_trade_to="edge" if edge else "target",
    )
    without = optimize_weights(returns, held, NAV, caps, plain)
    with_bands = optimize_weights(returns, held, NAV, caps, banded)
    assert with_bands.turnover <= without.turnover + 1e-12
    weights = {s: w for s, w in with_bands.weights.items() if s != CASH}
    for symbol, w in weights.items():  # a cap holds unless the holding was already above
        assert w <= max(caps[symbol], held.get(symbol, 0.0)) + 1e-9
        assert w >= -1e-12
    invested = sum(weights.values())
    assert invested <= max(1 - banded.cash_buffer, sum(held.values())) + 1e-9


# ------------------------------------------------------------------------- hysteresis
def test_trend_hysteresis_holds_inside_the_gap(make_settings: Any) -> None:
    config = make_settings(
        strategy={
            "signals": {
                "rule": "trend",
                "trend_window": 200,
                "trend_entry_band": 0.02,
                "trend_exit_band": 0.02,
            },
        }
    ).strategy.signals
    # average 100 on every day; the price wanders 103 (above 102: BUY), 101, 99, 101.5
    # (inside 98..102: HOLD), 97 (at or below 98: SELL), 99 (HOLD), 103 (BUY)
    prices = [103, 101, 99, 101.5, 97, 99, 103]
    panel = signal_panel(
        _inputs([[p, np.nan] for p in prices], [[100, np.nan]] * len(prices)), config, 252
    )
    assert panel.kind[:, 0].tolist() == [BUY, HOLD, HOLD, HOLD, SELL, HOLD, BUY]
    # what the selection does with it (the real selection rule and an L0 decision that
    # allows everything): held through the HOLDs, sold at the SELL, not bought back on the
    # next HOLD, bought at the BUY: three trades where the plain rule would trade on
    # every crossing of the average
    from tests.test_orders import _decision
    from tiller.portfolio.selection import investable

    decision = _decision(allowed_symbols=("A",))
    held: list[str] = []
    trades = 0
    for t in range(len(prices)):
        chosen = investable(signals_at(panel, t, config), decision, held)
        if chosen != held:
            trades += 1
            held = chosen
    assert trades == 3  # buy day 0, sell day 4, buy day 6


def test_without_bands_the_trend_rule_is_buy_above_sell_otherwise(make_settings: Any) -> None:
    config = make_settings(strategy={"signals": {"rule": "trend"}}).strategy.signals
    prices = [101, 99, 100.5, 100]
    panel = signal_panel(
        _inputs([[p, np.nan] for p in prices], [[100, np.nan]] * len(prices)), config, 252
    )
    assert panel.kind[:, 0].tolist() == [BUY, SELL, BUY, SELL]


# --------------------------------------------------------------- volatility targeting
def test_volatility_scale_hand_worked(make_settings: Any) -> None:
    from tiller.portfolio.optimize import _window

    # one asset with daily sd 1% -> annualised sigma = 0.01 x sqrt(252) = 0.1587
    rng = np.random.default_rng(0)
    values = rng.normal(0, 1, 250)
    values = (values - values.mean()) / values.std(ddof=1) * 0.01
    window = _window(ReturnWindow(values[:, None], ("A",)), 252)
    config = optimize_config(make_settings, vol_target=0.08, vol_target_band=0.05)
    sigma = 0.01 * np.sqrt(252)
    # scale = 0.08 / 0.1587 = 0.504; investable 0.95 x 0.504 = 0.479
    assert volatility_scale({"A": 1.0}, window, {}, config) == pytest.approx(0.08 / sigma)
    # currently 0.50 invested: |0.479 - 0.50| <= 0.05 -> keep 0.50 -> scale 0.50 / 0.95
    kept = volatility_scale({"A": 1.0}, window, {"A": 0.50}, config)
    assert kept == pytest.approx(0.50 / 0.95)
    off = optimize_config(make_settings)
    assert volatility_scale({"A": 1.0}, window, {}, off) == 1.0
    # the target follows: 95% x 0.504 of NAV in A
    result = optimize_weights(pd.DataFrame({"A": values}), {}, NAV, {"A": 1.0}, config)
    assert result.weights["A"] == pytest.approx(0.95 * 0.08 / sigma, rel=1e-9)


# ------------------------------------------------------------- minimum holding period
def test_holding_locks_count_calendar_days() -> None:
    from datetime import date

    from tiller.pipeline.decide import holding_locks

    opened = {"A": date(2024, 3, 1), "B": date(2024, 2, 1), "C": None}
    # A: 2024-03-20 - 2024-03-01 = 19 days < 20: locked; B: 48 days: free; C: unknown: free
    assert holding_locks(date(2024, 3, 20), opened, 20) == {"A"}
    assert holding_locks(date(2024, 3, 21), opened, 20) == frozenset()  # 20 days: free
    assert holding_locks(date(2024, 3, 20), opened, 0) == frozenset()  # off
    assert holding_locks(None, opened, 20) == frozenset()


def test_a_locked_holding_stays_on_a_sell_signal_but_not_on_a_risk_exit(
    make_settings: Any,
) -> None:
    from tests.test_orders import _decision
    from tiller.domain import Signal, SignalType
    from tiller.portfolio.selection import investable

    def signal(symbol: str, kind: SignalType) -> Signal:
        return Signal(symbol, kind, 1.0, long_eligible=True, reason="trend")

    signals = [signal("SPY", SignalType.SELL), signal("TLT", SignalType.SELL)]
    decision = _decision()
    held = ["SPY", "TLT"]
    assert investable(signals, decision, held) == []  # both sold on their signals
    assert investable(signals, decision, held, locked={"SPY"}) == ["SPY"]  # SPY kept
    # a risk exit (a stop) or a symbol risk no longer allows still leaves
    stopped = _decision(forced_exits={"SPY": "stop"})
    assert investable(signals, stopped, held, locked={"SPY"}) == []
    barred = _decision(allowed_symbols=("TLT",))
    assert investable(signals, barred, held, locked={"SPY"}) == []
    # only held symbols are locked: a lock never buys
    assert investable(signals, decision, [], locked={"SPY"}) == []


def test_the_opening_date_is_kept_by_the_book() -> None:
    from datetime import UTC, date, datetime

    from tiller.execution.accounting import (
        Fill,
        Portfolio,
        apply_fill,
        book_from_dict,
        book_to_dict,
    )
    from tiller.execution.broker import OrderSide

    def fill(side: OrderSide, qty: float, day: date) -> Fill:
        at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        return Fill(f"{side}-{day}", "SPY", side, qty, 100.0, 0.0, at)

    book = apply_fill(Portfolio.initial(10_000), fill(OrderSide.BUY, 10, date(2024, 3, 1)))
    book = apply_fill(book, fill(OrderSide.BUY, 5, date(2024, 3, 8)))  # adding keeps it
    book = apply_fill(book, fill(OrderSide.SELL, 3, date(2024, 3, 11)))  # so does a trim
    assert book.positions["SPY"].opened == date(2024, 3, 1)
    assert book_from_dict(book_to_dict(book)) == book  # saved between runs
    book = apply_fill(book, fill(OrderSide.SELL, 12, date(2024, 3, 12)))  # closed
    book = apply_fill(book, fill(OrderSide.BUY, 1, date(2024, 3, 13)))  # a new position
    assert book.positions["SPY"].opened == date(2024, 3, 13)


def _first_round_trip(result: Any) -> tuple[Any, Any]:
    """The first session GLD is held and the first after it that it is not."""
    held = result.weights["GLD"].fillna(0.0) > 0
    first = held.idxmax()
    return first, held[first:].idxmin()


def test_the_backtest_holds_a_position_for_its_minimum_period(make_settings: Any) -> None:
    from datetime import date

    from tests.test_backtest import synthetic_market
    from tests.test_strategy_options import trend_settings
    from tiller.backtest import run_backtest

    # GLD rises for 12 sessions, then falls 0.2 a day (below its 3-day average from the
    # 13th session on); TLT falls throughout (never bought)
    n = 50
    gld = [100.0 + i if i < 12 else 111.0 - 0.2 * (i - 11) for i in range(n)]
    market = synthetic_market(closes={"GLD": gld, "TLT": [100.0 - 0.5 * i for i in range(n)]})
    start, end = date(2024, 1, 2), date(2024, 3, 12)
    plain = run_backtest(trend_settings(make_settings, cadence="weekly"), market, start, end)
    held = trend_settings(make_settings, cadence="weekly")
    held = held.model_copy(
        update={"optimize": held.optimize.model_copy(update={"min_holding_days": 30})}
    )
    locked = run_backtest(held, market, start, end)
    buy, sell = _first_round_trip(plain)
    assert (sell - buy).days < 30  # the plain rule leaves within weeks of the turn
    buy_l, sell_l = _first_round_trip(locked)
    assert buy_l == buy
    assert (sell_l - buy_l).days >= 30  # held to the end of its minimum period, then sold
    assert (sell_l - buy_l).days < 30 + 7  # at the first weekly rebalance after it


def test_the_flow_reads_the_opening_dates_from_the_stored_book(
    make_settings: Any, sqlite_url: str
) -> None:
    from datetime import UTC, date, datetime

    from tasks.portfolio import PORTFOLIO, current_portfolio
    from tests.test_simulated_broker import _store_bars
    from tiller.execution.accounting import Fill, Portfolio, apply_fill, book_to_dict
    from tiller.execution.broker import OrderSide
    from tiller.store import book as book_store
    from tiller.store.repo import Store

    store = Store.open(sqlite_url)
    at = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    book = apply_fill(
        Portfolio.initial(10_000), Fill("b", "SPY", OrderSide.BUY, 10, 100.0, 0.0, at)
    )
    with store.transaction() as tx:
        book_store.save_state(tx, store, PORTFOLIO, date(2024, 3, 1), book_to_dict(book))
    _store_bars(store, "SPY", date(2024, 2, 26), date(2024, 3, 4))
    view = current_portfolio(store, make_settings(), date(2024, 3, 4))
    assert view.opened == {"SPY": date(2024, 3, 1)}
