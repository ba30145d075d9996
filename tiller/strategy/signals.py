"""Per-asset signals with confidence and reason (SPEC stage 5).

Rules
-----
With ``m`` the configured momentum factor (``momentum_60``), ``P`` the
adjusted close and the SMAs of the factor snapshot, checked **in this order**
(the first that holds wins):

1. ``STRONG_SELL``: ``m < strong_sell_momentum`` and ``P < SMA200``.
2. ``STRONG_BUY``: ``m > strong_buy_momentum`` and ``P > SMA50`` and
   ``P > SMA200`` and ``VIX < strong_buy_max_vix``.
3. ``SELL``: ``m < sell_momentum`` or ``P < SMA50``.
4. ``BUY``: ``m > buy_momentum`` and ``P > SMA20``.
5. ``HOLD`` otherwise.

Because the thresholds increase (strong_sell < sell < buy < strong_buy) the
strong rules cannot collide with each other or with the opposite plain rule;
the only overlap is ``SELL`` vs ``BUY`` (momentum above the buy threshold and
``SMA50 > P > SMA20``), resolved conservatively: ``SELL`` is checked before
``BUY``.  Comparisons are strict, so a value exactly on a threshold does not
fire the rule.  A symbol lacking any of ``m``, ``close``, ``sma_20``,
``sma_50``, ``sma_200`` or a ``volatility_{n}`` gets ``HOLD`` with confidence 0
and a reason naming what is missing.

One implementation for every date
---------------------------------
:func:`signal_panel` applies the rules below to arrays of ``(dates, symbols)``: the
backtest to every session at once, the daily flow (:func:`generate_signals`) to one
date.  The reasons are formatted from the panel's numbers afterwards, only when asked
for (:func:`signals_at`).

Confidence
----------
How far the momentum is past the *entry* threshold of its side, in standard
deviations of an ``h``-session return (``h`` = the momentum window)::

    e       = m - buy_momentum            (BUY, STRONG_BUY)
            = sell_momentum - m           (SELL, STRONG_SELL; negative when a
                                           SELL fired on P < SMA50 alone)
    sigma_h = vol * sqrt(h / A)           (vol = the symbol's longest-window
                                           annualised volatility, A the window
                                           calendar's periods per year, 252: the
                                           h sessions span h / 252 years for
                                           every asset)
    z       = e / sigma_h                 (0 when sigma_h is 0)
    confidence = clip(0.5 + 0.25 * z, 0, 1)

so a signal right at its threshold is 0.5 and one two standard deviations
beyond it is 1.  A ``HOLD`` (no rule fired) has confidence 0.5 (neutral).

Regime filter
-------------
``HIGH_VOL`` multiplies every confidence by ``high_vol_confidence_factor``
(0.5).  ``EXTREME`` turns ``BUY``/``STRONG_BUY`` into ``HOLD`` (confidence 0.5,
the reason keeps the rule that fired).  Sells are never filtered.

Trend rule (``rule: trend``)
----------------------------
Instead of all of the above: a present symbol whose price ``P`` is strictly above its
``trend_window``-session average ``A`` (``sma_{trend_window}``, which needs that many bars)
times ``1 + trend_entry_band`` is a ``BUY``, long-eligible, confidence 1; at or below
``A x (1 - trend_exit_band)``, or without the average yet, a ``SELL``; in between a
``HOLD`` (eligible: a holding stays, nothing new is bought).  With both bands 0 (the
default) that is BUY above the average and SELL otherwise.  No regime filter, no ranking:
the trend-filtered risk-parity strategy (``config/profiles/trend-rp.yaml``).

Cross-sectional rule (``long_eligible``; never a short)
--------------------------------------------------------
Symbols with a ``momentum_12_1_rank`` are ordered by it (highest first, ties by
symbol).  With ``N`` of them the top group is the first
``max(1, ceil(top_fraction * N))`` and the bottom group the last
``min(floor(bottom_fraction * N), N - top)``.  A top-group symbol whose close
is above its SMA200 is long-eligible; bottom-group symbols are avoided; the
middle and unranked symbols are not eligible.  If more than
``defensive_trigger`` of the top group is not above its SMA200, the portfolio
goes defensive: only the ``defensive_assets`` present in the snapshot are
long-eligible.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tiller.domain import Regime, Signal, SignalType
from tiller.settings import RegimeConfig, SignalConfig
from tiller.strategy.factors import CLOSE, MOMENTUM_12_1, FactorArrays, FactorSnapshot
from tiller.strategy.regime import RegimeReading

SMA20, SMA50, SMA200 = "sma_20", "sma_50", "sma_200"
NEUTRAL_CONFIDENCE = 0.5
_SESSIONS_PER_MONTH = 21


def momentum_horizon(factor: str) -> int:
    """Sessions a momentum factor spans: ``momentum_60`` -> 60, ``momentum_12_1`` -> 231.

    Raises
    ------
    ValueError
        ``factor`` is not ``momentum_{n}`` or ``momentum_{months}_{skip months}``.
    """
    match = re.fullmatch(r"momentum_(\d+)", factor)
    if match:
        return int(match.group(1))
    match = re.fullmatch(r"momentum_(\d+)_(\d+)", factor)
    if match and int(match.group(1)) > int(match.group(2)):
        return (int(match.group(1)) - int(match.group(2))) * _SESSIONS_PER_MONTH
    raise ValueError(
        f"signals.momentum_factor {factor!r} is not a momentum factor "
        "(expected momentum_<sessions>, e.g. momentum_60, or momentum_12_1)"
    )


KINDS: tuple[SignalType, ...] = (
    SignalType.HOLD,
    SignalType.STRONG_BUY,
    SignalType.BUY,
    SignalType.SELL,
    SignalType.STRONG_SELL,
)
"""Codes of :attr:`SignalPanel.kind` (the index into this tuple)."""
HOLD, STRONG_BUY, BUY, SELL, STRONG_SELL = range(5)
REGIMES: tuple[Regime, ...] = (Regime.NORMAL, Regime.ELEVATED, Regime.HIGH_VOL, Regime.EXTREME)
"""Codes of :attr:`SignalInputs.regime`."""
_VOLATILITY = re.compile(r"volatility_(\d+)")


@dataclass(frozen=True, eq=False)
class SignalInputs:
    """What the rules read, as ``(dates, symbols)`` arrays (NaN where missing).

    Attributes
    ----------
    symbols:
        The columns.
    momentum, close, sma20, sma50, sma200:
        The configured momentum factor, the adjusted close and the SMAs.
    trend:
        The ``trend_window``-session average (``sma_{trend_window}``) of the trend rule.
    volatility:
        The longest-window annualised volatility the symbol has; ``volatility_window``
        says which window (0: none).
    rank:
        ``momentum_12_1_rank`` (NaN when the symbol has no 12-1 momentum).
    present:
        The symbol has a bar on or before the date (it is in the snapshot).
    vix:
        The VIX close of each date (``(dates,)``); ``regime`` its code in :data:`REGIMES`.
    """

    symbols: tuple[str, ...]
    momentum: np.ndarray
    close: np.ndarray
    sma20: np.ndarray
    sma50: np.ndarray
    sma200: np.ndarray
    trend: np.ndarray
    volatility: np.ndarray
    volatility_window: np.ndarray
    rank: np.ndarray
    present: np.ndarray
    vix: np.ndarray
    regime: np.ndarray


@dataclass(frozen=True, eq=False)
class SignalPanel:
    """The rules' outcome for every date and symbol (:func:`signal_panel`).

    Attributes
    ----------
    inputs:
        What was read.
    kind:
        Codes in :data:`KINDS`, after the regime filter (-1: symbol not present).
    rule:
        The code of the rule that fired, before the regime filter.
    confidence:
        In [0, 1], after the regime filter.
    sigma, z:
        The momentum horizon's standard deviation and the z-score of the excess
        (for the reasons).
    eligible, top, bottom:
        Long-eligible; in the top / bottom group of the 12-1 ranking.
    defensive:
        ``(dates,)``: defensive mode on that date.
    window_periods:
        Periods per year of the window calendar (the momentum horizon in years is
        ``horizon / window_periods``).
    """

    inputs: SignalInputs
    kind: np.ndarray
    rule: np.ndarray
    confidence: np.ndarray
    sigma: np.ndarray
    z: np.ndarray
    eligible: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    defensive: np.ndarray
    window_periods: int


def _round_count(x: float) -> float:
    return round(x, 9)  # 0.3 * 10 = 3.0000000000000004 must count as 3


def signal_panel(inputs: SignalInputs, config: SignalConfig, window_periods: int) -> SignalPanel:
    """Apply the rules of the module docstring to every date and symbol at once.

    Parameters
    ----------
    inputs:
        The factor values, ranks, presence and VIX of each date.
    config:
        Thresholds, the regime filter and the cross-sectional rule.
    window_periods:
        Periods per year of the window calendar (252): the momentum horizon of
        ``h`` sessions spans ``h / window_periods`` years on every calendar.
    """
    if config.rule == "trend":
        return _trend_panel(inputs, config, window_periods)
    m, p = inputs.momentum, inputs.close
    s20, s50, s200 = inputs.sma20, inputs.sma50, inputs.sma200
    vol = inputs.volatility
    shape = m.shape
    vix = inputs.vix[:, None]
    usable = (
        inputs.present
        & ~np.isnan(m)
        & ~np.isnan(p)
        & ~np.isnan(s20)
        & ~np.isnan(s50)
        & ~np.isnan(s200)
        & ~np.isnan(vol)
    )
    with np.errstate(invalid="ignore"):
        strong_sell = (m < config.strong_sell_momentum) & (p < s200)
        strong_buy = (
            (m > config.strong_buy_momentum)
            & (p > s50)
            & (p > s200)
            & (vix < config.strong_buy_max_vix)
        )
        sell = (m < config.sell_momentum) | (p < s50)
        buy = (m > config.buy_momentum) & (p > s20)
    rule = np.full(shape, HOLD, dtype=np.int8)
    rule[usable & buy] = BUY
    rule[usable & sell] = SELL
    rule[usable & strong_buy] = STRONG_BUY
    rule[usable & strong_sell] = STRONG_SELL

    horizon = momentum_horizon(config.momentum_factor)
    with np.errstate(invalid="ignore"):
        sigma = vol * math.sqrt(horizon / window_periods)
        is_buy = (rule == BUY) | (rule == STRONG_BUY)
        excess = np.where(is_buy, m - config.buy_momentum, config.sell_momentum - m)
        z = np.where(sigma > 0, excess / np.where(sigma > 0, sigma, 1.0), 0.0)
        fired = np.minimum(1.0, np.maximum(0.0, 0.5 + 0.25 * z))
    confidence = np.where(rule == HOLD, np.where(usable, NEUTRAL_CONFIDENCE, 0.0), fired)

    kind = rule.copy()
    extreme = (inputs.regime == REGIMES.index(Regime.EXTREME))[:, None]
    high_vol = (inputs.regime == REGIMES.index(Regime.HIGH_VOL))[:, None]
    filtered = is_buy & extreme
    kind[filtered] = HOLD
    confidence = np.where(filtered, NEUTRAL_CONFIDENCE, confidence)
    confidence = np.where(
        high_vol & ~filtered, confidence * config.high_vol_confidence_factor, confidence
    )
    confidence = np.minimum(1.0, np.maximum(0.0, confidence))
    kind[~inputs.present] = -1

    eligible, top, bottom, defensive = _cross_sections(inputs, config)
    return SignalPanel(
        inputs, kind, rule, confidence, sigma, z, eligible, top, bottom, defensive, window_periods
    )


def _trend_panel(inputs: SignalInputs, config: SignalConfig, window_periods: int) -> SignalPanel:
    """The trend rule of the module docstring: BUY above the average (by more than the
    entry band), SELL at or below it (by the exit band), HOLD in between."""
    with np.errstate(invalid="ignore"):
        above = inputs.present & (inputs.close > inputs.trend * (1 + config.trend_entry_band))
        below = inputs.close <= inputs.trend * (1 - config.trend_exit_band)
    usable = inputs.present & ~np.isnan(inputs.close) & ~np.isnan(inputs.trend)
    rule = np.where(above, BUY, np.where(usable & ~below, HOLD, SELL)).astype(np.int8)
    kind = rule.copy()
    kind[~inputs.present] = -1
    shape = rule.shape
    nothing = np.zeros(shape, dtype=bool)
    return SignalPanel(
        inputs,
        kind,
        rule,
        np.ones(shape),
        np.full(shape, np.nan),
        np.zeros(shape),
        inputs.present & (rule != SELL),
        nothing,
        nothing,
        np.zeros(shape[0], dtype=bool),
        window_periods,
    )


def _cross_sections(
    inputs: SignalInputs, config: SignalConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top and bottom groups of the 12-1 ranking, long-eligibility and defensive mode,
    per date (ties by symbol; see the module docstring)."""
    dates, n_symbols = inputs.rank.shape
    eligible = np.zeros((dates, n_symbols), dtype=bool)
    top = np.zeros((dates, n_symbols), dtype=bool)
    bottom = np.zeros((dates, n_symbols), dtype=bool)
    defensive = np.zeros(dates, dtype=bool)
    order = np.argsort(np.array(inputs.symbols, dtype=object))  # ties by symbol
    position = np.empty(n_symbols, dtype=int)
    position[order] = np.arange(n_symbols)
    with np.errstate(invalid="ignore"):
        above = inputs.close > inputs.sma200
    defensive_columns = [i for i, s in enumerate(inputs.symbols) if s in config.defensive_assets]
    for t in range(dates):
        ranked = np.flatnonzero(inputs.present[t] & ~np.isnan(inputs.rank[t]))
        n = len(ranked)
        if not n:
            continue
        keys = np.lexsort((position[ranked], -inputs.rank[t, ranked]))
        ordered = ranked[keys]
        top_k = max(1, math.ceil(_round_count(config.top_fraction * n)))
        bottom_k = min(math.floor(_round_count(config.bottom_fraction * n)), n - top_k)
        leaders = ordered[:top_k]
        top[t, leaders] = True
        if bottom_k:
            bottom[t, ordered[n - bottom_k :]] = True
        not_above = int((~above[t, leaders]).sum())
        if not_above / top_k > config.defensive_trigger:
            defensive[t] = True
            for column in defensive_columns:
                eligible[t, column] = bool(inputs.present[t, column])
        else:
            eligible[t, leaders] = above[t, leaders]
    return eligible, top, bottom, defensive


