"""Which assets the optimiser may weight today (pure; the flow and the backtest share it)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from tiller.domain import Signal, SignalType
from tiller.risk import RiskDecision

SELLS = (SignalType.SELL, SignalType.STRONG_SELL)


def investable(
    signals: Sequence[Signal],
    decision: RiskDecision,
    held: Sequence[str],
    fixed_weights: Mapping[str, float] | None = None,
    locked: Collection[str] = (),
) -> list[str]:
    """Assets the optimiser may weight, sorted.

    Rules-based (``fixed_weights`` None): long-eligible, not a sell signal, and allowed by
    risk -- a buy must pass :meth:`RiskDecision.may_buy` at the signal's confidence; a
    held asset may stay unless risk forces it out or no longer allows it.

    ``locked`` (rules-based only): held assets inside their minimum holding period
    (``optimize.min_holding_days``); they stay whatever their signal says, unless risk
    forces them out or no longer allows them (a stop, a risk level, a delisting).

    Fixed mix (``optimize.method: fixed``): the mix's assets, signals ignored, with the
    same risk rules (a new position must pass ``may_buy`` at full confidence).
    """
    if fixed_weights:
        candidates = [(s, True, 1.0) for s in sorted(fixed_weights)]
    else:
        candidates = [
            (s.symbol, s.signal.is_buy, s.confidence)
            for s in signals
            if s.long_eligible and s.signal not in SELLS
        ]
    if not fixed_weights:
        named = {symbol for symbol, _, _ in candidates}
        candidates += [(s, False, 0.0) for s in sorted(locked) if s in held and s not in named]
    chosen = []
    for symbol, is_buy, confidence in candidates:
        if symbol in held:
            if symbol in decision.allowed_symbols and symbol not in decision.forced_exits:
                chosen.append(symbol)
        elif is_buy and decision.may_buy(symbol, confidence)[0]:
            chosen.append(symbol)
    return sorted(chosen)
