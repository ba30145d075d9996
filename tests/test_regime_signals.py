"""Regime (SPEC stage 4) and signals (stage 5): boundaries, every rule, the regime
filter, the cross-sectional rule, the March 2020 real-data case, and no look-ahead."""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import date
from functools import cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import MARKET
from tiller.calendars import sessions
from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import CsvProvider
from tiller.domain import Regime, Signal, SignalType
from tiller.settings import FactorConfig, RegimeConfig, SignalConfig
from tiller.strategy.factors import FactorSnapshot, factor_panel, factors_at
from tiller.strategy.regime import RegimeReading, classify_regime, regime_at
from tiller.strategy.signals import generate_signals, momentum_horizon

REGIME = RegimeConfig()
SIGNALS = SignalConfig()

# --------------------------------------------------------------------------- regime


@pytest.mark.parametrize(
    ("vix", "expected"),
    [
        (0.0, Regime.NORMAL),
        (12.0, Regime.NORMAL),
        (19.99, Regime.NORMAL),
        (20.0, Regime.ELEVATED),
        (29.99, Regime.ELEVATED),
        (30.0, Regime.HIGH_VOL),
        (39.99, Regime.HIGH_VOL),
        (40.0, Regime.EXTREME),
        (82.69, Regime.EXTREME),
    ],
)
def test_regime_boundaries(vix: float, expected: Regime) -> None:
    assert classify_regime(vix, REGIME) is expected


def test_regime_thresholds_come_from_config() -> None:
    config = RegimeConfig(elevated=15, high_vol=25, extreme=35)
    assert classify_regime(14.99, config) is Regime.NORMAL
    assert classify_regime(15, config) is Regime.ELEVATED
    assert classify_regime(25, config) is Regime.HIGH_VOL
    assert classify_regime(35, config) is Regime.EXTREME


@pytest.mark.parametrize("vix", [math.nan, math.inf, -1.0])
def test_regime_refuses_nonsense(vix: float) -> None:
    with pytest.raises(ValueError, match="VIX must be"):
        classify_regime(vix, REGIME)


def vix_frame(rows: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"date": pd.to_datetime(list(rows)), "close": list(rows.values())})


def test_regime_at_uses_the_last_close_on_or_before_as_of() -> None:
    vix = vix_frame(
        {"2024-01-04": 19.0, "2024-01-05": 31.0, "2024-01-08": math.nan, "2024-01-09": 45.0}
    )
    saturday = regime_at(vix, date(2024, 1, 6), REGIME)
    assert saturday == RegimeReading(
        Regime.HIGH_VOL, 31.0, date(2024, 1, 5), "VIX 31.00 on 2024-01-05 in [30, 40): HIGH_VOL"
    )
    # 2024-01-08 has no close: the reading falls back to Friday's.
    assert regime_at(vix, date(2024, 1, 8), REGIME).vix_date == date(2024, 1, 5)
    assert regime_at(vix, date(2024, 1, 9), REGIME).regime is Regime.EXTREME
    assert regime_at(vix, date(2024, 1, 4), REGIME).regime is Regime.NORMAL


def test_regime_at_without_a_close_is_a_clear_error() -> None:
    vix = vix_frame({"2024-01-04": 19.0})
    with pytest.raises(ValueError, match=r"no VIX close on or before 2024-01-03 .*starts on 2024"):
        regime_at(vix, date(2024, 1, 3), REGIME)
    with pytest.raises(ValueError, match="no closes at all"):
        regime_at(vix.iloc[:0], date(2024, 1, 3), REGIME)
    with pytest.raises(ValueError, match="need columns date and close"):
        regime_at(vix.rename(columns={"close": "value"}), date(2024, 1, 5), REGIME)


# --------------------------------------------------------------------------- constructed snapshots


def snapshot(
    rows: dict[str, dict[str, float]],
    periods: dict[str, int] | None = None,
    missing: Sequence[tuple[str, str, str]] = (),
) -> FactorSnapshot:
    """A snapshot from per-symbol factors; momentum_12_1_rank from momentum_12_1 if given."""
    long = [(s, f, float(v)) for s, factors in rows.items() for f, v in factors.items()]
    values = pd.DataFrame(long, columns=["symbol", "factor", "value"])
    m121 = values[values["factor"] == "momentum_12_1"]
    if len(m121):
        ranks = m121.assign(factor="momentum_12_1_rank", value=m121["value"].rank(pct=True))
        values = pd.concat([values, ranks], ignore_index=True)
    return FactorSnapshot(
        as_of=date(2024, 6, 3),
        values=values,
        missing=pd.DataFrame(list(missing), columns=["symbol", "factor", "reason"]),
        bar_dates={s: date(2024, 6, 3) for s in rows},
        history={s: 300 for s in rows},
        periods_per_year=periods or {s: 252 for s in rows},
    )


