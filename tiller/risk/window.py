"""Daily returns as the risk stage reads them: a small array with its column names.

The flow builds one from its window of stored bars, the backtest slices the whole
history's returns per day; both hand the same type to :func:`tiller.risk.assess_risk`,
so no pandas object is built per day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class ReturnWindow:
    """Rows of daily simple returns (fractions), oldest first; one column per symbol.

    Attributes
    ----------
    values:
        ``(rows, symbols)`` floats; NaN where a symbol has no return that day.
    symbols:
        The column names.
    """

    values: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    symbols: tuple[str, ...] = ()

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ReturnWindow:
        """From a frame of returns (rows: dates, columns: symbols)."""
        if frame.empty:
            return cls(np.empty((0, len(frame.columns))), tuple(map(str, frame.columns)))
        return cls(frame.to_numpy(dtype=float), tuple(str(c) for c in frame.columns))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.symbols

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def tail(self, rows: int) -> ReturnWindow:
        """The last ``rows`` rows."""
        return ReturnWindow(self.values[-rows:] if rows else self.values[:0], self.symbols)

    def select(self, symbols: Sequence[str]) -> np.ndarray:
        """The columns of ``symbols`` (each must be present), as ``(rows, len(symbols))``."""
        index = _positions(self.symbols)
        return self.values[:, [index[s] for s in symbols]]


@lru_cache(maxsize=64)
def _positions(symbols: tuple[str, ...]) -> dict[str, int]:
    return {s: i for i, s in enumerate(symbols)}


def pairwise_correlation(values: np.ndarray, min_periods: int) -> np.ndarray:
    """Pearson correlations of the columns over the rows where both are present.

    As ``pandas.DataFrame.corr(min_periods=...)``: a pair with fewer than ``min_periods``
    rows in common, or a constant series over them, has NaN; the diagonal is 1 where the
    column has data.
    """
    n = values.shape[1]
    if n == 0:
        return np.empty((0, 0))
    present = ~np.isnan(values)
    if present.all():
        if values.shape[0] < min_periods:
            return np.full((n, n), np.nan)
        centred = values - values.mean(axis=0)
        scale = np.sqrt((centred * centred).sum(axis=0))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = (centred.T @ centred) / np.outer(scale, scale)
        corr[:, scale == 0] = np.nan
        corr[scale == 0, :] = np.nan
        return np.clip(corr, -1.0, 1.0)
    # Pairwise-complete sums as matrix products (M: 1 where present, X0: NaN -> 0):
    # n_ab = M'M, s_ab = sum of a over the rows where b is present = X0'M, then the
    # usual centred moments cov = sxy - sa*sb/n, var_a = saa - sa^2/n.
    mask = present.astype(float)
    x0 = np.where(present, values, 0.0)
    count = mask.T @ mask
    sums = x0.T @ mask
    squares = (x0 * x0).T @ mask
    products = x0.T @ x0
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = products - sums * sums.T / count
        var_a = squares - sums * sums / count
        var_b = var_a.T
        corr = cov / np.sqrt(var_a * var_b)
    # a constant series over the common rows has no correlation (pandas: NaN); its
    # variance is zero up to rounding relative to its sum of squares
    flat = (var_a <= 1e-14 * squares) | (var_b <= 1e-14 * squares.T)
    corr[(count < min_periods) | flat | ~np.isfinite(corr)] = np.nan
    return np.clip(corr, -1.0, 1.0)
