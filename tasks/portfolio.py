"""The paper book as the risk, optimize and orders stages read it: loaded from the store,
valued at the ``as_of`` closes; and the universe's recent returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from tiller.execution.accounting import Portfolio, book_from_dict, snapshot
from tiller.pipeline.market import Market
from tiller.risk import PositionInfo
from tiller.risk.window import ReturnWindow
from tiller.settings import Settings
from tiller.store import book as book_store
from tiller.store.repo import Store

PORTFOLIO = "paper"


def load_book(store: Store, initial_capital: float) -> Portfolio:
    """The persisted local book, or all cash at ``initial_capital`` before the first trade."""
    state = book_store.load_state(store, PORTFOLIO)
    return Portfolio.initial(initial_capital) if state is None else book_from_dict(state)


@dataclass(frozen=True)
class PortfolioView:
    """The book valued at the ``as_of`` closes, as the risk and optimize stages see it.

    The book is the one the orders stage persisted last; fills the broker makes today
    (yesterday's orders at today's open) are applied by today's orders stage.
    """

    nav: float
    previous_nav: float | None
    weights: dict[str, float]
    positions: dict[str, PositionInfo]
    opened: dict[str, date | None]


def current_portfolio(store: Store, settings: Settings, as_of: date) -> PortfolioView:
    """NAV, weights and positions of the paper book at the ``as_of`` closes (USD)."""
    book = load_book(store, settings.optimize.initial_capital)
    prices = book_store.last_closes(store, sorted(book.positions), as_of)
    snap = snapshot(book, prices, as_of)
    weights = {s: m.value / snap.nav for s, m in snap.positions.items()} if snap.nav else {}
    positions = {
        s: PositionInfo(qty=m.qty, entry_price=m.avg_cost, price=m.price, weight=weights[s])
        for s, m in snap.positions.items()
    }
    previous = book_store.previous_nav(store, PORTFOLIO, as_of)
    opened = {s: p.opened for s, p in book.positions.items()}
    return PortfolioView(snap.nav, previous, weights, positions, opened)


def returns_frame(
    store: Store, settings: Settings, as_of: date, symbols: Sequence[str], sessions: int
) -> pd.DataFrame:
    """Daily simple returns (rows: sessions, columns: symbols) of the last ``sessions``
    exchange sessions up to ``as_of`` (:attr:`tiller.pipeline.market.Market.returns`, as
    the backtest reads them)."""
    start = as_of - timedelta(days=int(sessions * 7 / 5) + 20)
    bars = store.load_bars(list(symbols), start, as_of)
    if bars.empty:
        return pd.DataFrame(columns=list(symbols), dtype=float)
    calendars = {s: settings.calendar_of(s) for s in symbols}
    no_vix = pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "close": []})
    market = Market.from_bars(bars, no_vix, list(symbols), calendars)
    return market.returns.tail(sessions)


def returns_window(
    store: Store, settings: Settings, as_of: date, symbols: Sequence[str], sessions: int
) -> ReturnWindow:
    """:func:`returns_frame` as the stage functions take it."""
    return ReturnWindow.from_frame(returns_frame(store, settings, as_of, symbols, sessions))