def inputs_from_snapshot(
    snapshot: FactorSnapshot, regime: RegimeReading, config: SignalConfig
) -> SignalInputs:
    """One date's :class:`SignalInputs` from a factor snapshot and its regime reading."""
    symbols = snapshot.symbols
    rows = [snapshot.factors_of(s) for s in symbols]

    def column(name: str) -> np.ndarray:
        return np.array([[r.get(name, np.nan) for r in rows]], dtype=float)

    vol = np.full((1, len(symbols)), np.nan)
    window = np.zeros((1, len(symbols)), dtype=int)
    for j, factors in enumerate(rows):
        best = _volatility(factors)
        if best is not None:
            window[0, j], vol[0, j] = best
    return SignalInputs(
        symbols=symbols,
        momentum=column(config.momentum_factor),
        close=column(CLOSE),
        sma20=column(SMA20),
        sma50=column(SMA50),
        sma200=column(SMA200),
        trend=column(f"sma_{config.trend_window}"),
        volatility=vol,
        volatility_window=window,
        rank=column("momentum_12_1_rank"),
        present=np.ones((1, len(symbols)), dtype=bool),
        vix=np.array([regime.vix], dtype=float),
        regime=np.array([REGIMES.index(regime.regime)], dtype=np.int8),
    )


def inputs_from_arrays(
    arrays: FactorArrays, vix: np.ndarray, config: SignalConfig, regime: RegimeConfig
) -> SignalInputs:
    """Every day's :class:`SignalInputs` from :func:`~tiller.strategy.factors.factor_arrays`
    and the VIX close of each day (NaN: no reading yet)."""
    values = arrays.values
    shape = arrays.present.shape
    vol = np.full(shape, np.nan)
    window = np.zeros(shape, dtype=int)
    windows = sorted(
        (int(m.group(1)), name) for name in values if (m := _VOLATILITY.fullmatch(name))
    )
    for n, name in windows:  # the longest window present wins
        has = ~np.isnan(values[name])
        vol = np.where(has, values[name], vol)
        window = np.where(has, n, window)

    def get(name: str) -> np.ndarray:
        return values.get(name, np.full(shape, np.nan))

    return SignalInputs(
        symbols=arrays.symbols,
        momentum=get(config.momentum_factor),
        close=get(CLOSE),
        sma20=get(SMA20),
        sma50=get(SMA50),
        sma200=get(SMA200),
        trend=get(f"sma_{config.trend_window}"),
        volatility=vol,
        volatility_window=window,
        rank=arrays.rank,
        present=arrays.present,
        vix=np.asarray(vix, dtype=float),
        regime=regime_codes(vix, regime),
    )


