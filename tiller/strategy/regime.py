"""Market regime from the VIX close (SPEC stage 4).

``NORMAL`` below ``elevated`` (20), ``ELEVATED`` from 20 up to ``high_vol``
(30), ``HIGH_VOL`` from 30 up to ``extreme`` (40), ``EXTREME`` from 40: each
threshold belongs to the higher regime (``20 <= VIX < 30`` is ``ELEVATED``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import pandas as pd

from tiller.domain import Regime
from tiller.settings import RegimeConfig


@dataclass(frozen=True)
class RegimeReading:
    """The regime of one ``as_of`` and the VIX close it came from.

    Attributes
    ----------
    regime:
        The classified regime.
    vix:
        The VIX close used (index points).
    vix_date:
        Date of that close: the last VIX session on or before ``as_of``.
    reason:
        Human-readable, e.g. ``VIX 82.69 on 2020-03-16 >= 40: EXTREME``.
    """

    regime: Regime
    vix: float
    vix_date: date
    reason: str


def classify_regime(vix: float, config: RegimeConfig) -> Regime:
    """Classify one VIX level.

    Parameters
    ----------
    vix:
        VIX close in index points (annualised implied volatility in percent).
    config:
        Thresholds ``elevated < high_vol < extreme``.

    Returns
    -------
    Regime
        ``NORMAL`` if ``vix < elevated``; ``ELEVATED`` if ``elevated <= vix <
        high_vol``; ``HIGH_VOL`` if ``high_vol <= vix < extreme``; else ``EXTREME``.

    Raises
    ------
    ValueError
        ``vix`` is NaN, infinite or negative.
    """
    if not math.isfinite(vix) or vix < 0:
        raise ValueError(f"VIX must be a finite, non-negative number (got {vix!r})")
    if vix < config.elevated:
        return Regime.NORMAL
    if vix < config.high_vol:
        return Regime.ELEVATED
    if vix < config.extreme:
        return Regime.HIGH_VOL
    return Regime.EXTREME


def _band(regime: Regime, config: RegimeConfig) -> str:
    return {
        Regime.NORMAL: f"< {config.elevated:g}",
        Regime.ELEVATED: f"in [{config.elevated:g}, {config.high_vol:g})",
        Regime.HIGH_VOL: f"in [{config.high_vol:g}, {config.extreme:g})",
        Regime.EXTREME: f">= {config.extreme:g}",
    }[regime]


def regime_at(vix_bars: pd.DataFrame, as_of: date, config: RegimeConfig) -> RegimeReading:
    """The regime of ``as_of`` from the last VIX close on or before it.

    Parameters
    ----------
    vix_bars:
        VIX bars with at least the columns ``date`` (datetime64 or date) and
        ``close`` (index points); rows with a NaN close are skipped, rows after
        ``as_of`` are ignored.
    as_of:
        The run date.
    config:
        The thresholds.

    Returns
    -------
    RegimeReading

    Raises
    ------
    ValueError
        The frame lacks ``date``/``close``, or there is no VIX close on or before
        ``as_of``.
    """
    if not {"date", "close"} <= set(vix_bars.columns):
        raise ValueError(
            f"VIX bars need columns date and close (got {', '.join(map(str, vix_bars.columns))})"
        )
    dates = pd.to_datetime(vix_bars["date"])
    closes = pd.to_numeric(vix_bars["close"], errors="coerce")
    usable = (dates <= pd.Timestamp(as_of)) & closes.notna()
    if not usable.any():
        first = dates[closes.notna()].min() if closes.notna().any() else None
        detail = (
            f"the VIX series starts on {first.date().isoformat()}"
            if first is not None and not pd.isna(first)
            else "the VIX series has no closes at all"
        )
        raise ValueError(
            f"no VIX close on or before {pd.Timestamp(as_of).date().isoformat()} ({detail}); "
            "ingest VIX before classifying the regime"
        )
    i = dates[usable].to_numpy().argmax()
    vix = float(closes[usable].iloc[i])
    vix_date = pd.Timestamp(dates[usable].iloc[i]).date()
    regime = classify_regime(vix, config)
    reason = f"VIX {vix:.2f} on {vix_date.isoformat()} {_band(regime, config)}: {regime.value}"
    return RegimeReading(regime=regime, vix=vix, vix_date=vix_date, reason=reason)