def asset(momentum: float, close: float, sma20: float, sma50: float, sma200: float, **extra):
    return {
        "momentum_60": momentum,
        "close": close,
        "sma_20": sma20,
        "sma_50": sma50,
        "sma_200": sma200,
        "volatility_20": 0.5,  # ignored: the longest window (volatility_60) is used
        "volatility_60": 0.20,
        **extra,
    }


def reading(vix: float) -> RegimeReading:
    regime = classify_regime(vix, REGIME)
    return RegimeReading(regime, vix, date(2024, 6, 3), f"VIX {vix}")


def one(factors: dict[str, float], vix: float = 15.0, config: SignalConfig = SIGNALS) -> Signal:
    (signal,) = generate_signals(snapshot({"X": factors}), reading(vix), config)
    return signal


# sigma_60 = volatility_60 * sqrt(60 / 252) = 0.20 * 0.48795 = 0.097590
SIGMA = 0.20 * math.sqrt(60 / 252)


def test_strong_buy() -> None:
    s = one(asset(0.15, 110, 105, 100, 90))
    assert s.signal is SignalType.STRONG_BUY
    # e = 0.15 - 0.02 (entry threshold) = 0.13; z = 0.13 / 0.097590 = 1.3321;
    # confidence = 0.5 + 0.25 * 1.3321 = 0.8330
    assert s.confidence == pytest.approx(0.5 + 0.25 * 0.13 / SIGMA, rel=1e-12)
    assert s.confidence == pytest.approx(0.8330, abs=1e-4)
    assert s.reason.startswith(
        "STRONG_BUY: momentum_60 +15.0% > +10.0%, close 110.00 > SMA50 100.00 and > SMA200 "
        "90.00, VIX 15.00 < 30; confidence 0.83"
    )


def test_strong_buy_needs_vix_below_its_maximum() -> None:
    s = one(asset(0.15, 110, 105, 100, 90), vix=26.0, config=SignalConfig(strong_buy_max_vix=25))
    assert s.signal is SignalType.BUY
    assert "(not STRONG_BUY: VIX 26.00 >= 25)" in s.reason


def test_buy() -> None:
    s = one(asset(0.05, 101, 100, 99, 120))  # below SMA200: not strong, momentum only +5%
    assert s.signal is SignalType.BUY
    # e = 0.05 - 0.02 = 0.03; z = 0.03 / 0.097590 = 0.3074; confidence = 0.5769
    assert s.confidence == pytest.approx(0.5769, abs=1e-4)
    assert s.reason.startswith(
        "BUY: momentum_60 +5.0% > +2.0% and close 101.00 > SMA20 100.00; confidence 0.58"
    )


def test_sell_on_momentum() -> None:
    s = one(asset(-0.05, 101, 100, 99, 95))
    assert s.signal is SignalType.SELL
    # e = -0.02 - (-0.05) = 0.03 -> the same 0.5769 as the BUY above
    assert s.confidence == pytest.approx(0.5769, abs=1e-4)
    assert s.reason.startswith("SELL: momentum_60 -5.0% < -2.0%")


def test_sell_on_price_beats_buy() -> None:
    # momentum +5% and close above SMA20 (a BUY) but below SMA50 (a SELL): SELL wins.
    s = one(asset(0.05, 99, 98, 100, 90))
    assert s.signal is SignalType.SELL
    # e = -0.02 - 0.05 = -0.07; z = -0.7173; confidence = 0.5 - 0.1793 = 0.3207
    assert s.confidence == pytest.approx(0.3207, abs=1e-4)
    assert s.reason.startswith(
        "SELL: close 99.00 < SMA50 100.00 (momentum +5.0% is not below -2.0%)"
    )


def test_strong_sell() -> None:
    s = one(asset(-0.15, 80, 85, 88, 90))
    assert s.signal is SignalType.STRONG_SELL
    assert s.confidence == pytest.approx(0.8330, abs=1e-4)
    assert s.reason.startswith("STRONG_SELL: momentum_60 -15.0% < -10.0% and close 80.00 < SMA200")
    # Deep negative momentum above SMA200 is only a SELL.
    assert one(asset(-0.15, 95, 96, 97, 90)).signal is SignalType.SELL


