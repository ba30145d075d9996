"""Cash dividends implied by a split-adjusted close and a split + dividend adjusted close.

Yahoo-style data (``../shared/data/PROVENANCE.md``): ``close`` is split-adjusted only,
``adj_close`` is also dividend-adjusted: every close before an ex-date ``t`` is scaled by
``1 - D_t / close_{t-1}``.  So with ``f_t = adj_close_t / close_t``::

    D_t = close_{t-1} * (1 - f_{t-1} / f_t)

E.g. SPY closes at 400.00 on the day before an ex-date with f = 0.9900, and f = 0.9940 on
the ex-date: ``D = 400 * (1 - 0.9900 / 0.9940) = 400 * 0.0040241 = $1.6097`` a share.

Ratio noise (the adjusted close is stored with ~7 significant digits) is ignored: a move
of ``f`` below :data:`MIN_YIELD` of the price is no dividend.  On the shared data the
noise stays under 2e-6 of the price (early, low-priced history) and the smallest real
distributions are above 1e-5 (TIP paid $0.004 on 2010-03-01, 3.8e-5 of its price).
"""

from __future__ import annotations

import pandas as pd

MIN_YIELD = 5e-6
"""Smallest dividend recognised, as a fraction of the previous close (0.0005%)."""


def implied_dividends(close: pd.DataFrame, adj_close: pd.DataFrame) -> pd.DataFrame:
    """USD per share paid on each ex-date (rows: dates, columns: symbols; 0 elsewhere).

    ``close`` and ``adj_close`` are wide frames on the same index and columns.  Each
    symbol is read on its own rows (a 24/7 asset's weekend rows do not break an ETF's
    day-to-day ratio); a missing ``adj_close`` means unadjusted data: no dividend.
    """
    out = pd.DataFrame(0.0, index=close.index, columns=close.columns)
    for symbol in close.columns:
        both = pd.DataFrame({"close": close[symbol], "adj": adj_close[symbol]}).dropna()
        factor = both["adj"] / both["close"]
        fraction = 1.0 - factor.shift(1) / factor
        paid = (both["close"].shift(1) * fraction).where(fraction > MIN_YIELD)
        paid = paid.dropna()
        out.loc[paid.index, symbol] = paid.to_numpy()
    return out
