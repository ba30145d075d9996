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
from dataclasses import dataclass

from tiller.domain import Regime, Signal, SignalType
from tiller.settings import SignalConfig
from tiller.strategy.factors import CLOSE, MOMENTUM_12_1, FactorSnapshot
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


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def _price(x: float) -> str:
    return f"{x:.2f}"


@dataclass(frozen=True)
class _Placement:
    eligible: bool
    text: str


def _round_count(x: float) -> float:
    return round(x, 9)  # 0.3 * 10 = 3.0000000000000004 must count as 3


def _cross_section(snapshot: FactorSnapshot, config: SignalConfig) -> dict[str, _Placement]:
    """Long-eligibility of every symbol from the 12-1 ranking, SMA200 and defensive mode."""
    ranks = snapshot.rank
    ordered = sorted(ranks.items(), key=lambda kv: (-float(kv[1]), str(kv[0])))
    n = len(ordered)
    top_k = max(1, math.ceil(_round_count(config.top_fraction * n))) if n else 0
    bottom_k = min(math.floor(_round_count(config.bottom_fraction * n)), n - top_k)
    top = [str(s) for s, _ in ordered[:top_k]]
    bottom = {str(s) for s, _ in ordered[n - bottom_k :]} if bottom_k else set()

    def above_sma200(symbol: str) -> bool:
        close, sma = snapshot.value(symbol, CLOSE), snapshot.value(symbol, SMA200)
        return close is not None and sma is not None and close > sma

    not_above = [s for s in top if not above_sma200(s)]
    top_label = f"top {config.top_fraction:.0%}"
    placements: dict[str, _Placement] = {}
    if top_k and len(not_above) / top_k > config.defensive_trigger:
        present = [a for a in config.defensive_assets if a in snapshot.bar_dates]
        mode = (
            f"defensive mode: {len(not_above)} of {top_k} {top_label} assets by 12-1 momentum "
            f"({', '.join(not_above)}) not above SMA200 (> {config.defensive_trigger:.0%})"
        )
        allowed = ", ".join(present) if present else "none present"
        for symbol in snapshot.symbols:
            if symbol in present:
                placements[symbol] = _Placement(
                    True, f"{mode}; {symbol} is defensive: long-eligible"
                )
            else:
                placements[symbol] = _Placement(
                    False, f"{mode}; only defensive assets ({allowed}) long-eligible"
                )
        return placements

    rank_of = {str(s): float(r) for s, r in ordered}
    for symbol in snapshot.symbols:
        if symbol not in rank_of:
            why = snapshot.missing_reason(symbol, MOMENTUM_12_1)
            detail = f"{MOMENTUM_12_1} {why}" if why else "not ranked"
            placements[symbol] = _Placement(
                False, f"no 12-1 momentum rank ({detail}): not long-eligible"
            )
            continue
        rank = rank_of[symbol]
        if symbol in top:
            sma = snapshot.value(symbol, SMA200)
            if above_sma200(symbol):
                assert sma is not None
                text = (
                    f"{top_label} by 12-1 momentum (rank {rank:.2f}) and above SMA200 "
                    f"{_price(sma)}: long-eligible"
                )
                placements[symbol] = _Placement(True, text)
            else:
                close = snapshot.value(symbol, CLOSE)
                where = (
                    f"close {_price(close)} not above SMA200 {_price(sma)}"
                    if close is not None and sma is not None
                    else "no SMA200"
                )
                placements[symbol] = _Placement(
                    False,
                    f"{top_label} by 12-1 momentum (rank {rank:.2f}) but {where}: "
                    "not long-eligible",
                )
        elif symbol in bottom:
            placements[symbol] = _Placement(
                False,
                f"bottom {config.bottom_fraction:.0%}: avoided (12-1 momentum rank {rank:.2f}; "
                "never shorted)",
            )
        else:
            placements[symbol] = _Placement(
                False, f"middle of the 12-1 momentum ranking (rank {rank:.2f}): not long-eligible"
            )
    return placements


def _volatility(snapshot: FactorSnapshot, symbol: str) -> tuple[str, float] | None:
    """The symbol's longest-window ``volatility_{n}`` (name, annualised value)."""
    best: tuple[int, str, float] | None = None
    for factor, value in snapshot.factors_of(symbol).items():
        match = re.fullmatch(r"volatility_(\d+)", factor)
        if match and (best is None or int(match.group(1)) > best[0]):
            best = (int(match.group(1)), factor, value)
    return (best[1], best[2]) if best else None


def _missing_text(snapshot: FactorSnapshot, symbol: str, factors: list[str]) -> str:
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