def test_hold_and_strict_thresholds() -> None:
    s = one(asset(0.01, 101, 100, 99, 90))
    assert (s.signal, s.confidence) == (SignalType.HOLD, 0.5)
    assert s.reason.startswith("HOLD: no rule fired (momentum_60 +1.0%")
    assert one(asset(0.02, 101, 100, 99, 90)).signal is SignalType.HOLD  # not > +2%
    assert one(asset(0.05, 100, 100, 99, 90)).signal is SignalType.HOLD  # close = SMA20


def test_confidence_is_clipped() -> None:
    assert one(asset(0.90, 110, 105, 100, 90)).confidence == 1.0
    assert one(asset(0.90, 99, 98, 100, 90)).confidence == 0.0  # SELL against +90% momentum


def test_confidence_spans_the_same_time_on_every_calendar() -> None:
    # momentum_60 spans 60 XNYS sessions = 60 / 252 of a year on every calendar (a 24/7
    # asset's window is 87 daily bars), so the horizon's sd uses 252 for BTC-USD too:
    # sigma = 0.20 * sqrt(60 / 252) = 0.097590; z = 0.03 / 0.097590 = 0.3074 -> 0.5769
    factors = asset(0.05, 101, 100, 99, 120)
    snap = snapshot({"BTC-USD": factors}, periods={"BTC-USD": 365})
    (s,) = generate_signals(snap, reading(15), SIGNALS)
    assert s.confidence == pytest.approx(0.5 + 0.25 * 0.03 / (0.2 * math.sqrt(60 / 252)))


def test_missing_factors_give_hold_with_reason() -> None:
    factors = asset(0.15, 110, 105, 100, 90)
    del factors["sma_200"]
    snap = snapshot(
        {"X": factors}, missing=[("X", "sma_200", "needs 200 sessions of history, has 120")]
    )
    (s,) = generate_signals(snap, reading(15), SIGNALS)
    assert (s.signal, s.confidence, s.long_eligible) == (SignalType.HOLD, 0.0, False)
    assert s.reason.startswith("HOLD: missing sma_200 (needs 200 sessions of history, has 120)")


def test_high_vol_halves_confidence() -> None:
    calm = one(asset(0.05, 101, 100, 99, 120), vix=15)
    stressed = one(asset(0.05, 101, 100, 99, 120), vix=35)
    assert stressed.signal is SignalType.BUY
    assert stressed.confidence == pytest.approx(calm.confidence * 0.5, rel=1e-12)
    assert "HIGH_VOL regime (VIX 35.00): confidence x0.5 -> 0.29" in stressed.reason
    assert one(asset(0.01, 101, 100, 99, 90), vix=35).confidence == 0.25  # neutral HOLD halved


def test_extreme_allows_no_buys() -> None:
    config = SignalConfig(strong_buy_max_vix=100)  # so a STRONG_BUY could fire at VIX 45
    assert one(asset(0.15, 110, 105, 100, 90), vix=15, config=config).signal.is_buy
    strong = one(asset(0.15, 110, 105, 100, 90), vix=45, config=config)
    buy = one(asset(0.05, 101, 100, 99, 120), vix=45)
    for s, was in [(strong, "STRONG_BUY"), (buy, "BUY")]:
        assert (s.signal, s.confidence) == (SignalType.HOLD, 0.5)
        assert s.reason.startswith(
            f"HOLD: EXTREME regime (VIX 45.00) allows no buys; the rule said {was}:"
        )
    sell = one(asset(-0.15, 80, 85, 88, 90), vix=45)
    assert sell.signal is SignalType.STRONG_SELL and sell.confidence == pytest.approx(
        0.8330, abs=1e-4
    )


# --------------------------------------------------------------------------- cross-section


def ranked_universe(below_sma200: AbstractSet[str] = frozenset(), n: int = 10) -> dict[str, dict]:
    """S0..S{n-1} with 12-1 momentum 0.01 * i (S{n-1} strongest), all HOLD-ish."""
    rows = {}
    for i in range(n):
        symbol = f"S{i}"
        sma200 = 150.0 if symbol in below_sma200 else 90.0
        rows[symbol] = asset(0.01, 101, 100, 99, sma200, momentum_12_1=0.01 * i)
    return rows


