"""The backtest engine: hand-computed fills, no look-ahead, cadence, persistence, isolation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.conftest import MARKET
from tiller.backtest import BacktestError, MarketHistory, run_backtest
from tiller.backtest.data import load_market
from tiller.calendars import sessions
from tiller.portfolio.cadence import is_rebalance_day
from tiller.store.backtests import list_runs, load_result, save_result
from tiller.store.repo import BOOK_STATE, NAV_SNAPSHOTS, ORDERS, Store

ETFS = "GLD,SPY,QQQ,TLT,XLE,EFA"


def synthetic_market(
    closes: Mapping[str, Sequence[float]],
    opens: Mapping[str, Sequence[float]] | None = None,
    first: date = date(2024, 1, 2),
    vix: float = 15.0,
) -> MarketHistory:
    """Bars on consecutive XNYS sessions from ``first``; high/low bracket open and close."""
    n = len(next(iter(closes.values())))
    days = sessions("XNYS", first, date(first.year + 1, 12, 31))[:n]
    rows = []
    for symbol, close in closes.items():
        open_ = (opens or {}).get(symbol, close)
        for day, o, c in zip(days, open_, close, strict=True):
            rows.append(
                {
                    "symbol": symbol,
                    "date": day,
                    "open": o,
                    "high": max(o, c),
                    "low": min(o, c),
                    "close": c,
                    "adj_close": c,
                    "volume": 10_000_000.0,
                }
            )
    vix_frame = pd.DataFrame({"date": days, "close": vix})
    return MarketHistory(bars=pd.DataFrame(rows), vix=vix_frame)


def fixed_settings(make_settings: Any, **optimize: Any) -> Any:
    return make_settings(
        universe="GLD,TLT",
        optimize={
            "method": "fixed",
            "fixed_weights": {"GLD": 0.6, "TLT": 0.4},
            "cash_buffer": 0.5,
            "min_weight_change": 0.0,
            "min_trade_value": 0,
            "max_turnover": 2.0,
            **optimize,
        },
        backtest={"cadence": "weekly"},
    )


def test_fixed_weight_fills_match_a_hand_computation_to_the_cent(make_settings: Any) -> None:
    settings = fixed_settings(make_settings)
    # 2024-01-02..05 warm-up (flat prices: the 20-day volatility term is 0), Monday
    # 2024-01-08 = decision day d0 (close: GLD 200, TLT 100), Tuesday d1 fills at the open.
    market = synthetic_market(
        closes={"GLD": [200] * 5 + [204, 204], "TLT": [100] * 5 + [98, 98]},
        opens={"GLD": [200] * 5 + [202, 204], "TLT": [100] * 5 + [99, 98]},
    )
    result = run_backtest(settings, market, date(2024, 1, 8), date(2024, 1, 10))
    # d0: targets 0.6 x (1 - 0.5) = 30% GLD, 0.4 x 0.5 = 20% TLT of $100,000
    #   GLD 30,000 / 200 = 150 shares; TLT 20,000 / 100 = 200 shares (bought GLD first:
    #   the larger notional)
    # d1 GLD: open 202, notional 150 x 202 = 30,300; slippage = 5 bps base
    #   + 1 bp x (30,300 - 10,000) / 10,000 = 0.0005 + 0.000203 = 0.000703
    #   price 202 x 1.000703 = 202.142006; gross 150 x 202.142006 = 30,321.3009 -> $30,321.30
    #   commission 0.10% = 30.3213 -> $30.32
    # d1 TLT: open 99, notional 19,800; slippage 0.0005 + 0.0001 x 0.98 = 0.000598
    #   price 99 x 1.000598 = 99.059202; gross 200 x 99.059202 = 19,811.8404 -> $19,811.84
    #   commission 19.8118 -> $19.81
    # cash 100,000 - 30,321.30 - 30.32 - 19,811.84 - 19.81 = 49,816.73
    # NAV at d1 closes: 49,816.73 + 150 x 204 + 200 x 98 = 49,816.73 + 30,600 + 19,600
    #   = 100,016.73
    trades = result.trades.set_index("symbol")
    assert trades.loc["GLD", "qty"] == 150 and trades.loc["TLT", "qty"] == 200
    assert trades.loc["GLD", "price"] == pytest.approx(202.142006, abs=1e-9)
    assert trades.loc["TLT", "price"] == pytest.approx(99.059202, abs=1e-9)
    assert round(trades.loc["GLD", "commission"], 2) == 30.32
    assert round(trades.loc["TLT", "commission"], 2) == 19.81
    assert list(trades["date"]) == [date(2024, 1, 9)] * 2
    assert list(trades["order_date"]) == [date(2024, 1, 8)] * 2
    d1 = result.daily.loc[date(2024, 1, 9)]
    assert d1["cash"] == 49_816.73
    assert d1["nav"] == 100_016.73
    assert d1["commission"] == pytest.approx(30.3213009 + 19.8118404)
    # slippage cost: (202.142006 - 202) x 150 + (99.059202 - 99) x 200 = 21.3009 + 11.8404
    assert d1["slippage"] == pytest.approx(21.3009 + 11.8404, abs=1e-6)
    # d0 is the start: nothing held yet, NAV = capital
    assert result.daily.loc[date(2024, 1, 8), "nav"] == 100_000.00
    assert result.metrics["final_nav"] == 100_016.73


def test_orders_fill_at_the_close_when_configured(make_settings: Any) -> None:
    base = fixed_settings(make_settings)
    settings = base.model_copy(
        update={"execution": base.execution.model_copy(update={"fill_price": "close"})}
    )
    market = synthetic_market(closes={"GLD": [200] * 7, "TLT": [100] * 7})
    result = run_backtest(settings, market, date(2024, 1, 8), date(2024, 1, 10))
    # filled on the decision day itself, at its close (+ slippage)
    assert set(result.trades["date"]) == {date(2024, 1, 8)}
    assert set(result.trades["order_date"]) == {date(2024, 1, 8)}
    # GLD: 30,000 notional -> slippage 0.0005 + 0.0001 x 2.0 = 0.0007 -> 200.14
    assert result.trades.set_index("symbol").loc["GLD", "price"] == pytest.approx(200.14)


def test_cadence() -> None:
    monday, tuesday, next_monday = date(2024, 1, 8), date(2024, 1, 9), date(2024, 1, 16)
    assert is_rebalance_day(monday, None, "once")
    assert not is_rebalance_day(tuesday, monday, "once")
    assert is_rebalance_day(tuesday, monday, "daily")
    assert not is_rebalance_day(tuesday, monday, "weekly")
    assert is_rebalance_day(next_monday, date(2024, 1, 12), "weekly")  # Tuesday after MLK day
    assert is_rebalance_day(date(2024, 2, 1), date(2024, 1, 31), "monthly")
    assert not is_rebalance_day(date(2024, 1, 31), date(2024, 1, 30), "monthly")


@pytest.fixture(scope="module")
def real_market() -> tuple[Any, MarketHistory]:
    from tiller.settings import load_settings

    settings = load_settings(data_sources=f"csv:{MARKET}", universe=ETFS, home=Path("/nonexistent"))
    return settings, load_market(settings, date(2019, 6, 1), date(2020, 6, 30))


def test_no_look_ahead_altering_prices_after_a_date_changes_nothing_before(
    real_market: tuple[Any, MarketHistory],
) -> None:
    """Crash every price after the cut by a random factor: every decision up to the cut
    (orders decided, fills made, risk events, NAV) is unchanged."""
    settings, market = real_market
    cut = date(2020, 2, 20)
    rng = np.random.default_rng(7)
    altered = market.bars.copy()
    after = altered["date"] > pd.Timestamp(cut)
    noise = rng.uniform(0.5, 1.5, after.sum())
    for column in ("open", "high", "low", "close", "adj_close"):
        altered.loc[after, column] = altered.loc[after, column] * noise
    altered.loc[after, "volume"] = altered.loc[after, "volume"] * 3
    vix = market.vix.copy()
    vix.loc[vix["date"] > pd.Timestamp(cut), "close"] = 80.0
    start, end = date(2019, 7, 1), date(2020, 4, 30)
    base = run_backtest(settings, market, start, end, cadence="daily", run_id="bt-a")
    moved = run_backtest(
        settings, MarketHistory(altered, vix), start, end, cadence="daily", run_id="bt-b"
    )
    upto = [d for d in base.daily.index if d <= cut]
    pd.testing.assert_frame_equal(base.daily.loc[upto], moved.daily.loc[upto])
    pd.testing.assert_frame_equal(base.weights.loc[upto], moved.weights.loc[upto])
    decided = base.trades[base.trades["order_date"] <= cut].reset_index(drop=True)
    decided_moved = moved.trades[moved.trades["order_date"] <= cut].reset_index(drop=True)
    # the orders decided up to the cut are the same orders; those filling after it fill
    # at the (altered) later prices, as they would in reality
    pd.testing.assert_frame_equal(
        decided[["order_date", "symbol", "side", "qty", "client_order_id"]],
        decided_moved[["order_date", "symbol", "side", "qty", "client_order_id"]],
    )
    filled = base.trades[base.trades["date"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        filled, moved.trades[moved.trades["date"] <= cut].reset_index(drop=True)
    )
    events = base.risk_events[base.risk_events["date"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        events, moved.risk_events[moved.risk_events["date"] <= cut].reset_index(drop=True)
    )
    assert len(decided) > 10  # the run really traded before the cut
    # and the alteration did change what came after
    assert base.daily["nav"].iloc[-1] != moved.daily["nav"].iloc[-1]


def test_backtest_uses_the_flow_factor_values(real_market: tuple[Any, MarketHistory]) -> None:
    """The whole-history factor panel, cut at a date, gives the factors the daily flow
    computes from its own window of bars (momentum, volatility, SMA, 12-1, rank)."""
    from tiller.strategy.factors import factor_panel, factors_at, min_history

    settings, market = real_market
    calendars = {s: settings.calendar_of(s) for s in settings.symbols}
    whole = factor_panel(market.bars, settings.strategy.factors, calendars)
    longest = max(min_history(settings.strategy.factors).values())
    for day in (date(2019, 9, 3), date(2020, 3, 16), date(2020, 6, 30)):
        # the flow's window (tasks/strategy.load_history): longest x 7/5 + 30 days
        first = pd.Timestamp(day) - pd.Timedelta(days=int(longest * 7 / 5) + 30)
        bars = market.bars[
            (market.bars["date"] >= first) & (market.bars["date"] <= pd.Timestamp(day))
        ]
        window = factors_at(factor_panel(bars, settings.strategy.factors, calendars), day)
        cut = factors_at(whole, day)
        a = cut.wide().drop(columns=[c for c in cut.wide() if c.startswith(("rsi", "atr"))])
        b = window.wide()[a.columns]
        pd.testing.assert_frame_equal(a, b, rtol=1e-9, atol=1e-12)


def test_bad_ranges_are_refused_clearly(make_settings: Any) -> None:
    settings = fixed_settings(make_settings)
    market = synthetic_market(closes={"GLD": [200] * 7, "TLT": [100] * 7})
    with pytest.raises(BacktestError, match="after end"):
        run_backtest(settings, market, date(2024, 2, 1), date(2024, 1, 1))
    with pytest.raises(BacktestError, match="no trading session"):
        run_backtest(settings, market, date(2024, 1, 6), date(2024, 1, 7))  # a weekend
    empty = MarketHistory(market.bars.iloc[0:0], market.vix)
    with pytest.raises(BacktestError, match="no bars for the universe"):
        run_backtest(settings, empty, date(2024, 1, 8), date(2024, 1, 10))


def test_a_saved_run_loads_back_equal_and_leaves_paper_state_alone(
    db_url: str, real_market: tuple[Any, MarketHistory]
) -> None:
    settings, market = real_market
    result = run_backtest(settings, market, date(2020, 1, 2), date(2020, 3, 31))
    store = Store.open(db_url)
    save_result(store, result)
    loaded = load_result(store, result.run_id)
    pd.testing.assert_frame_equal(
        loaded.daily, result.daily, check_dtype=False, check_index_type=False
    )
    pd.testing.assert_frame_equal(
        loaded.trades.reset_index(drop=True), result.trades, check_dtype=False
    )
    assert len(loaded.risk_events) == len(result.risk_events)
    assert loaded.metrics == pytest.approx(result.metrics)
    weights = loaded.weights.reindex(columns=result.weights.columns, fill_value=0.0)
    pd.testing.assert_frame_equal(weights, result.weights, atol=1e-8, check_index_type=False)
    assert list_runs(store)["run_id"].tolist() == [result.run_id]
    for table in (NAV_SNAPSHOTS, ORDERS, BOOK_STATE):  # the paper book is untouched
        assert store.select(select(table)).empty
    with pytest.raises(KeyError, match="tiller backtest list"):
        load_result(store, "bt-missing")


def _path(start: float, moves: list[float]) -> list[float]:
    return list(start * np.cumprod(1 + np.array(moves)))


@hsettings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    gld=st.lists(st.floats(-0.08, 0.08), min_size=42, max_size=42),
    tlt=st.lists(st.floats(-0.08, 0.08), min_size=42, max_size=42),
    mix=st.floats(0.05, 0.95),
    cadence=st.sampled_from(["daily", "weekly", "monthly"]),
)
def test_accounting_identities_hold_every_day(
    make_settings: Any, gld: list[float], tlt: list[float], mix: float, cadence: str
) -> None:
    """For any daily moves and mix: NAV = cash + long value to the cent, cash never
    negative, drawdown = 1 - NAV / peak, and no buy decided above its cap."""
    settings = make_settings(
        universe="GLD,TLT",
        optimize={
            "method": "fixed",
            "fixed_weights": {"GLD": mix, "TLT": 1 - mix},
            "min_weight_change": 0.0,
            "max_turnover": 2.0,
        },
    )
    closes = {"GLD": _path(180.0, gld), "TLT": _path(95.0, tlt)}
    market = synthetic_market(closes=closes)
    result = run_backtest(settings, market, date(2024, 1, 2), date(2024, 3, 1), cadence=cadence)
    daily = result.daily
    assert ((daily["cash"] + daily["long_value"] - daily["nav"]).abs() < 0.005).all()
    assert (daily["cash"] >= 0).all()
    assert np.allclose(daily["drawdown"], 1 - daily["nav"] / daily["peak_nav"])
    caps = {"GLD": 0.50, "TLT": 0.30}
    frame = pd.DataFrame(closes, index=list(daily.index))
    for trade in result.trades[result.trades["side"] == "buy"].itertuples():
        o = trade.order_date
        before = result.weights.loc[o].get(trade.symbol, 0.0)
        # weight the buy was sized for, at the decision day's close and NAV
        after = before + trade.qty * frame.loc[o, trade.symbol] / daily.loc[o, "nav"]
        assert after <= caps[trade.symbol] + 1e-9


# --- results only on data that exists ------------------------------------------------------


def test_a_window_past_the_data_is_refused_naming_each_symbol_and_its_last_date() -> None:
    """The shared CSV files end in 2024-2025 (VIX in 2026): a 2026 backtest has no prices."""
    from tiller.settings import load_settings

    settings = load_settings(data_sources=f"csv:{MARKET}", universe="core", home=Path("/none"))
    market = load_market(settings, date(2026, 1, 5), date(2026, 12, 4))
    with pytest.raises(BacktestError) as info:
        run_backtest(settings, market, date(2026, 1, 5), date(2026, 12, 4))
    message = str(info.value)
    assert "runs past the data" in message and "\n" not in message
    # BTC-USD's file ends before the warm-up starts: it has no bars at all here
    for part in ("BTC-USD no bars", "SPY 2025-09-26", "GLD 2025-09-26", "QQQ 2025-09-26"):
        assert part in message
    assert "on or before 2025-09-26" in message


def test_a_symbol_whose_data_ends_inside_the_window_is_sold_at_its_last_close() -> None:
    """BTC-USD's file ends on 2024-03-31: from the next session it is sold at that close
    (less slippage), flagged, and never held or valued at a stale price again."""
    from tiller.settings import load_settings

    settings = load_settings(
        data_sources=f"csv:{MARKET}",
        universe="core",
        home=Path("/none"),
        optimize={"solver": "newton", "min_holding_days": 0},
        strategy={"signals": {"rule": "rules"}},  # holds BTC going into its last date
        backtest={"cadence": "weekly"},
    )
    start, end = date(2024, 1, 2), date(2025, 6, 30)
    result = run_backtest(settings, load_market(settings, start, end), start, end)
    assert result.config["delisted"] == {"BTC-USD": "2024-03-31"}
    events = result.risk_events[result.risk_events["kind"] == "delisted"]
    assert list(events["symbol"]) == ["BTC-USD"] and events["date"].iloc[0] == date(2024, 4, 1)
    after = result.weights.index >= date(2024, 4, 1)
    assert result.weights.loc[date(2024, 3, 28), "BTC-USD"] > 0.1  # held going in
    assert (result.weights.loc[after, "BTC-USD"] == 0).all()
    btc = result.trades[result.trades["symbol"] == "BTC-USD"]
    sale = btc[btc["date"] >= date(2024, 4, 1)]
    assert len(sale) == 1 and sale["side"].iloc[0] == "sell"
    assert sale["date"].iloc[0] == date(2024, 4, 1)
    # priced from the last close in the file, 2024-03-31: 70,677.117188, less slippage
    assert sale["reference_price"].iloc[0] == pytest.approx(70_677.117188)
    assert sale["price"].iloc[0] < sale["reference_price"].iloc[0]
    assert (
        "0 held" not in events["reason"].iloc[0]
        and "sold at the last close" in (events["reason"].iloc[0])
    )


def test_small_real_distributions_are_paid_and_ratio_noise_is_not() -> None:
    """TIP paid $0.004, $0.0099 and $0.009 a share on three ex-dates (under 1e-4 of its
    price, once dropped); SPY paid 76 quarterly dividends in 2005-2023, GLD none."""
    from tiller.execution.dividends import implied_dividends

    paid = {}
    for symbol in ("SPY", "TIP", "GLD"):
        raw = pd.read_csv(MARKET / f"{symbol}.csv", parse_dates=["date"]).set_index("date")
        raw = raw.loc["2005":"2023"]
        wide = implied_dividends(
            raw[["close"]].set_axis([symbol], axis=1), raw[["adj_close"]].set_axis([symbol], axis=1)
        )
        paid[symbol] = wide[symbol][wide[symbol] > 0]
    assert len(paid["SPY"]) == 76 and len(paid["GLD"]) == 0
    tip = paid["TIP"]
    # D = close_{t-1} x (1 - f_{t-1} / f_t), f = adj_close / close
    assert tip[pd.Timestamp("2010-03-01")] == pytest.approx(0.004, abs=1e-5)
    assert tip[pd.Timestamp("2011-09-01")] == pytest.approx(0.0099, abs=1e-4)
    assert tip[pd.Timestamp("2012-12-26")] == pytest.approx(0.009, abs=1e-4)
