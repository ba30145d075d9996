"""The configuration options the trend-filtered risk-parity profiles are made of, each on
a small hand-worked case: month-end cadence, the trend rule, the dividend-adjusted traded
price, no warm-up, delisting at the next rebalance, no volume cap, the covariance
singularity test, ``asset_defaults`` and the long-format CSV source."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.test_backtest import synthetic_market
from tiller.backtest import MarketHistory, run_backtest
from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import LongCsvProvider
from tiller.errors import DataError
from tiller.execution import fills
from tiller.execution.broker import OrderSide
from tiller.pipeline.market import dividend_adjusted
from tiller.portfolio.cadence import is_rebalance_day, rebalance_days
from tiller.portfolio.optimize import optimize_weights
from tiller.risk.window import ReturnWindow
from tiller.strategy.signals import BUY, SELL, SignalInputs, signal_panel

TREND = {"signals": {"rule": "trend", "trend_window": 3}, "factors": {"sma_windows": [3]}}


def trend_settings(make_settings: Any, **backtest: Any) -> Any:
    return make_settings(
        universe="GLD,TLT",
        strategy=TREND,
        optimize={
            "lookback": 20,
            "cash_buffer": 0.05,
            "min_weight_change": 0.0,
            "min_trade_value": 0,
            "max_turnover": 4.0,
            "max_trades": 100,
        },
        assets={"GLD": {"max_weight": 1.0}, "TLT": {"max_weight": 1.0}},
        execution={
            "fill_price": "close",
            "fractional": True,
            "volatility_slippage": 0.0,
            "impact_bps_per_10k": 0.0,
            "max_volume_fraction": None,
        },
        backtest={"cadence": "month_end", "warmup": False, **backtest},
        risk={
            "levels": {"L1": 0.96, "L2": 0.97, "L3": 0.98, "L4": 0.99},
            "asset_stop_halve": 0.98,
            "asset_stop_exit": 0.99,
            "pair_correlation_cap": 1.0,
            "average_correlation_l1": 1.0,
            "all_pairs_correlation_l2": 1.0,
            "kill_daily_loss": 0.99,
        },
    )


# ----------------------------------------------------------------------------- cadence
def test_month_end_is_the_session_before_a_new_month() -> None:
    # 2024-01-31 (Wed) is followed by 2024-02-01: a month end; 2024-01-30 is not
    assert is_rebalance_day(date(2024, 1, 31), date(2024, 1, 30), "month_end", date(2024, 2, 1))
    assert not is_rebalance_day(
        date(2024, 1, 30), date(2024, 1, 29), "month_end", date(2024, 1, 31)
    )
    # the first session is not a rebalance by itself, the last one never (next unknown)
    assert not is_rebalance_day(date(2024, 1, 2), None, "month_end", date(2024, 1, 3))
    assert not is_rebalance_day(date(2024, 1, 31), date(2024, 1, 30), "month_end", None)
    days = [date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 29)]
    assert rebalance_days(days, "month_end").tolist() == [False, True, False, False]
    assert rebalance_days(days, "monthly").tolist() == [True, False, True, False]


# ------------------------------------------------------------------------- trend rule
def _inputs(close: list[list[float]], trend: list[list[float]]) -> SignalInputs:
    c, t = np.array(close, dtype=float), np.array(trend, dtype=float)
    nan = np.full(c.shape, np.nan)
    return SignalInputs(
        symbols=("A", "B"),
        momentum=nan,
        close=c,
        sma20=nan,
        sma50=nan,
        sma200=nan,
        trend=t,
        volatility=nan,
        volatility_window=np.zeros(c.shape, dtype=int),
        rank=nan,
        present=~np.isnan(c),
        vix=np.array([50.0, 50.0]),  # EXTREME: the trend rule has no regime filter
        regime=np.array([3, 3], dtype=np.int8),
    )


def test_trend_rule_buys_strictly_above_the_average_and_sells_otherwise(make_settings: Any) -> None:
    config = make_settings(strategy=TREND).strategy.signals
    # day 0: A 10 > 9 (BUY), B 5 == 5 (not strictly above: SELL)
    # day 1: A 10 < 11 (SELL), B has no average yet (SELL, not eligible)
    panel = signal_panel(_inputs([[10, 5], [10, 7]], [[9, 5], [11, np.nan]]), config, 252)
    assert panel.kind.tolist() == [[BUY, SELL], [SELL, SELL]]
    assert panel.eligible.tolist() == [[True, False], [False, False]]
    assert (panel.confidence == 1.0).all()


def test_trend_window_must_be_a_computed_average(make_settings: Any) -> None:
    from tiller.errors import ConfigError

    with pytest.raises(ConfigError, match="sma_150"):
        make_settings(strategy={"signals": {"rule": "trend", "trend_window": 150}})


# ------------------------------------------------------------------------ traded price
def test_dividend_adjusted_bars_scale_ohlc_by_adj_over_close() -> None:
    bars = pd.DataFrame(
        {
            "symbol": ["A", "A"],
            "date": pd.to_datetime(["2024-01-02", "2024-01-03"]),
            "open": [100.0, 50.0],
            "high": [110.0, 55.0],
            "low": [90.0, 45.0],
            "close": [100.0, 50.0],
            "adj_close": [98.0, np.nan],  # k = 0.98; missing adj_close: k = 1
            "volume": [1000.0, 10.0],
        }
    )
    out = dividend_adjusted(bars)
    # 100 x 0.98 = 98, 110 x 0.98 = 107.8, 90 x 0.98 = 88.2; volume 1000 / 0.98
    assert out["open"].tolist() == pytest.approx([98.0, 50.0])
    assert out["high"].tolist() == pytest.approx([107.8, 55.0])
    assert out["low"].tolist() == pytest.approx([88.2, 45.0])
    assert out["close"].tolist() == out["adj_close"].tolist() == pytest.approx([98.0, 50.0])
    assert out["volume"].tolist() == pytest.approx([1000 / 0.98, 10.0])


# ---------------------------------------------------------- the engine with these options
def _ramp_market() -> MarketHistory:
    # GLD rises 1 a day from 100, TLT falls 1 a day from 100 (never above its average)
    n = 45  # 2024-01-02 .. 2024-03-06
    return synthetic_market(
        closes={"GLD": [100.0 + i for i in range(n)], "TLT": [100.0 - 0.5 * i for i in range(n)]}
    )


def test_month_end_trend_backtest_by_hand(make_settings: Any) -> None:
    settings = trend_settings(make_settings)
    market = _ramp_market()
    result = run_backtest(settings, market, date(2024, 1, 2), date(2024, 3, 6))
    trades = result.trades
    # only month ends trade: 2024-01-31 and 2024-02-29 (GLD above its 3-day average, TLT
    # below it: GLD alone, w = 1, 95% invested)
    assert sorted(set(trades["date"])) == [date(2024, 1, 31), date(2024, 2, 29)]
    assert set(trades["symbol"]) == {"GLD"}
    first = trades.iloc[0]
    # 2024-01-31 is session 21 (0-based 20): close 120; buy 95,000 / 120 = 791.6666 shares
    # at 120 x 1.0005 = 120.06 (0.0001-share lots: 791.6666)
    assert first["price"] == pytest.approx(120.06)
    assert first["qty"] == pytest.approx(791.6666, abs=1e-9)
    # commission 0.10% of 791.6666 x 120.06 = 95,047.49... -> 95.0475
    assert first["commission"] == pytest.approx(0.001 * 791.6666 * 120.06)
    # nothing before the first month end: all cash, NAV 100,000
    assert (result.daily.loc[: date(2024, 1, 30), "nav"] == 100_000.0).all()


def test_no_warmup_uses_only_bars_inside_the_window(make_settings: Any) -> None:
    market = _ramp_market()
    # starting 2024-01-30, the 3-day average first exists on 2024-02-01: the 2024-01-31
    # month end has no eligible asset, so the first trade is on 2024-02-29
    cold = run_backtest(trend_settings(make_settings), market, date(2024, 1, 30), date(2024, 3, 6))
    assert sorted(set(cold.trades["date"])) == [date(2024, 2, 29)]
    warm = run_backtest(
        trend_settings(make_settings, warmup=True), market, date(2024, 1, 30), date(2024, 3, 6)
    )
    assert sorted(set(warm.trades["date"])) == [date(2024, 1, 31), date(2024, 2, 29)]


def test_a_delisted_holding_is_sold_at_the_next_rebalance(make_settings: Any) -> None:
    market = _ramp_market()
    bars = market.bars
    # GLD's data end on 2024-02-09; held since 2024-01-31
    bars = bars[~((bars["symbol"] == "GLD") & (bars["date"] > pd.Timestamp("2024-02-09")))]
    market = MarketHistory(bars=bars, vix=market.vix)
    at_rebalance = run_backtest(
        trend_settings(make_settings, delisting="next_rebalance"),
        market,
        date(2024, 1, 2),
        date(2024, 3, 6),
    )
    sale = at_rebalance.trades[at_rebalance.trades["side"] == "sell"]
    assert sale["date"].tolist() == [date(2024, 2, 29)]
    assert sale["reference_price"].iloc[0] == pytest.approx(127.0)  # the 2024-02-09 close
    # held at that close in between: the NAV does not move after 2024-02-09
    between = at_rebalance.daily.loc[date(2024, 2, 9) : date(2024, 2, 28), "nav"]
    assert between.nunique() == 1
    at_session = run_backtest(
        trend_settings(make_settings), market, date(2024, 1, 2), date(2024, 3, 6)
    )
    sale = at_session.trades[at_session.trades["side"] == "sell"]
    assert sale["date"].tolist() == [date(2024, 2, 12)]  # the next session
    # the same money either way (the same price, the same costs)
    assert at_session.daily["nav"].iloc[-1] == at_rebalance.daily["nav"].iloc[-1]


def test_no_volume_cap_fills_a_zero_volume_bar(make_settings: Any) -> None:
    capped = make_settings(execution={"max_volume_fraction": 1.0, "fill_price": "close"})
    uncapped = make_settings(execution={"max_volume_fraction": None, "fill_price": "close"})
    args = ("SPY", OrderSide.BUY, date(2024, 1, 2), 100.0, 101.0, 0.0, 10.0, 0.0)
    assert fills.fill_on(*args, capped) is None  # a zero-volume bar fills nothing
    fill = fills.fill_on(*args, uncapped)
    assert fill is not None and fill.qty == 10.0


# ---------------------------------------------------------------------- singular test
def test_covariance_singularity_test(make_settings: Any) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.01, 60)
    # B = A + tiny noise: correlation matrix eigenvalue ~1e-9 (< 1e-8, singular by the
    # default correlation test) but the covariance ratio ~1e-9 > 1e-10 (ERC by the
    # covariance test at 1e-10)
    b = a + rng.normal(0, 0.01 * 3e-5, 60)
    c = rng.normal(0, 0.02, 60)
    returns = pd.DataFrame({"A": a, "B": b, "C": c})
    window = ReturnWindow.from_frame(returns)
    caps = dict.fromkeys("ABC", 1.0)
    default = make_settings().optimize.model_copy(update={"lookback": 60})
    by_cov = default.model_copy(
        update={"singular_matrix": "covariance", "singular_tolerance": 1e-10}
    )
    eig = np.linalg.eigvalsh(np.cov(returns.to_numpy(), rowvar=False))
    assert eig[0] / eig[-1] > 1e-10
    assert np.linalg.eigvalsh(np.corrcoef(returns.to_numpy(), rowvar=False))[0] < 1e-8
    assert optimize_weights(window, {}, 1e5, caps, default).method == "inverse_volatility"
    assert optimize_weights(window, {}, 1e5, caps, by_cov).method == "risk_parity"


# --------------------------------------------------------------- universe and sources
def test_asset_defaults_fill_the_universe_table(make_settings: Any) -> None:
    settings = make_settings(
        universe="AAPL,SPY",
        asset_defaults={"asset_class": "equity", "max_weight": 0.05, "stop_loss": 0.5},
    )
    assert settings.symbols == ["AAPL", "SPY"]
    assert settings.asset("AAPL").max_weight == 0.05 and settings.asset("AAPL").name == "AAPL"
    assert settings.asset("SPY").max_weight == 0.40  # listed rows keep their own values
    from tiller.errors import ConfigError

    with pytest.raises(ConfigError, match="AAPL"):
        make_settings(universe="AAPL,SPY")  # without defaults: unknown symbol


LONG = "date,symbol,open,high,low,close,volume\n"


def _long(tmp_path: Path, text: str, name: str = "u.csv.gz") -> LongCsvProvider:
    path = tmp_path / name
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return LongCsvProvider(path)


def test_long_csv_serves_each_symbol(tmp_path: Path) -> None:
    provider = _long(
        tmp_path,
        LONG + "2024-01-02,A,1,2,0.5,1.5,10\n2024-01-02,B,5,6,4,5.5,0\n2024-01-03,A,2,3,1,2.5,\n",
    )
    assert provider.supports("A", SeriesKind.BAR) and not provider.supports("VIX", SeriesKind.BAR)
    a = provider.fetch(SeriesRequest("A", SeriesKind.BAR, date(2024, 1, 1), date(2024, 1, 5)))
    assert a["close"].tolist() == [1.5, 2.5]
    assert a["adj_close"].isna().all()  # no adj_close column: the close is the price
    assert np.isnan(a["volume"].iloc[1])


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("date,symbol,open,high,low,price,volume\n2024-01-02,A,1,2,0.5,1,1\n", ["close"]),
        (LONG + "2024-01-02,A,1,2,0.5,1,1\n2024-01-02,A,1,2,0.5,1,1\n", ["line 3", "again"]),
        (LONG + "2024-01-03,A,1,2,0.5,1,1\n2024-01-02,A,1,2,0.5,1,1\n", ["line 3", "sort"]),
        (LONG + "2024-01-02,A,1,2,0.5,1,1\n2024-01-03,A,1,2,x,1,1\n", ["line 3", "'x'"]),
        (LONG + "2024-13-02,A,1,2,0.5,1,1\n", ["line 2", "YYYY-MM-DD"]),
        (LONG + "2024-01-02,A,1,2,,1,1\n", ["line 2", "low is empty"]),
    ],
)
def test_bad_long_csv_is_refused_by_line(tmp_path: Path, content: str, words: list[str]) -> None:
    provider = _long(tmp_path, content)
    with pytest.raises(DataError) as info:
        provider.supports("A", SeriesKind.BAR)
    for word in words:
        assert word in str(info.value)