def test_top_and_bottom_thirty_percent() -> None:
    signals = {
        s.symbol: s
        for s in generate_signals(snapshot(ranked_universe({"S8"})), reading(15), SIGNALS)
    }
    # N = 10: top ceil(0.3 * 10) = 3 (S9, S8, S7), bottom floor(0.3 * 10) = 3 (S0, S1, S2).
    assert {s for s, sig in signals.items() if sig.long_eligible} == {"S9", "S7"}
    assert (
        "top 30% by 12-1 momentum (rank 1.00) and above SMA200 90.00: long-eligible"
        in signals["S9"].reason
    )
    assert "(rank 0.90) but close 101.00 not above SMA200 150.00" in signals["S8"].reason
    for symbol in ["S0", "S1", "S2"]:
        assert "bottom 30%: avoided" in signals[symbol].reason
        assert signals[symbol].signal is SignalType.HOLD  # avoided, never shorted
    for symbol in ["S3", "S4", "S5", "S6"]:
        assert "middle of the 12-1 momentum ranking" in signals[symbol].reason
        assert not signals[symbol].long_eligible


def test_small_universes() -> None:
    rows = ranked_universe(n=4)
    signals = generate_signals(snapshot(rows), reading(15), SIGNALS)
    # N = 4: top ceil(1.2) = 2 (S3, S2), bottom floor(1.2) = 1 (S0)
    assert [s.long_eligible for s in signals] == [False, False, True, True]
    assert "bottom 30%: avoided" in signals[0].reason and "middle" in signals[1].reason
    (single,) = generate_signals(snapshot(ranked_universe(n=1)), reading(15), SIGNALS)
    assert single.long_eligible  # at least one in the top group, none in the bottom


def test_unranked_symbols_are_not_eligible() -> None:
    rows = ranked_universe(n=3)
    rows["NEW"] = asset(0.05, 101, 100, 99, 90)
    snap = snapshot(
        rows, missing=[("NEW", "momentum_12_1", "needs 253 sessions of history, has 220")]
    )
    new = next(s for s in generate_signals(snap, reading(15), SIGNALS) if s.symbol == "NEW")
    assert new.signal is SignalType.BUY and not new.long_eligible
    assert (
        "no 12-1 momentum rank (momentum_12_1 needs 253 sessions of history, has 220)" in new.reason
    )


def test_defensive_mode() -> None:
    rows = ranked_universe({"S9", "S8"})
    rows["GLD"] = asset(0.01, 101, 100, 99, 150, momentum_12_1=-0.5)  # bottom, below SMA200
    rows["TLT"] = asset(0.01, 101, 100, 99, 90, momentum_12_1=0.045)  # middle
    # N = 12: top ceil(3.6) = 4 (S9, S8, S7, S6); S9 and S8 below SMA200 -> 2/4 = 50%,
    # not more than 50%: not defensive, S7 and S6 are long-eligible.
    signals = {s.symbol: s for s in generate_signals(snapshot(rows), reading(15), SIGNALS)}
    assert {s for s, sig in signals.items() if sig.long_eligible} == {"S7", "S6"}
    assert not any("defensive" in sig.reason for sig in signals.values())
    rows["S7"] = asset(0.01, 101, 100, 99, 150, momentum_12_1=0.07)  # now 3 of 4 below
    signals = {s.symbol: s for s in generate_signals(snapshot(rows), reading(15), SIGNALS)}
    assert {s for s, sig in signals.items() if sig.long_eligible} == {"GLD", "TLT"}
    assert signals["GLD"].reason.endswith(
        "defensive mode: 3 of 4 top 30% assets by 12-1 momentum (S9, S8, S7) not above SMA200 "
        "(> 50%); GLD is defensive: long-eligible"
    )
    assert "only defensive assets (GLD, TLT) long-eligible" in signals["S6"].reason
    del rows["TLT"]
    signals = {s.symbol: s for s in generate_signals(snapshot(rows), reading(15), SIGNALS)}
    assert {s for s, sig in signals.items() if sig.long_eligible} == {"GLD"}


def test_exactly_half_below_is_not_defensive() -> None:
    rows = ranked_universe({"S3"}, n=4)  # top 2 = S3 (below), S2 (above): 50%
    signals = generate_signals(snapshot(rows), reading(15), SIGNALS)
    assert [s.long_eligible for s in signals] == [False, False, True, False]
    assert not any("defensive" in s.reason for s in signals)


