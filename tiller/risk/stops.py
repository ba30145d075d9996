"""Per-asset stops measured from the entry price.

``loss = (entry_price - price) / entry_price`` (fraction; sign-flipped for a
short).  ``loss >= asset_stop_exit`` (18%) -> exit the position;
``loss >= asset_stop_halve`` (12%) -> halve it, once: the halving is remembered
(``RiskState.halved``, keyed by symbol with the entry price at the time) so that a
position lingering between 12% and 18% is not halved again every day.  The memory
is dropped when the position is closed or its entry price changes (a new
position).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tiller.risk.ladder import EPSILON
from tiller.risk.model import PositionInfo, RiskEvent
from tiller.settings import RiskConfig


@dataclass(frozen=True)
class StopResult:
    """Outcome of the stop check.

    Attributes
    ----------
    exits, halve:
        ``{symbol: reason}`` of the positions to close and to halve.
    halved:
        The new ``RiskState.halved`` memory (``{symbol: entry_price}``).
    events:
        One event per triggered or remembered stop.
    """

    exits: dict[str, str]
    halve: dict[str, str]
    halved: dict[str, float]
    events: tuple[RiskEvent, ...]


def check_stops(
    positions: Mapping[str, PositionInfo],
    halved_before: Mapping[str, float],
    config: RiskConfig,
    *,
    remember: bool = True,
) -> StopResult:
    """Apply the exit and halve stops to every non-zero position.

    Parameters
    ----------
    positions:
        Held positions by symbol.
    halved_before:
        ``RiskState.halved`` from the previous day.
    config:
        ``asset_stop_halve`` and ``asset_stop_exit`` (fractions of the entry price).
    remember:
        Record today's halvings in the memory; False when no order can go out today
        (kill switch), so that the halving is decided again tomorrow.
    """
    exits: dict[str, str] = {}
    halve: dict[str, str] = {}
    halved: dict[str, float] = {}
    events: list[RiskEvent] = []
    for symbol in sorted(positions):
        position = positions[symbol]
        if position.qty == 0:
            continue
        loss = position.loss_from_entry
        numbers = (
            f"{symbol} {loss:.1%} below its entry {position.entry_price:,.2f} "
            f"(price {position.price:,.2f})"
        )
        already = halved_before.get(symbol) == position.entry_price
        if loss >= config.asset_stop_exit - EPSILON:
            exits[symbol] = f"{numbers} >= exit stop {config.asset_stop_exit:.0%}: exit"
            events.append(RiskEvent("stop_exit", symbol, exits[symbol]))
        elif loss >= config.asset_stop_halve - EPSILON:
            if already:
                halved[symbol] = position.entry_price
                events.append(
                    RiskEvent(
                        "stop_held",
                        symbol,
                        f"{numbers} >= halve stop {config.asset_stop_halve:.0%}: already "
                        f"halved; exit at {config.asset_stop_exit:.0%}",
                    )
                )
            else:
                halve[symbol] = (
                    f"{numbers} >= halve stop {config.asset_stop_halve:.0%}: halve the position"
                )
                events.append(RiskEvent("stop_halve", symbol, halve[symbol]))
                if remember:
                    halved[symbol] = position.entry_price
        elif already:
            halved[symbol] = position.entry_price  # recovered above the stop: still halved once
    return StopResult(exits=exits, halve=halve, halved=halved, events=tuple(events))
