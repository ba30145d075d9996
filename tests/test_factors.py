"""Factor panel and snapshots (SPEC stage 3): hand-worked values, an independent
plain-pandas/numpy computation on the real daily CSVs, and too-little history."""

from __future__ import annotations

import math
from datetime import date
from functools import cache

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from tests.conftest import MARKET
from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import CsvProvider
from tiller.settings import FactorConfig
from tiller.strategy.factors import (
    MIN_HISTORY_ATTR,
    FactorSnapshot,
    factor_panel,
    factors_at,
)

# --------------------------------------------------------------------------- helpers


def bars_of(symbol: str, closes: list[float], start: str = "2024-01-01", freq: str = "B"):
    """Bars with high = close + 1, low = close - 1, open = close, adj_close NaN."""
    close = np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": pd.date_range(start, periods=len(close), freq=freq),
            "open": close,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "adj_close": np.nan,
            "volume": 1000.0,
        }
    )


@cache
def real_bars(symbol: str, start: date = date(2015, 1, 1), end: date = date(2020, 12, 31)):
    frame = CsvProvider(MARKET).fetch(SeriesRequest(symbol, SeriesKind.BAR, start, end))
    return frame.assign(symbol=symbol)


CAL = {"SPY": "XNYS", "GLD": "XNYS", "TLT": "XNYS", "BTC-USD": "24/7", "A": "XNYS", "B": "XNYS"}

# Six prices alternating +10% / -10% returns:
#   P = 100, 110, 99, 108.9, 119.79, 107.811
#   r = -, +0.1, -0.1, +0.1, +0.1, -0.1
HAND = [100.0, 110.0, 99.0, 108.9, 119.79, 107.811]
SMALL = FactorConfig(
    momentum_windows=[2],
    volatility_windows=[3],
    sma_windows=[3],
    rsi_window=2,
    atr_window=2,
    momentum_long=4,
    momentum_skip=2,
)


# --------------------------------------------------------------------------- hand-worked