def generate_signals(
    snapshot: FactorSnapshot, regime: RegimeReading, config: SignalConfig
) -> list[Signal]:
    """One signal per symbol of the snapshot (sorted by symbol).

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
    horizon = momentum_horizon(config.momentum_factor)
    placements = _cross_section(snapshot, config)
    signals = []
    for symbol in snapshot.symbols:
        placement = placements[symbol]
        kind, confidence, text = _rule(snapshot, symbol, regime, config, horizon)
        notes = [placement.text]
        if kind.is_buy and regime.regime is Regime.EXTREME:
            text = (
                f"HOLD: EXTREME regime (VIX {regime.vix:.2f}) allows no buys; the rule said {text}"
            )
            kind, confidence = SignalType.HOLD, NEUTRAL_CONFIDENCE
        elif regime.regime is Regime.HIGH_VOL:
            confidence *= config.high_vol_confidence_factor
            notes.append(
                f"HIGH_VOL regime (VIX {regime.vix:.2f}): confidence "
                f"x{config.high_vol_confidence_factor:g} -> {confidence:.2f}"
            )
        signals.append(
            Signal(
                symbol=symbol,
                signal=kind,
                confidence=float(min(1.0, max(0.0, confidence))),
                reason="; ".join([text, *notes]),
                long_eligible=placement.eligible,
            )
        )
    return signals


def _rule(
    snapshot: FactorSnapshot,
    symbol: str,
    regime: RegimeReading,
    config: SignalConfig,
    horizon: int,
) -> tuple[SignalType, float, str]:
    """The rule that fires for one symbol: (type, confidence before the regime filter, text)."""
    name = config.momentum_factor
    needed = [name, CLOSE, SMA20, SMA50, SMA200]
    lacking = [f for f in needed if snapshot.value(symbol, f) is None]
    vol = _volatility(snapshot, symbol)
    if vol is None:
        lacking.append("volatility")
    if lacking:
        return SignalType.HOLD, 0.0, f"HOLD: {_missing_text(snapshot, symbol, lacking)}"
    assert vol is not None
    values = {f: snapshot.value(symbol, f) for f in needed}
    m, p = float(values[name] or 0.0), float(values[CLOSE] or 0.0)
    sma20, sma50, sma200 = (float(values[f] or 0.0) for f in (SMA20, SMA50, SMA200))
    vix = regime.vix

    mom = f"{name} {_pct(m)}"
    if m < config.strong_sell_momentum and p < sma200:
        kind = SignalType.STRONG_SELL
        text = (
            f"{mom} < {_pct(config.strong_sell_momentum)} and close {_price(p)} "
            f"< SMA200 {_price(sma200)}"
        )
    elif (
        m > config.strong_buy_momentum
        and p > sma50
        and p > sma200
        and vix < config.strong_buy_max_vix
    ):
        kind = SignalType.STRONG_BUY
        text = (
            f"{mom} > {_pct(config.strong_buy_momentum)}, close {_price(p)} > SMA50 "
            f"{_price(sma50)} and > SMA200 {_price(sma200)}, VIX {vix:.2f} "
            f"< {config.strong_buy_max_vix:g}"
        )
    elif m < config.sell_momentum or p < sma50:
        kind = SignalType.SELL
        parts = []
        if m < config.sell_momentum:
            parts.append(f"{mom} < {_pct(config.sell_momentum)}")
        if p < sma50:
            parts.append(f"close {_price(p)} < SMA50 {_price(sma50)}")
        text = " and ".join(parts)
        if m >= config.sell_momentum:
            text += f" (momentum {_pct(m)} is not below {_pct(config.sell_momentum)})"
    elif m > config.buy_momentum and p > sma20:
        kind = SignalType.BUY
        text = f"{mom} > {_pct(config.buy_momentum)} and close {_price(p)} > SMA20 {_price(sma20)}"
        if m > config.strong_buy_momentum and p > sma50 and p > sma200:
            text += f" (not STRONG_BUY: VIX {vix:.2f} >= {config.strong_buy_max_vix:g})"
    else:
        return (
            SignalType.HOLD,
            NEUTRAL_CONFIDENCE,
            (
                f"HOLD: no rule fired ({mom} vs buy > {_pct(config.buy_momentum)} / sell < "
                f"{_pct(config.sell_momentum)}; close {_price(p)} vs SMA20 {_price(sma20)}, "
                f"SMA50 {_price(sma50)}, SMA200 {_price(sma200)}); confidence "
                f"{NEUTRAL_CONFIDENCE:.2f} (neutral)"
            ),
        )

    vol_name, vol_value = vol
    sigma = vol_value * math.sqrt(horizon / snapshot.window_periods)
    if kind.is_buy:
        threshold, excess = config.buy_momentum, m - config.buy_momentum
    else:
        threshold, excess = config.sell_momentum, config.sell_momentum - m
    z = excess / sigma if sigma > 0 else 0.0
    confidence = min(1.0, max(0.0, 0.5 + 0.25 * z))
    text = (
        f"{kind.value}: {text}; confidence {confidence:.2f} = 0.5 + 0.25 x {z:+.2f} "
        f"(momentum {_pct(m)} vs entry {_pct(threshold)} over a {horizon}-session sd "
        f"{sigma:.1%} from {vol_name} {vol_value:.1%})"
    )
    return kind, confidence, text
