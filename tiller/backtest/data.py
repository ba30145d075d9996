"""History for a backtest, fetched through the configured data sources (the providers the
daily flow ingests from, in the same order with the same fallback)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from tiller.backtest.engine import BacktestError, MarketHistory, warmup_sessions
from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.factory import build_chain
from tiller.settings import Settings
from tiller.store.repo import Store


def warmup_start(settings: Settings, start: date) -> date:
    """The first date to fetch so that ``start`` has :func:`warmup_sessions` of history
    (sessions -> calendar days at 7/5 plus two weeks of holidays); ``start`` itself with
    ``backtest.warmup`` off."""
    if not settings.backtest.warmup:
        return start
    return start - timedelta(days=int(warmup_sessions(settings) * 7 / 5) + 14)


def load_market(settings: Settings, start: date, end: date) -> MarketHistory:
    """Bars of the universe and the volatility index from the warm-up start to ``end``.

    A universe symbol no source serves is left out (it has no history yet in the range,
    e.g. BTC-USD before 2014); the volatility index is required.

    Raises
    ------
    BacktestError
        No source serves the volatility index or any universe symbol; the message lists
        each source's answer.
    """
    chain = build_chain(settings)
    first = warmup_start(settings, start)
    frames = []
    misses = []
    for symbol in settings.symbols:
        fetched = chain.fetch(SeriesRequest(symbol, SeriesKind.BAR, first, end))
        if fetched.frame.empty:
            misses.append(f"{symbol}: " + "; ".join(str(a) for a in fetched.attempts))
            continue
        frames.append(fetched.frame.assign(symbol=symbol))
    vix = chain.fetch(SeriesRequest(settings.volatility_index, SeriesKind.BAR, first, end))
    if vix.frame.empty or not frames:
        missing = [*misses, *([] if not vix.frame.empty else [f"{settings.volatility_index}"])]
        raise BacktestError(
            f"no history from {first} to {end} for {', '.join(missing)}; set "
            "TILLER_DATA_SOURCES to sources that hold it (e.g. csv:../shared/data/market)"
        )
    bars = pd.concat(frames, ignore_index=True)
    bars["date"] = pd.to_datetime(bars["date"])
    vix_frame = vix.frame[["date", "close"]].copy()
    vix_frame["date"] = pd.to_datetime(vix_frame["date"])
    return MarketHistory(bars=bars, vix=vix_frame)


def market_from_store(store: Store, settings: Settings, start: date, end: date) -> MarketHistory:
    """The same history from the store's ingested bars (the weekly review's comparison runs
    on exactly the bars the paper flow traded on)."""
    first = warmup_start(settings, start)
    bars = store.load_bars(settings.symbols, first, end)
    vix = store.load_bars([settings.volatility_index], first, end)
    if bars.empty or vix.empty:
        raise BacktestError(
            f"the store holds no bars for {', '.join(settings.symbols)} or "
            f"{settings.volatility_index} between {first} and {end}; run `tiller data ingest`"
        )
    bars = bars.drop(columns=[c for c in ("source", "ingested_at") if c in bars.columns])
    bars["date"] = pd.to_datetime(bars["date"])
    vix_frame = vix[["date", "close"]].copy()
    vix_frame["date"] = pd.to_datetime(vix_frame["date"])
    return MarketHistory(bars=bars, vix=vix_frame)