def test_momentum_horizon() -> None:
    assert momentum_horizon("momentum_60") == 60
    assert momentum_horizon("momentum_12_1") == 231
    with pytest.raises(ValueError, match="not a momentum factor"):
        momentum_horizon("sma_20")


# --------------------------------------------------------------------------- real data


@cache
def market(symbols: tuple[str, ...], start: date, end: date) -> pd.DataFrame:
    provider = CsvProvider(MARKET)
    return pd.concat(
        [
            provider.fetch(SeriesRequest(s, SeriesKind.BAR, start, end)).assign(symbol=s)
            for s in symbols
        ],
        ignore_index=True,
    )


ETFS = ("GLD", "SPY", "QQQ", "TLT", "TIP", "XLE", "EFA", "VNQ")


def test_march_2020_is_extreme_and_never_a_buy() -> None:
    bars = market(ETFS, date(2018, 6, 1), date(2020, 6, 30))  # rows after as_of are ignored
    vix = market(("VIX",), date(2020, 1, 1), date(2020, 6, 30))
    panel = factor_panel(bars, FactorConfig(), {s: "XNYS" for s in ETFS})
    days = sessions("XNYS", date(2020, 3, 16), date(2020, 3, 23))
    assert len(days) == 6
    turned = 0
    for day in days:
        as_of = day.date()
        reading_ = regime_at(vix, as_of, REGIME)
        assert reading_.regime is Regime.EXTREME and reading_.vix_date == as_of
        assert reading_.vix > 60
        signals = generate_signals(factors_at(panel, as_of), reading_, SIGNALS)
        assert [s.symbol for s in signals] == sorted(ETFS)
        assert not any(s.signal.is_buy for s in signals)
        assert all(0 <= s.confidence <= 1 for s in signals)
        turned += sum("allows no buys" in s.reason for s in signals)
    assert turned > 0  # some assets (TLT on 2020-03-16) would have been buys


# --------------------------------------------------------------------------- no look-ahead

_SYMBOLS = {"A": "XNYS", "B": "XNYS", "C": "24/7", "GLD": "XNYS"}
_ROWS = 230
_LOOKAHEAD_FACTORS = FactorConfig(momentum_long=30, momentum_skip=5)


def _synthetic(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = []
    for i, symbol in enumerate(_SYMBOLS):
        rows = _ROWS - 40 * (i == 1)  # B starts later: fewer sessions, some factors missing
        close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, rows)))
        spread = np.abs(rng.normal(0, 0.01, rows)) * close
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "date": pd.bdate_range(end="2024-12-31", periods=rows),
                    "open": close,
                    "high": close + spread,
                    "low": close - spread,
                    "close": close,
                    "adj_close": close * (0.98 if i == 0 else np.nan),
                    "volume": 1e6,
                }
            )
        )
    dates = pd.bdate_range(end="2024-12-31", periods=_ROWS)
    vix = pd.DataFrame({"date": dates, "close": 15 + 30 * rng.random(_ROWS)})
    return pd.concat(frames, ignore_index=True), vix


def _decisions(bars: pd.DataFrame, vix: pd.DataFrame, as_of: date):
    snap = factors_at(factor_panel(bars, _LOOKAHEAD_FACTORS, _SYMBOLS), as_of)
    reading_ = regime_at(vix, as_of, REGIME)
    return snap, reading_, generate_signals(snap, reading_, SIGNALS)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    cut=st.integers(150, _ROWS - 2),
    shock=st.floats(0.3, 3.0),
)
def test_no_look_ahead(seed: int, cut: int, shock: float) -> None:
    bars, vix = _synthetic(seed)
    as_of = pd.bdate_range(end="2024-12-31", periods=_ROWS)[cut].date()
    after = bars["date"] > pd.Timestamp(as_of)
    altered = bars.copy()
    for column in ["open", "high", "low", "close", "adj_close"]:
        altered.loc[after, column] *= shock
    altered_vix = vix.assign(close=vix["close"].where(vix["date"] <= pd.Timestamp(as_of), 80.0))

    snap, reading_, signals = _decisions(bars, vix, as_of)
    snap2, reading2, signals2 = _decisions(altered, altered_vix, as_of)
    pd.testing.assert_frame_equal(snap.values, snap2.values, check_exact=True)
    pd.testing.assert_frame_equal(snap.missing, snap2.missing, check_exact=True)
    assert reading_ == reading2
    assert signals == signals2
    assert not snap.values["value"].isna().any()