def test_hand_worked_factors() -> None:
    panel = factor_panel(bars_of("A", HAND), SMALL, CAL)
    a = panel.xs("A", level="symbol")
    assert list(a.columns) == [
        "close",
        "momentum_2",
        "volatility_3",
        "sma_3",
        "rsi_2",
        "atr_2",
        "momentum_12_1",
        "periods_per_year",
    ]
    assert a["close"].tolist() == HAND

    # momentum_2 = P_t / P_{t-2} - 1:
    #   t=2: 99/100 - 1 = -0.01; t=3: 108.9/110 - 1 = -0.01
    #   t=4: 119.79/99 - 1 = +0.21; t=5: 107.811/108.9 - 1 = -0.01
    np.testing.assert_allclose(a["momentum_2"].iloc[2:], [-0.01, -0.01, 0.21, -0.01], rtol=1e-12)
    assert a["momentum_2"].iloc[:2].isna().all()

    # volatility_3 at t=3 uses r1..r3 = +0.1, -0.1, +0.1: mean 0.1/3,
    #   deviations +0.2/3, -0.4/3, +0.2/3; squares sum = (0.04+0.16+0.04)/9 = 0.24/9;
    #   var (ddof=1) = 0.24/9/2 = 1/75; std = sqrt(1/75); annualised x sqrt(252) -> sqrt(3.36).
    # t=4 (r2..r4 = -0.1, +0.1, +0.1) and t=5 (+0.1, +0.1, -0.1) have the same spread.
    np.testing.assert_allclose(a["volatility_3"].iloc[3:], [math.sqrt(3.36)] * 3, rtol=1e-12)
    assert a["volatility_3"].iloc[:3].isna().all()  # needs 4 prices (3 returns)

    # sma_3: t=2 (100+110+99)/3 = 103; t=3 (110+99+108.9)/3 = 105.9666..;
    #   t=4 (99+108.9+119.79)/3 = 109.23; t=5 (108.9+119.79+107.811)/3 = 112.167
    np.testing.assert_allclose(a["sma_3"].iloc[2:], [103.0, 317.9 / 3, 109.23, 112.167], rtol=1e-12)

    # 12-1 with long=4, skip=2: (P_t/P_{t-4} - 1) - (P_t/P_{t-2} - 1)
    #   t=4: (119.79/100 - 1) - (119.79/99 - 1) = 0.1979 - 0.21 = -0.0121
    #   t=5: (107.811/110 - 1) - (107.811/108.9 - 1) = -0.0199 - (-0.01) = -0.0099
    np.testing.assert_allclose(a["momentum_12_1"].iloc[4:], [-0.0121, -0.0099], rtol=1e-10)
    assert a["momentum_12_1"].iloc[:4].isna().all()

    # RSI_2 (Wilder, alpha = 1/2, EWM started at the first change):
    #   changes +10, -11, +9.9, +10.89, -11.979
    #   avg gain: 10, 5, 7.45, 9.17, 4.585; avg loss: 0, 5.5, 2.75, 1.375, 6.677
    #   RSI = 100 g / (g + l): t=2 47.619.., t=3 73.039.., t=4 86.961.., t=5 40.712..
    np.testing.assert_allclose(
        a["rsi_2"].iloc[2:],
        [
            100 * 5 / 10.5,
            100 * 7.45 / (7.45 + 2.75),
            100 * 9.17 / (9.17 + 1.375),
            100 * 4.585 / (4.585 + 6.677),
        ],
        rtol=1e-10,
    )
    assert a["rsi_2"].iloc[:2].isna().all()

    # ATR_2 with high = P + 1, low = P - 1:
    #   TR0 = 2; TR1 = max(2, |111-100|, |109-100|) = 11; TR2 = max(2, |100-110|, |98-110|) = 12
    #   TR3 = max(2, |109.9-99|, |107.9-99|) = 10.9; TR4 = max(2, 120.79-108.9, 118.79-108.9)
    #   = 11.89; TR5 = max(2, |108.811-119.79|, |106.811-119.79|) = 12.979
    #   seed ATR1 = (2 + 11)/2 = 6.5; ATR_t = ATR_{t-1} + (TR_t - ATR_{t-1})/2:
    #   9.25, 10.075, 10.9825, 11.98075
    np.testing.assert_allclose(
        a["atr_2"].iloc[1:], [6.5, 9.25, 10.075, 10.9825, 11.98075], rtol=1e-10
    )
    assert math.isnan(a["atr_2"].iloc[0])
    assert (a["periods_per_year"] == 252).all()


def test_adjusted_prices_are_used_consistently() -> None:
    raw = bars_of("A", HAND)
    adjusted = raw.assign(adj_close=raw["close"] / 2)  # e.g. a later 2:1 split
    plain = factor_panel(raw, SMALL, CAL)
    halved = factor_panel(adjusted, SMALL, CAL)
    # Returns, momentum, volatility, RSI are scale-free; price levels (close, SMA, ATR) halve.
    for column in ["momentum_2", "volatility_3", "rsi_2", "momentum_12_1"]:
        pd.testing.assert_series_equal(halved[column], plain[column], rtol=1e-12)
    for column in ["close", "sma_3", "atr_2"]:
        pd.testing.assert_series_equal(halved[column], plain[column] / 2, rtol=1e-12)


def test_annualisation_follows_the_calendar() -> None:
    bars = pd.concat([bars_of("A", HAND), bars_of("BTC-USD", HAND, freq="D")])
    panel = factor_panel(bars, SMALL, CAL)
    ratio = (
        panel.xs("BTC-USD", level="symbol")["volatility_3"].iloc[-1]
        / panel.xs("A", level="symbol")["volatility_3"].iloc[-1]
    )
    assert ratio == pytest.approx(math.sqrt(365 / 252), rel=1e-12)
    assert panel.xs("BTC-USD", level="symbol")["periods_per_year"].iloc[0] == 365


