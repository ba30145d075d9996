"""The offline synthetic market: deterministic, window-independent, and realistic enough."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from tiller import calendars
from tiller.data.base import BAR_COLUMNS, SeriesKind, SeriesRequest
from tiller.data.providers.synthetic import SyntheticProvider

START, END = date(2010, 1, 1), date(2025, 12, 31)


def _bars(symbol: str, start: date = START, end: date = END, seed: int = 7) -> pd.DataFrame:
    return SyntheticProvider(seed).fetch(SeriesRequest(symbol, SeriesKind.BAR, start, end))


def test_same_seed_same_prices_and_any_window_is_a_slice_of_the_whole() -> None:
    whole = _bars("SPY")
    part = _bars("SPY", date(2020, 3, 1), date(2020, 4, 30))
    expected = whole[(whole["date"] >= "2020-03-01") & (whole["date"] <= "2020-04-30")]
    pd.testing.assert_frame_equal(part, expected.reset_index(drop=True))
    pd.testing.assert_frame_equal(whole, _bars("SPY"))
    assert not whole["close"].equals(_bars("SPY", seed=8)["close"])


def test_bars_follow_the_asset_calendar_and_never_pass_the_end() -> None:
    spy = _bars("SPY", date(2024, 12, 20), date(2025, 1, 3))
    assert list(spy.columns) == list(BAR_COLUMNS)
    expected = calendars.sessions("XNYS", date(2024, 12, 20), date(2025, 1, 3))
    assert list(spy["date"]) == list(expected)  # no Christmas, no New Year's Day
    btc = _bars("BTC-USD", date(2024, 12, 20), date(2025, 1, 3))
    assert len(btc) == 15  # 24/7: every calendar day
    assert btc["date"].max() == pd.Timestamp("2025-01-03")


def test_ohlc_is_consistent_and_prices_positive() -> None:
    for symbol in ("SPY", "QQQ", "GLD", "BTC-USD", "TLT", "VIX"):
        bars = _bars(symbol)
        assert (bars[["open", "high", "low", "close"]] > 0).all().all()
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
        assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()


def test_the_market_has_fat_tails_correlation_regimes_and_crashes() -> None:
    closes = pd.DataFrame({s: _bars(s).set_index("date")["close"] for s in ("SPY", "QQQ", "TLT")})
    returns = np.log(closes).diff().dropna()
    assert (returns.kurt() > 3).all()  # fat tails (normal: 0 excess kurtosis)
    assert returns["SPY"].corr(returns["QQQ"]) > 0.8
    assert returns["SPY"].corr(returns["TLT"]) < 0
    assert returns["SPY"].min() < -0.05  # at least one crash day in 16 years
    rolling = returns["SPY"].rolling(60).std() * np.sqrt(252)
    assert rolling.max() > 2.5 * rolling.min()  # volatility regimes


def test_vix_rises_with_equity_volatility() -> None:
    spy = _bars("SPY").set_index("date")["close"]
    vix = _bars("VIX").set_index("date")["close"]
    realised = np.log(spy).diff().rolling(20).std() * np.sqrt(252) * 100
    assert vix.corr(realised) > 0.6
    assert vix.min() > 5 and vix.max() > 40  # quiet years and panics
    assert (vix >= 30).mean() < 0.25


def test_macro_series_have_holiday_gaps_and_monthly_dates() -> None:
    provider = SyntheticProvider()
    ten = provider.fetch(
        SeriesRequest("DGS10", SeriesKind.MACRO, date(2024, 12, 20), date(2025, 1, 3))
    )
    assert (
        ten.set_index("date").loc["2024-12-25", "value"]
        != ten.set_index("date").loc["2024-12-25", "value"]
    )  # NaN on Christmas, as FRED
    cpi = provider.fetch(SeriesRequest("CPIAUCSL", SeriesKind.MACRO, START, END))
    assert (cpi["date"].dt.day == 1).all() and cpi["value"].is_monotonic_increasing is False
    assert not provider.supports("NOPE", SeriesKind.MACRO)
