"""An offline, seeded, deterministic market for demos and tests.

The market is simulated once per seed over a fixed horizon (2000-01-01 to
2040-12-31, every calendar day), so a series' values never depend on which
window is requested or which other symbols are in the universe: incremental
ingest sees exactly the prices a full reload would.

Model
-----
* A four-state volatility regime (calm 0.7x, normal 1x, stressed 1.8x,
  crisis 3x) follows a persistent Markov chain; rare crash days (probability
  ``CRASH_PROBABILITY`` per day) push the regime to crisis and shock equities
  by -4% to -10%.
* Seven factors (equity, rates, gold, commodities, international, real
  estate, crypto) with a fixed correlation matrix and Student-t (df=4)
  innovations scaled to unit variance: fat tails.  Daily factor volatility is
  ``annual_vol / sqrt(252)`` times the regime multiplier; traditional factors
  move at 20% of that on days the exchange is closed.
* Each asset is a loading on the factors plus its own Student-t noise (seeded
  from the symbol, so adding a symbol never changes another).  A session's
  close compounds every calendar-day log return since the previous session.
* VIX tracks annualised equity volatility (``~1.1 x 100 x sigma_E x sqrt(252)``
  + 2), reacts to large equity moves and is smoothed: it rises with equity
  volatility and spikes in crashes.
* Macro series: 10y/2y/3m yields and the 10y-2y spread on business days
  (empty on exchange holidays, like FRED), monthly fed funds and CPI.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

from tiller import calendars
from tiller.data.base import (
    ProviderError,
    ProviderErrorKind,
    SeriesKind,
    SeriesRequest,
    canonical,
)

HORIZON_START = date(2000, 1, 1)
HORIZON_END = date(2040, 12, 31)
TRADING_DAYS = 252
CRASH_PROBABILITY = 1 / 900

FACTORS = ("equity", "rates", "gold", "commodity", "intl", "reit", "crypto")
# Annualised factor volatility and drift (log terms).
FACTOR_VOL = np.array([0.15, 0.12, 0.15, 0.18, 0.08, 0.10, 0.65])
FACTOR_DRIFT = np.array([0.07, 0.025, 0.045, 0.02, 0.0, 0.01, 0.55])
FACTOR_CORR = np.array(
    [
        # eq    rates gold  comm  intl  reit  crypto
        [1.00, -0.30, 0.05, 0.30, 0.00, 0.00, 0.25],
        [-0.30, 1.00, 0.25, -0.10, 0.00, 0.00, -0.05],
        [0.05, 0.25, 1.00, 0.30, 0.00, 0.00, 0.10],
        [0.30, -0.10, 0.30, 1.00, 0.00, 0.00, 0.10],
        [0.00, 0.00, 0.00, 0.00, 1.00, 0.00, 0.00],
        [0.00, 0.00, 0.00, 0.00, 0.00, 1.00, 0.00],
        [0.25, -0.05, 0.10, 0.10, 0.00, 0.00, 1.00],
    ]
)
REGIME_MULTIPLIER = np.array([0.7, 1.0, 1.8, 3.0])
REGIME_TRANSITIONS = np.array(
    [
        [0.995, 0.005, 0.000, 0.000],
        [0.004, 0.993, 0.003, 0.000],
        [0.000, 0.020, 0.975, 0.005],
        [0.000, 0.000, 0.040, 0.960],
    ]
)
MACRO_SERIES = ("DGS10", "DGS2", "DGS3MO", "T10Y2Y", "FEDFUNDS", "CPIAUCSL")


@dataclass(frozen=True)
class AssetProfile:
    """Factor loadings (same order as :data:`FACTORS`), idiosyncratic vol and start price."""

    loadings: tuple[float, ...]
    idio_vol: float
    start_price: float
    volume: float


PROFILES: dict[str, AssetProfile] = {
    "SPY": AssetProfile((1.0, 0, 0, 0, 0, 0, 0), 0.02, 140.0, 8e7),
    "QQQ": AssetProfile((1.2, 0, 0, 0, 0, 0, 0), 0.07, 90.0, 5e7),
    "GLD": AssetProfile((0, 0, 1.0, 0, 0, 0, 0), 0.02, 45.0, 1e7),
    "SLV": AssetProfile((0, 0, 1.3, 0.3, 0, 0, 0), 0.15, 6.0, 2e7),
    "XLK": AssetProfile((1.15, 0, 0, 0, 0, 0, 0), 0.08, 50.0, 9e6),
    "XLF": AssetProfile((1.1, -0.2, 0, 0, 0, 0, 0), 0.10, 22.0, 4e7),
    "XLE": AssetProfile((0.8, 0, 0, 0.8, 0, 0, 0), 0.12, 30.0, 2e7),
    "XLV": AssetProfile((0.7, 0, 0, 0, 0, 0, 0), 0.08, 28.0, 8e6),
    "TLT": AssetProfile((0, 1.0, 0, 0, 0, 0, 0), 0.02, 85.0, 1e7),
    "TIP": AssetProfile((0, 0.4, 0.1, 0, 0, 0, 0), 0.03, 95.0, 1e6),
    "EFA": AssetProfile((0.9, 0, 0, 0, 1.0, 0, 0), 0.04, 45.0, 2e7),
    "EEM": AssetProfile((1.0, 0, 0, 0.2, 1.3, 0, 0), 0.08, 25.0, 4e7),
    "DBC": AssetProfile((0, 0, 0, 1.0, 0, 0, 0), 0.05, 24.0, 2e6),
    "VNQ": AssetProfile((0.9, 0.4, 0, 0, 0, 1.0, 0), 0.06, 40.0, 5e6),
    "BTC-USD": AssetProfile((0.3, 0, 0, 0, 0, 0, 1.0), 0.10, 300.0, 2e10),
}


def _profile(symbol: str) -> AssetProfile:
    """The profile of ``symbol``; unknown symbols get an equity-like one seeded from the name."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    h = zlib.crc32(symbol.encode())
    beta = 0.6 + (h % 80) / 100.0  # 0.6 .. 1.39
    return AssetProfile((beta, 0, 0, 0, 0, 0, 0), 0.15 + (h % 20) / 100.0, 10.0 + h % 190, 5e6)