def test_bad_inputs_are_refused() -> None:
    bars = bars_of("A", HAND)
    with pytest.raises(ValueError, match="no calendar for A"):
        factor_panel(bars, SMALL, {})
    with pytest.raises(ValueError, match="calendar 'XLON'"):
        factor_panel(bars, SMALL, {"A": "XLON"})
    with pytest.raises(ValueError, match="more than one row for A"):
        factor_panel(pd.concat([bars, bars.iloc[:1]]), SMALL, CAL)
    with pytest.raises(ValueError, match="lack column"):
        factor_panel(bars.drop(columns=["high"]), SMALL, CAL)
    empty = factor_panel(bars.iloc[:0], SMALL, CAL)
    assert empty.empty and "momentum_12_1" in empty.columns
    assert factors_at(empty, date(2024, 1, 5)).values.empty


# --------------------------------------------------------------------------- real data


def reference(bars: pd.DataFrame, periods: int) -> dict[str, np.ndarray]:
    """Independent computation with numpy windows / plain pandas Wilder smoothing.

    Windows are XNYS sessions; a calendar with ``periods`` bars a year uses
    ``round(n * periods / 252)`` bars for the same span of time (365 - 30 days for 12-1).
    """
    close = bars["close"].to_numpy(float)
    price = bars["adj_close"].fillna(bars["close"]).to_numpy(float)
    k = price / close
    high, low = bars["high"].to_numpy(float) * k, bars["low"].to_numpy(float) * k
    n_rows = len(price)

    def b(n: int) -> int:
        return round(n * periods / 252)

    def pad(values: np.ndarray) -> np.ndarray:
        return np.concatenate([np.full(n_rows - len(values), np.nan), values])

    out: dict[str, np.ndarray] = {}
    for n in (60, 120):
        out[f"momentum_{n}"] = pad(price[b(n) :] / price[: -b(n)] - 1)
    returns = price[1:] / price[:-1] - 1
    for n in (20, 60):
        out[f"volatility_{n}"] = pad(
            sliding_window_view(returns, b(n)).std(axis=1, ddof=1) * math.sqrt(periods)
        )
    for n in (20, 50, 200):
        out[f"sma_{n}"] = pad(sliding_window_view(price, b(n)).mean(axis=1))
    year, month = b(252), b(21)
    out["momentum_12_1"] = pad(
        (price[year:] / price[:-year] - 1) - (price[year:] / price[year - month : -month] - 1)
    )

    p = pd.Series(price)
    change = p.diff()
    alpha = 1 / b(14)
    gain = change.clip(lower=0).ewm(alpha=alpha, adjust=False).mean()
    loss = (-change).clip(lower=0).ewm(alpha=alpha, adjust=False).mean()
    out["rsi_14"] = (100 * gain / (gain + loss)).to_numpy()
    previous = p.shift(1).to_numpy()
    true_range = np.nanmax(
        np.vstack([high - low, np.abs(high - previous), np.abs(low - previous)]), axis=0
    )
    # Unseeded Wilder EWM: differs from the SMA-seeded ATR only during the warm-up.
    out["atr_14"] = pd.Series(true_range).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