def regime_codes(vix: np.ndarray, config: RegimeConfig) -> np.ndarray:
    """:func:`~tiller.strategy.regime.classify_regime` of each VIX value, as codes in
    :data:`REGIMES` (NaN counts as NORMAL: no reading)."""
    values = np.asarray(vix, dtype=float)
    codes = np.zeros(values.shape, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        codes[values >= config.elevated] = 1
        codes[values >= config.high_vol] = 2
        codes[values >= config.extreme] = 3
    return codes


def _volatility(factors: dict[str, float]) -> tuple[int, float] | None:
    """The longest-window ``volatility_{n}`` a symbol has: (n, annualised value)."""
    best: tuple[int, float] | None = None
    for factor, value in factors.items():
        match = _VOLATILITY.fullmatch(factor)
        if match and (best is None or int(match.group(1)) > best[0]):
            best = (int(match.group(1)), value)
    return best


def generate_signals(
    snapshot: FactorSnapshot, regime: RegimeReading, config: SignalConfig
) -> list[Signal]:
    """One signal per symbol of the snapshot (sorted by symbol), with its reason.

    Parameters
    ----------
    snapshot:
        Factors as of the run date (:func:`~tiller.strategy.factors.factors_at`).
    regime:
        The regime reading of the same date; its VIX gates ``STRONG_BUY``.
    config:
        Thresholds (momentum as fractions, VIX in index points), the regime
        filter and the cross-sectional rule.

    Returns
    -------
    list of Signal
        Rule outcome after the regime filter, confidence in [0, 1] (see the
        module docstring for the formula), a reason with the numbers, and
        ``long_eligible`` from the cross-sectional rule.
    """
    panel = signal_panel(
        inputs_from_snapshot(snapshot, regime, config), config, snapshot.window_periods
    )
    return signals_at(panel, 0, config, explain=(snapshot, regime))


def signals_at(
    panel: SignalPanel,
    t: int,
    config: SignalConfig,
    explain: tuple[FactorSnapshot, RegimeReading] | None = None,
) -> list[Signal]:
    """The signals of date row ``t`` (present symbols, by symbol); with ``explain`` (the
    date's snapshot and regime) each carries its reason, otherwise an empty one."""
    inputs = panel.inputs
    out = []
    for j in sorted(range(len(inputs.symbols)), key=lambda i: inputs.symbols[i]):
        kind = int(panel.kind[t, j])
        if kind < 0:
            continue
        reason = "" if explain is None else _reason(panel, t, j, config, *explain)
        out.append(
            Signal(
                symbol=inputs.symbols[j],
                signal=KINDS[kind],
                confidence=float(panel.confidence[t, j]),
                reason=reason,
                long_eligible=bool(panel.eligible[t, j]),
            )
        )
    return out


# --------------------------------------------------------------------- the reasons


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def _price(x: float) -> str:
    return f"{x:.2f}"


def _reason(
    panel: SignalPanel,
    t: int,
    j: int,
    config: SignalConfig,
    snapshot: FactorSnapshot,
    regime: RegimeReading,
) -> str:
    """The reason of one signal: the rule with its numbers, the regime filter, the
    cross-sectional placement (the numbers come from the panel; nothing is re-decided)."""
    if config.rule == "trend":
        return _trend_text(panel, t, j, config)
    text = _rule_text(panel, t, j, config, snapshot)
    notes = [_placement_text(panel, t, j, config, snapshot)]
    rule, kind = int(panel.rule[t, j]), int(panel.kind[t, j])
    if rule != kind:  # a buy the EXTREME regime turned into HOLD
        text = f"HOLD: EXTREME regime (VIX {regime.vix:.2f}) allows no buys; the rule said {text}"
    elif regime.regime is Regime.HIGH_VOL:
        notes.append(
            f"HIGH_VOL regime (VIX {regime.vix:.2f}): confidence "
            f"x{config.high_vol_confidence_factor:g} -> {panel.confidence[t, j]:.2f}"
        )
    return "; ".join([text, *notes])


def regime_effect(
    regime: Regime | str,
    vix: float | None,
    config: SignalConfig,
    l1_min_confidence: float | None = None,
) -> str:
    """What the regime (and the VIX close) changes in the day's signals, in words, as the
    rules above apply it (the daily report's regime section).  ``l1_min_confidence``: the
    risk stage's minimum buy confidence from L1 up (``risk.l1_min_confidence``)."""
    if config.rule == "trend":
        return "Nothing: the trend rule has no regime filter."
    regime = Regime(regime)
    if regime is Regime.EXTREME:
        return (
            "No buys: every BUY and STRONG_BUY becomes HOLD (holdings are kept unless a sell "
            "rule fires); sells are never filtered."
        )
    changes = []
    if regime is Regime.HIGH_VOL:
        factor = config.high_vol_confidence_factor
        text = f"every signal's confidence is multiplied by {factor:g}"
        if l1_min_confidence is not None and factor < l1_min_confidence:
            text += (
                f", so from risk level L1 up no buy passes (confidence at most {factor:.2f} < "
                f"the {l1_min_confidence:.2f} minimum)"
            )
        changes.append(text)
    if vix is not None and vix >= config.strong_buy_max_vix:
        changes.append(f"no STRONG_BUY (it needs VIX < {config.strong_buy_max_vix:g})")
    if not changes:
        return "Nothing: the signals are as the rules give them; sells are never filtered."
    text = "; ".join(changes)
    return text[0].upper() + text[1:] + "; sells are never filtered."


def _trend_text(panel: SignalPanel, t: int, j: int, config: SignalConfig) -> str:
    inputs = panel.inputs
    p, average = float(inputs.close[t, j]), float(inputs.trend[t, j])
    name = f"SMA{config.trend_window}"
    if math.isnan(p) or math.isnan(average):
        return (
            f"SELL: no {config.trend_window}-session average yet (needs {config.trend_window} "
            "bars): not eligible"
        )
    entry = average * (1 + config.trend_entry_band)
    exit_ = average * (1 - config.trend_exit_band)
    if panel.rule[t, j] == BUY:
        return (
            f"BUY: close {_price(p)} > {name} {_price(average)} x "
            f"{1 + config.trend_entry_band:g} = {_price(entry)}: trend up, eligible"
        )
    if panel.rule[t, j] == HOLD:
        return (
            f"HOLD: close {_price(p)} between the exit {_price(exit_)} and the entry "
            f"{_price(entry)} around {name} {_price(average)}: a holding stays, no new buy"
        )
    return (
        f"SELL: close {_price(p)} <= {name} {_price(average)} x "
        f"{1 - config.trend_exit_band:g} = {_price(exit_)}: trend down, not eligible"
    )


def _rule_text(
    panel: SignalPanel, t: int, j: int, config: SignalConfig, snapshot: FactorSnapshot
) -> str:
    inputs = panel.inputs
    symbol = inputs.symbols[j]
    name = config.momentum_factor
    values = {
        name: inputs.momentum[t, j],
        CLOSE: inputs.close[t, j],
        SMA20: inputs.sma20[t, j],
        SMA50: inputs.sma50[t, j],
        SMA200: inputs.sma200[t, j],
    }
    lacking = [f for f in (name, CLOSE, SMA20, SMA50, SMA200) if math.isnan(values[f])]
    if math.isnan(inputs.volatility[t, j]):
        lacking.append("volatility")
    if lacking:
        return f"HOLD: {_missing_text(snapshot, symbol, lacking)}"
    m, p = float(values[name]), float(values[CLOSE])
    sma20, sma50, sma200 = (float(values[f]) for f in (SMA20, SMA50, SMA200))
    vix = float(inputs.vix[t])
    mom = f"{name} {_pct(m)}"
    rule = int(panel.rule[t, j])
    if rule == STRONG_SELL:
        text = (
            f"{mom} < {_pct(config.strong_sell_momentum)} and close {_price(p)} "
            f"< SMA200 {_price(sma200)}"
        )
    elif rule == STRONG_BUY:
        text = (
            f"{mom} > {_pct(config.strong_buy_momentum)}, close {_price(p)} > SMA50 "
            f"{_price(sma50)} and > SMA200 {_price(sma200)}, VIX {vix:.2f} "
            f"< {config.strong_buy_max_vix:g}"
        )
    elif rule == SELL:
        parts = []
        if m < config.sell_momentum:
            parts.append(f"{mom} < {_pct(config.sell_momentum)}")
        if p < sma50:
            parts.append(f"close {_price(p)} < SMA50 {_price(sma50)}")
        text = " and ".join(parts)
        if m >= config.sell_momentum:
            text += f" (momentum {_pct(m)} is not below {_pct(config.sell_momentum)})"
    elif rule == BUY:
        text = f"{mom} > {_pct(config.buy_momentum)} and close {_price(p)} > SMA20 {_price(sma20)}"
        if m > config.strong_buy_momentum and p > sma50 and p > sma200:
            text += f" (not STRONG_BUY: VIX {vix:.2f} >= {config.strong_buy_max_vix:g})"
    else:
        return (
            f"HOLD: no rule fired ({mom} vs buy > {_pct(config.buy_momentum)} / sell < "
            f"{_pct(config.sell_momentum)}; close {_price(p)} vs SMA20 {_price(sma20)}, "
            f"SMA50 {_price(sma50)}, SMA200 {_price(sma200)}); confidence "
            f"{NEUTRAL_CONFIDENCE:.2f} (neutral)"
        )
    kind = KINDS[rule]
    threshold = config.buy_momentum if kind.is_buy else config.sell_momentum
    vol_name = f"volatility_{int(inputs.volatility_window[t, j])}"
    confidence = min(1.0, max(0.0, 0.5 + 0.25 * float(panel.z[t, j])))
    return (
        f"{kind.value}: {text}; confidence {confidence:.2f} = 0.5 + 0.25 x "
        f"{float(panel.z[t, j]):+.2f} (momentum {_pct(m)} vs entry {_pct(threshold)} over a "
        f"{momentum_horizon(name)}-session sd {float(panel.sigma[t, j]):.1%} from {vol_name} "
        f"{float(inputs.volatility[t, j]):.1%})"
    )


def _placement_text(
    panel: SignalPanel, t: int, j: int, config: SignalConfig, snapshot: FactorSnapshot
) -> str:
    """Why the symbol is (not) long-eligible on date row ``t``."""
    inputs = panel.inputs
    symbol = inputs.symbols[j]
    top_label = f"top {config.top_fraction:.0%}"
    if panel.defensive[t]:
        leaders = [k for k in _ordered(panel, t) if panel.top[t, k]]
        not_above = [
            inputs.symbols[k] for k in leaders if not (inputs.close[t, k] > inputs.sma200[t, k])
        ]
        mode = (
            f"defensive mode: {len(not_above)} of {len(leaders)} {top_label} assets by 12-1 "
            f"momentum ({', '.join(not_above)}) not above SMA200 (> {config.defensive_trigger:.0%})"
        )
        present = [a for a in config.defensive_assets if a in snapshot.bar_dates]
        if panel.eligible[t, j]:
            return f"{mode}; {symbol} is defensive: long-eligible"
        allowed = ", ".join(present) if present else "none present"
        return f"{mode}; only defensive assets ({allowed}) long-eligible"
    rank = float(inputs.rank[t, j])
    if math.isnan(rank):
        why = snapshot.missing_reason(symbol, MOMENTUM_12_1)
        detail = f"{MOMENTUM_12_1} {why}" if why else "not ranked"
        return f"no 12-1 momentum rank ({detail}): not long-eligible"
    if panel.top[t, j]:
        close, sma = float(inputs.close[t, j]), float(inputs.sma200[t, j])
        if panel.eligible[t, j]:
            return (
                f"{top_label} by 12-1 momentum (rank {rank:.2f}) and above SMA200 "
                f"{_price(sma)}: long-eligible"
            )
        where = (
            f"close {_price(close)} not above SMA200 {_price(sma)}"
            if not (math.isnan(close) or math.isnan(sma))
            else "no SMA200"
        )
        return f"{top_label} by 12-1 momentum (rank {rank:.2f}) but {where}: not long-eligible"
    if panel.bottom[t, j]:
        return (
            f"bottom {config.bottom_fraction:.0%}: avoided (12-1 momentum rank {rank:.2f}; "
            "never shorted)"
        )
    return f"middle of the 12-1 momentum ranking (rank {rank:.2f}): not long-eligible"


def _ordered(panel: SignalPanel, t: int) -> list[int]:
    """Columns ranked on date row ``t``, highest rank first, ties by symbol."""
    inputs = panel.inputs
    ranked = [
        k
        for k in range(len(inputs.symbols))
        if inputs.present[t, k] and not math.isnan(inputs.rank[t, k])
    ]
    return sorted(ranked, key=lambda k: (-float(inputs.rank[t, k]), inputs.symbols[k]))


def _missing_text(snapshot: FactorSnapshot, symbol: str, factors: Sequence[str]) -> str:
    parts = []
    for factor in factors:
        why = snapshot.missing_reason(symbol, factor)
        if why is None and factor == "volatility":
            vols = snapshot.missing[
                (snapshot.missing["symbol"] == symbol)
                & snapshot.missing["factor"].str.startswith("volatility_")
            ]
            why = "; ".join(
                f"{f}: {r}" for f, r in zip(vols["factor"], vols["reason"], strict=True)
            )
        parts.append(f"{factor} ({why})" if why else factor)
    return "missing " + ", ".join(parts)