def _student_t(rng: np.random.Generator, shape: tuple[int, ...], df: float = 4.0) -> np.ndarray:
    """Student-t draws scaled to unit variance (variance of t_df is df / (df - 2))."""
    return rng.standard_t(df, size=shape) / np.sqrt(df / (df - 2.0))


@dataclass(frozen=True)
class _Market:
    days: pd.DatetimeIndex  # every calendar day of the horizon
    regime: np.ndarray  # state index per day
    factor_returns: np.ndarray  # (days, factors) daily log returns
    open_mask: np.ndarray  # XNYS open on that day
    vix: np.ndarray


@lru_cache(maxsize=4)
def _market(seed: int) -> _Market:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    days = pd.date_range(HORIZON_START, HORIZON_END, freq="D")
    n = len(days)
    open_days = calendars.sessions("XNYS", HORIZON_START, HORIZON_END)
    open_mask = days.isin(open_days)

    uniforms = rng.random(n)
    crash = (rng.random(n) < CRASH_PROBABILITY) & open_mask
    crash_size = rng.uniform(0.04, 0.10, n)
    cumulative = np.cumsum(REGIME_TRANSITIONS, axis=1)
    regime = np.empty(n, dtype=np.int8)
    state = 1
    for i in range(n):  # a 15k-step Markov chain: cheap, and sequential by nature
        state = 3 if crash[i] else int(np.searchsorted(cumulative[state], uniforms[i]))
        regime[i] = min(state, 3)
    multiplier = REGIME_MULTIPLIER[regime]

    shocks = _student_t(rng, (n, len(FACTORS))) @ np.linalg.cholesky(FACTOR_CORR).T
    daily_vol = FACTOR_VOL / np.sqrt(TRADING_DAYS)
    scale = np.outer(multiplier, daily_vol)
    closed = ~open_mask
    scale[closed, :6] *= 0.2  # traditional markets barely move while closed
    drift = np.tile(FACTOR_DRIFT / TRADING_DAYS, (n, 1))
    drift[closed, :6] = 0.0
    drift[:, 6] = FACTOR_DRIFT[6] / 365.0  # crypto trades every day
    scale[:, 6] = multiplier * FACTOR_VOL[6] / np.sqrt(365.0)
    returns = drift - 0.5 * scale**2 + scale * shocks
    returns[crash, 0] -= crash_size[crash]
    returns[crash, 4] -= 0.5 * crash_size[crash]
    returns[crash, 6] -= 1.5 * crash_size[crash]

    # VIX: implied vol ~ 1.1 x annualised equity vol + 2, plus reaction to big moves.
    equity_vol = multiplier * FACTOR_VOL[0] * 100.0
    surprise = np.abs(shocks[:, 0]) - 0.8
    target = 2.0 + 1.1 * equity_vol * np.exp(0.15 * surprise) + 25.0 * crash
    vix = np.empty(n)
    level = target[0]
    alpha = 1 - np.exp(np.log(0.5) / 4.0)  # 4-day half-life
    noise = np.exp(0.04 * rng.standard_normal(n))
    for i in range(n):
        level = level + alpha * (target[i] - level) if open_mask[i] else level
        vix[i] = max(level * noise[i], 8.0)
    return _Market(days, regime, returns, open_mask, vix)