@pytest.mark.parametrize(
    ("symbol", "periods"), [("SPY", 252), ("GLD", 252), ("BTC-USD", 365), ("TLT", 252)]
)
def test_real_data_against_independent_computation(symbol: str, periods: int) -> None:
    bars = real_bars(symbol)
    panel = factor_panel(bars, FactorConfig(), CAL).xs(symbol, level="symbol")
    expected = reference(bars, periods)
    for name in [
        "momentum_60",
        "momentum_120",
        "volatility_20",
        "volatility_60",
        "sma_20",
        "sma_50",
        "sma_200",
        "momentum_12_1",
    ]:
        np.testing.assert_allclose(panel[name].to_numpy(), expected[name], rtol=1e-12, err_msg=name)
    warm = 600  # Wilder smoothing forgets its start like (1 - 1/n)^t: < 1e-13 after 600 bars
    for name in ["rsi_14", "atr_14"]:
        np.testing.assert_allclose(
            panel[name].to_numpy()[warm:], expected[name][warm:], rtol=1e-8, err_msg=name
        )
    n = round(14 * periods / 252)
    assert panel["rsi_14"].iloc[:n].isna().all() and panel["rsi_14"].iloc[n:].notna().all()
    assert (
        panel["atr_14"].iloc[: n - 1].isna().all() and panel["atr_14"].iloc[n - 1 :].notna().all()
    )
    assert (panel["close"].to_numpy() == bars["adj_close"].fillna(bars["close"]).to_numpy()).all()


