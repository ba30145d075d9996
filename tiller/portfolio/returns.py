"""Daily returns on exchange sessions (pure), as the risk and optimize stages read them.

The daily flow and the backtest both call :func:`session_returns`; the flow on the bars of
one window, the backtest once on the whole history and then slices it per date (the same
rows and values for every window with full data: ``pct_change`` and ``ffill`` look back
one row only).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from tiller.calendars import sessions as calendar_sessions


def price_matrix(bars: pd.DataFrame) -> pd.DataFrame:
    """Wide prices (rows: dates, columns: symbols) from long bars: ``adj_close``, else ``close``."""
    priced = bars.assign(price=bars["adj_close"].fillna(bars["close"]))
    return priced.pivot(index="date", columns="symbol", values="price").sort_index()


def wide_adjusted(bars: pd.DataFrame) -> pd.DataFrame:
    """Wide ``adj_close`` (NaN where the data has none)."""
    return bars.pivot(index="date", columns="symbol", values="adj_close").sort_index()


def session_returns(prices: pd.DataFrame, calendars: Mapping[str, str]) -> pd.DataFrame:
    """Daily simple returns (fractions) of wide ``prices`` on exchange sessions.

    When any column trades on XNYS, only XNYS sessions are kept: 24/7 assets have weekend
    rows the ETFs lack, so a crypto return spans Friday to Monday instead of the ETFs
    showing 0% weekends.  Gaps are carried forward, so a missing day is a 0% return
    followed by the catch-up move.  ``r_t = p_t / p_{t-1} - 1``; the first row is dropped.
    """
    if prices.empty:
        return pd.DataFrame()
    if "XNYS" in {calendars.get(str(c), "XNYS") for c in prices.columns}:
        open_days = calendar_sessions("XNYS", prices.index.min().date(), prices.index.max().date())
        prices = prices[prices.index.isin(open_days)]
    return prices.ffill().pct_change(fill_method=None).iloc[1:]