@lru_cache(maxsize=256)
def _asset_series(seed: int, symbol: str) -> pd.DataFrame:
    """Full-horizon daily bars of ``symbol`` on its own calendar."""
    market = _market(seed)
    profile = _profile(symbol)
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(symbol.encode())]))
    n = len(market.days)
    crypto = profile.loadings[6] > 0
    multiplier = REGIME_MULTIPLIER[market.regime]
    idio_daily = profile.idio_vol / np.sqrt(365.0 if crypto else TRADING_DAYS)
    idio_scale = idio_daily * np.sqrt(multiplier)
    if not crypto:
        idio_scale = np.where(market.open_mask, idio_scale, 0.2 * idio_scale)
    log_ret = market.factor_returns @ np.asarray(profile.loadings)
    log_ret += idio_scale * _student_t(rng, (n,)) - 0.5 * idio_scale**2
    cum = np.cumsum(log_ret)
    calendar = "24/7" if crypto else "XNYS"
    on = market.days.isin(calendars.sessions(calendar, HORIZON_START, HORIZON_END))
    close = profile.start_price * np.exp(cum[on])
    prev_close = np.concatenate([[profile.start_price], close[:-1]])
    session_ret = np.log(close / prev_close)
    session_vol = np.abs(market.factor_returns[on] @ np.asarray(profile.loadings)) + idio_scale[on]
    gap = 0.3 * session_ret + 0.2 * session_vol * rng.standard_normal(on.sum())
    open_ = prev_close * np.exp(gap)
    wick = np.abs(rng.standard_normal((on.sum(), 2))) * (0.6 * session_vol[:, None] + 0.002)
    high = np.maximum(open_, close) * np.exp(wick[:, 0])
    low = np.minimum(open_, close) * np.exp(-wick[:, 1])
    volume = profile.volume * np.exp(
        0.3 * rng.standard_normal(on.sum()) + 0.5 * np.log(multiplier[on])
    )
    frame = pd.DataFrame(
        {
            "date": market.days[on],
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "adj_close": close,
            "volume": np.round(volume),
        }
    )
    return frame.round({"open": 4, "high": 4, "low": 4, "close": 4, "adj_close": 4})