def test_atr_matches_pandas_ta() -> None:
    import pandas_ta as ta

    bars = real_bars("SPY")
    panel = factor_panel(bars, FactorConfig(), CAL).xs("SPY", level="symbol")
    k = (bars["adj_close"] / bars["close"]).reset_index(drop=True)
    atr = ta.atr(
        bars["high"].reset_index(drop=True) * k,
        bars["low"].reset_index(drop=True) * k,
        bars["adj_close"].reset_index(drop=True),
        length=14,
    )
    np.testing.assert_allclose(panel["atr_14"].to_numpy(), atr.to_numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- snapshots


def test_snapshot_takes_each_symbols_last_row_on_or_before_as_of() -> None:
    bars = pd.concat([bars_of("A", HAND, start="2024-01-01"), bars_of("BTC-USD", HAND, freq="D")])
    panel = factor_panel(bars, SMALL, CAL)
    # Saturday 2024-01-06: BTC-USD trades (its 6th day); A's last bar is Friday 2024-01-05.
    snap = factors_at(panel, date(2024, 1, 6))
    assert snap.bar_dates == {"A": date(2024, 1, 5), "BTC-USD": date(2024, 1, 6)}
    assert snap.history == {"A": 5, "BTC-USD": 6}
    assert snap.value("A", "close") == HAND[4]
    assert snap.value("BTC-USD", "close") == HAND[5]
    assert snap.periods_per_year == {"A": 252, "BTC-USD": 365}
    assert snap.symbols == ("A", "BTC-USD")
    # A has its 12-1 momentum (4 sessions back: needs 5 bars); BTC-USD's window spans the
    # same time, round(4 x 365 / 252) = 6 daily bars, so it needs 7 and has 6: only A ranks.
    assert snap.rank.to_dict() == {"A": 1.0}
    assert snap.missing_reason("BTC-USD", "momentum_12_1") == "needs 7 sessions of history, has 6"
    assert snap.value("BTC-USD", "momentum_12_1_rank") is None
    assert not snap.values["value"].isna().any()
    assert snap.wide().loc["A", "sma_3"] == pytest.approx(109.23)


def test_too_little_history_is_recorded_never_nan() -> None:
    long = real_bars("GLD")
    short = real_bars("SPY")
    short = short[short["date"] >= short["date"].iloc[-100]]  # its last 100 sessions
    panel = factor_panel(pd.concat([long, short]), FactorConfig(), CAL)
    snap = factors_at(panel, date(2020, 12, 31))
    assert isinstance(snap, FactorSnapshot)
    assert not snap.values["value"].isna().any()
    spy = snap.factors_of("SPY")
    assert {"close", "momentum_60", "volatility_60", "sma_50", "rsi_14", "atr_14"} <= set(spy)
    assert not {"momentum_120", "sma_200", "momentum_12_1", "momentum_12_1_rank"} & set(spy)
    reasons = snap.missing[snap.missing["symbol"] == "SPY"].set_index("factor")["reason"]
    assert reasons.to_dict() == {
        "momentum_120": "needs 121 sessions of history, has 100",
        "sma_200": "needs 200 sessions of history, has 100",
        "momentum_12_1": "needs 253 sessions of history, has 100",
        "momentum_12_1_rank": ("no momentum_12_1 to rank (needs 253 sessions of history, has 100)"),
    }
    assert snap.missing_reason("SPY", "sma_200") == "needs 200 sessions of history, has 100"
    assert snap.missing[snap.missing["symbol"] == "GLD"].empty
    assert snap.rank.to_dict() == {"GLD": 1.0}  # the only ranked symbol


def test_reasons_survive_lost_attrs_and_undefined_values() -> None:
    flat = bars_of("A", [100.0] * 6)  # flat prices: RSI is 0/0
    panel = factor_panel(flat, SMALL, CAL)
    assert panel.attrs[MIN_HISTORY_ATTR]["momentum_12_1"] == 5
    snap = factors_at(panel, date(2024, 1, 8))
    assert snap.missing_reason("A", "rsi_2") is not None
    assert "undefined on 2024-01-08" in (snap.missing_reason("A", "rsi_2") or "")
    stripped = panel.copy()
    stripped.attrs = {}
    early = factors_at(stripped, date(2024, 1, 2))  # 2 bars
    assert early.missing_reason("A", "sma_3") == "needs 3 sessions of history, has 2"


def test_nothing_after_as_of_is_read() -> None:
    bars = real_bars("SPY")
    as_of = date(2019, 6, 28)
    full = factors_at(factor_panel(bars, FactorConfig(), CAL), as_of)
    cut = factors_at(
        factor_panel(bars[bars["date"] <= pd.Timestamp(as_of)], FactorConfig(), CAL), as_of
    )
    pd.testing.assert_frame_equal(full.values, cut.values, check_exact=True)
    assert full.bar_dates == cut.bar_dates == {"SPY": as_of}


def test_a_window_spans_the_same_time_on_every_calendar() -> None:
    """12-1 momentum: 252 XNYS sessions back for SPY, 365 daily bars back for BTC-USD --
    the same year, within a few days (it was 252 daily bars, about 8 months, ranked
    against the ETFs' 12 months: BTC-USD came first on 2021-06-01 with +283%)."""
    end = date(2023, 12, 31)
    bars = pd.concat([real_bars("SPY", end=end), real_bars("BTC-USD", end=end)])
    panel = factor_panel(bars, FactorConfig(), CAL)
    for day in (date(2019, 3, 1), date(2021, 6, 1), date(2023, 11, 15)):
        spans = {}
        for symbol, periods in (("SPY", 252), ("BTC-USD", 365)):
            rows = panel.xs(symbol, level="symbol").loc[: pd.Timestamp(day)]
            price = rows["close"]
            n = round(252 * periods / 252)
            spans[symbol] = (price.index[-1] - price.index[-1 - n]).days
            year = price.iloc[-1] / price.iloc[-1 - n] - 1
            month = price.iloc[-1] / price.iloc[-1 - round(21 * periods / 252)] - 1
            assert rows["momentum_12_1"].iloc[-1] == pytest.approx(year - month, rel=1e-12)
        assert spans["BTC-USD"] == 365
        assert abs(spans["SPY"] - spans["BTC-USD"]) <= 5, spans
    # BTC-USD's 12-1 momentum on 2021-06-01 over a year, not 8 months
    btc = panel.xs("BTC-USD", level="symbol").loc[pd.Timestamp("2021-06-01")]
    raw = real_bars("BTC-USD", end=end).set_index("date")["adj_close"]
    year = raw[pd.Timestamp("2021-06-01")] / raw[pd.Timestamp("2020-06-01")] - 1
    month = raw[pd.Timestamp("2021-06-01")] / raw[pd.Timestamp("2021-05-02")] - 1
    assert btc["momentum_12_1"] == pytest.approx(year - month, rel=1e-12)