@lru_cache(maxsize=4)
def _vix_series(seed: int) -> pd.DataFrame:
    market = _market(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    on = market.open_mask
    close = market.vix[on]
    prev = np.concatenate([[close[0]], close[:-1]])
    open_ = prev * np.exp(0.03 * rng.standard_normal(on.sum()))
    wick = np.abs(rng.standard_normal((on.sum(), 2))) * 0.03
    frame = pd.DataFrame(
        {
            "date": market.days[on],
            "open": open_,
            "high": np.maximum(open_, close) * np.exp(wick[:, 0]),
            "low": np.minimum(open_, close) * np.exp(-wick[:, 1]),
            "close": close,
            "adj_close": np.nan,
            "volume": np.nan,
        }
    )
    return frame.round({"open": 2, "high": 2, "low": 2, "close": 2})


@lru_cache(maxsize=4)
def _macro(seed: int) -> dict[str, pd.DataFrame]:
    market = _market(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    business = market.days[market.days.dayofweek < 5]
    is_open = market.days.isin(business)
    rates_ret = market.factor_returns[is_open, 1]
    n = len(business)
    ten = np.empty(n)
    spread = np.empty(n)
    level, curve = 4.0, 0.8
    eps = rng.standard_normal((n, 2))
    for i in range(n):  # Ornstein-Uhlenbeck around 3.5% (10y) and 0.8 pt (10y-2y)
        level += 0.002 * (3.5 - level) - rates_ret[i] * 100.0 / 17.0 * 0.9 + 0.01 * eps[i, 0]
        curve += 0.003 * (0.8 - curve) + 0.02 * eps[i, 1]
        ten[i] = max(level, 0.2)
        spread[i] = curve
    holiday = ~business.isin(calendars.sessions("XNYS", HORIZON_START, HORIZON_END))
    two = np.maximum(ten - spread, 0.05)
    three_month = np.maximum(two - 0.3 + 0.1 * np.sin(np.arange(n) / 400.0), 0.01)

    def daily(values: np.ndarray, digits: int = 2) -> pd.DataFrame:
        out = pd.DataFrame({"date": business, "value": np.round(values, digits)})
        out.loc[holiday, "value"] = np.nan
        return out

    months = pd.date_range(HORIZON_START, HORIZON_END, freq="MS")
    month_index = np.clip(business.searchsorted(months), 0, n - 1)
    cpi = 170.0 * np.exp(np.cumsum(0.002 + 0.002 * rng.standard_normal(len(months))))
    return {
        "DGS10": daily(ten),
        "DGS2": daily(two),
        "DGS3MO": daily(three_month),
        "T10Y2Y": daily(ten - two),
        "FEDFUNDS": pd.DataFrame({"date": months, "value": np.round(three_month[month_index], 2)}),
        "CPIAUCSL": pd.DataFrame({"date": months, "value": np.round(cpi, 3)}),
    }


class SyntheticProvider:
    """Seeded synthetic bars (any symbol, ``VIX``) and macro series (:data:`MACRO_SERIES`)."""

    name = "synthetic"

    def __init__(self, seed: int = 7, volatility_index: str = "VIX"):
        self.seed = seed
        self.volatility_index = volatility_index

    def supports(self, series: str, kind: SeriesKind) -> bool:
        return kind is SeriesKind.BAR or series in MACRO_SERIES

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        if request.end > HORIZON_END or request.start < HORIZON_START:
            raise ProviderError(
                self.name,
                request.series,
                ProviderErrorKind.UNSUPPORTED,
                f"the synthetic market covers {HORIZON_START}..{HORIZON_END} only",
            )
        if request.kind is SeriesKind.MACRO:
            if request.series not in MACRO_SERIES:
                raise ProviderError(
                    self.name,
                    request.series,
                    ProviderErrorKind.UNSUPPORTED,
                    f"no synthetic macro series {request.series}; available: {MACRO_SERIES}",
                )
            return canonical(_macro(self.seed)[request.series], request)
        if request.series == self.volatility_index:
            return canonical(_vix_series(self.seed), request)
        return canonical(_asset_series(self.seed, request.series), request)
