"""Independent plain pandas/numpy implementation of the TREND-RP reference strategy.

The strategy (trend filter + equal risk contribution, capped, with a cash buffer) is
defined in ``/work/shared/reference/TREND-RP.md``.  This module knows nothing about
Tiller: it is the yardstick the engine's figures are checked against, and the
"numpy floor" for the speed benchmarks.

Run ``python tests/reference_trend_rp.py`` to print the figures of both tasks.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ETF14 = (
    "SPY", "QQQ", "GLD", "SLV", "XLK", "XLF", "XLE",
    "XLV", "TLT", "TIP", "EFA", "EEM", "DBC", "VNQ",
)  # fmt: skip
ETF14_WINDOW = ("2007-01-03", "2023-12-29")
SCALE150_WINDOW = ("2005-01-01", "2023-12-31")
SCALE150_SIZE = 150

LOOKBACK_TREND = 200
LOOKBACK_RISK = 60
PD_RATIO = 1e-10
TRADING_DAYS = 252


@dataclass(frozen=True)
class Panel:
    """Traded prices of a task on its calendar.

    Attributes
    ----------
    prices : numpy.ndarray
        ``(days, symbols)`` float array: NaN before a symbol's first row, carried
        forward after its last row.
    live : numpy.ndarray
        ``(days, symbols)`` bool array, true where the symbol has a real row.
    dates : pandas.DatetimeIndex
        The calendar: every date in the window on which any symbol has a row.
    symbols : list of str
        Column labels of ``prices`` and ``live``.
    """

    prices: np.ndarray
    live: np.ndarray
    dates: pd.DatetimeIndex
    symbols: list[str]


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`run`.

    Attributes
    ----------
    nav : pandas.Series
        Net asset value at every close, indexed by date.
    rebalances : int
        Days with at least one fill.
    erc : int
        Invested rebalances whose weights came from the ERC solve.
    inverse_vol : int
        Invested rebalances that fell back to inverse-volatility weights.
    traded : float
        Two-way turnover summed over the window: ``sum |qty| x price / NAV``.
    """

    nav: pd.Series
    rebalances: int
    erc: int
    inverse_vol: int
    traded: float

    def metrics(self) -> dict[str, float]:
        """Figures as defined in the reference ("Figures to reproduce").

        Returns
        -------
        dict
            ``final_nav``, ``cagr``, ``vol``, ``sharpe``, ``max_drawdown``,
            ``rebalances``, ``turnover`` (per year), ``erc`` and ``inverse_vol``.
        """
        nav = self.nav.to_numpy()
        years = (self.nav.index[-1] - self.nav.index[0]).days / 365.25
        returns = nav[1:] / nav[:-1] - 1.0
        std = returns.std(ddof=1)
        return {
            "final_nav": float(nav[-1]),
            "cagr": float((nav[-1] / nav[0]) ** (1.0 / years) - 1.0),
            "vol": float(std * math.sqrt(TRADING_DAYS)),
            "sharpe": float(returns.mean() / std * math.sqrt(TRADING_DAYS)),
            "max_drawdown": float((nav / np.maximum.accumulate(nav) - 1.0).min()),
            "rebalances": self.rebalances,
            "turnover": self.traded / years,
            "erc": self.erc,
            "inverse_vol": self.inverse_vol,
        }


def _panel(frame: pd.DataFrame) -> Panel:
    """Build a :class:`Panel` from a wide ``date x symbol`` frame of real rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        Prices indexed by date (the calendar), NaN where a symbol has no row.

    Returns
    -------
    Panel
    """
    frame = frame.sort_index()
    live = frame.notna().to_numpy()
    # No symbol has gaps inside its history, so a forward fill only carries
    # prices past a delisting and leaves the pre-listing rows NaN.
    prices = frame.ffill().to_numpy(dtype=float)
    return Panel(prices, live, pd.DatetimeIndex(frame.index), list(frame.columns))


def load_etf14(data_dir: Path) -> Panel:
    """Load the ``etf14`` task: 14 ETFs, ``adj_close``, 2007-01-03 .. 2023-12-29.

    Parameters
    ----------
    data_dir : pathlib.Path
        The shared data folder holding ``market/<SYM>.csv``.

    Returns
    -------
    Panel
    """
    first, last = ETF14_WINDOW
    columns = {}
    for symbol in ETF14:
        raw = pd.read_csv(
            Path(data_dir) / "market" / f"{symbol}.csv",
            usecols=["date", "close", "adj_close"],
            index_col="date",
        )
        raw = raw.loc[(raw.index >= first) & (raw.index <= last)]
        columns[symbol] = raw["adj_close"].fillna(raw["close"])
    frame = pd.DataFrame(columns)
    frame.index = pd.to_datetime(frame.index)
    return _panel(frame)


def load_scale150(data_dir: Path) -> Panel:
    """Load the ``scale150`` task: first 150 symbols alphabetically, ``close``.

    Parameters
    ----------
    data_dir : pathlib.Path
        The shared data folder holding ``universe/us_equities_daily.csv.gz``.

    Returns
    -------
    Panel
        Window 2005-01-01 .. 2023-12-31.
    """
    first, last = SCALE150_WINDOW
    # Categorical columns turn the long-to-wide step into integer indexing.
    raw = pd.read_csv(
        Path(data_dir) / "universe" / "us_equities_daily.csv.gz",
        usecols=["date", "symbol", "close"],
        dtype={"date": "category", "symbol": "category", "close": float},
    )
    all_symbols = raw["symbol"].cat.categories
    all_dates = raw["date"].cat.categories
    symbols = sorted(all_symbols)[:SCALE150_SIZE]
    column_of = np.full(len(all_symbols), -1)
    column_of[all_symbols.get_indexer(symbols)] = np.arange(len(symbols))
    columns = column_of[raw["symbol"].cat.codes.to_numpy()]
    date_codes = raw["date"].cat.codes.to_numpy()
    # ISO dates compare correctly as strings, which is cheaper than parsing them all.
    in_window = np.asarray((all_dates >= first) & (all_dates <= last))
    keep = (columns >= 0) & in_window[date_codes]

    calendar = np.unique(date_codes[keep])
    calendar = calendar[np.argsort(np.asarray(all_dates[calendar]))]
    row_of = np.full(len(all_dates), -1)
    row_of[calendar] = np.arange(len(calendar))
    values = np.full((len(calendar), len(symbols)), np.nan)
    values[row_of[date_codes[keep]], columns[keep]] = raw["close"].to_numpy()[keep]
    dates = pd.to_datetime(np.asarray(all_dates[calendar]))
    return _panel(pd.DataFrame(values, index=dates, columns=symbols))


def erc_weights(cov: np.ndarray, tol: float = 1e-12, max_iter: int = 100) -> np.ndarray | None:
    """Equal-risk-contribution weights, or None when the solve does not converge.

    Minimises ``y'Cy / 2 - sum(log y) / n`` by damped Newton steps; its stationary
    point has ``y_i (C y)_i = 1/n`` for all ``i`` and ``w = y / sum(y)``.

    Parameters
    ----------
    cov : numpy.ndarray
        ``(n, n)`` positive definite covariance matrix.
    tol : float
        Largest admitted deviation of any ``y_i (C y)_i`` from ``1/n``,
        relative to ``1/n``.
    max_iter : int
        Newton iterations before giving up.

    Returns
    -------
    numpy.ndarray or None
        Weights summing to 1, or None without convergence.
    """
    n = len(cov)
    budget = 1.0 / n
    # Start from inverse volatility scaled so that y'Cy = 1: close to the answer.
    y = 1.0 / np.sqrt(np.diag(cov))
    y /= math.sqrt(y @ cov @ y)
    for _ in range(max_iter):
        cy = cov @ y
        gradient = cy - budget / y
        if np.max(np.abs(y * cy - budget)) <= tol * budget:
            return y / y.sum()
        hessian = cov + np.diag(budget / y**2)
        step = np.linalg.solve(hessian, gradient)
        # Damp the step so y stays strictly positive (the log barrier's domain).
        shrink = step / y
        alpha = min(1.0, 0.9 / shrink.max()) if shrink.max() > 0 else 1.0
        y = y - alpha * step
    return None


def risk_weights(returns: np.ndarray) -> tuple[np.ndarray, str]:
    """Rule 4: risk weights of the eligible assets from their daily returns.

    Parameters
    ----------
    returns : numpy.ndarray
        ``(60, n)`` simple daily returns ending on the decision day.

    Returns
    -------
    weights : numpy.ndarray
        ``n`` positive weights summing to 1.
    method : str
        ``"erc"`` or ``"inverse_vol"``.  A single asset counts as ERC: ``w = 1``
        is its (trivial) equal-risk solution, and the reference counts it so.
    """
    n = returns.shape[1]
    if n == 1:
        return np.ones(1), "erc"
    cov = np.cov(returns, rowvar=False, ddof=1)
    eigenvalues = np.linalg.eigvalsh(cov)
    if eigenvalues[0] > PD_RATIO * eigenvalues[-1]:
        weights = erc_weights(cov)
        if weights is not None:
            return weights, "erc"
    inverse = 1.0 / np.sqrt(np.diag(cov))
    return inverse / inverse.sum(), "inverse_vol"


def cap_weights(weights: np.ndarray, cap: float, level: float) -> np.ndarray:
    """Rule 5: capped target fractions summing to ``level`` (or all ``cap``).

    Water-filling: ``f_i = min(cap, k w_i)`` with ``k`` such that ``sum f = level``,
    unless ``n * cap <= level``, in which case every asset gets ``cap``.

    Parameters
    ----------
    weights : numpy.ndarray
        Positive risk weights.
    cap : float
        Largest fraction of NAV per asset.
    level : float
        Invested fraction of NAV.

    Returns
    -------
    numpy.ndarray
        Target fractions of NAV.
    """
    n = len(weights)
    if n * cap <= level:
        return np.full(n, cap)
    capped = np.zeros(n, dtype=bool)
    while True:
        k = (level - cap * capped.sum()) / weights[~capped].sum()
        now = capped | (k * weights >= cap)
        if (now == capped).all():
            return np.where(capped, cap, k * weights)
        capped = now


def run(
    panel: Panel,
    cap: float,
    level: float = 0.95,
    cost: float = 0.0005,
    commission: float = 0.001,
    initial: float = 100_000.0,
) -> Result:
    """Backtest the TREND-RP strategy (rules 1-7) on a panel.

    Parameters
    ----------
    panel : Panel
        Traded prices and liveness of the task.
    cap : float
        Largest target fraction of NAV per asset.
    level : float
        Invested fraction of NAV when enough assets are eligible.
    cost : float
        Slippage: buys fill at ``P (1 + cost)``, sells at ``P (1 - cost)``.
    commission : float
        Commission as a fraction of the filled notional.
    initial : float
        Starting cash.

    Returns
    -------
    Result
    """
    prices, live = panel.prices, panel.live
    days, width = prices.shape
    marks = np.nan_to_num(prices)  # unlisted symbols hold no shares, so 0 is harmless
    # Rows with a real price so far; a full trend window needs LOOKBACK_TREND of them.
    listed = np.cumsum(~np.isnan(prices), axis=0)
    months = panel.dates.year * 12 + panel.dates.month
    month_ends = np.flatnonzero(np.diff(months.to_numpy()) != 0)

    shares = np.zeros(width)
    cash = initial
    nav = np.empty(days)
    counts = {"erc": 0, "inverse_vol": 0}
    rebalances, traded, start = 0, 0.0, 0
    for t in month_ends:
        # Holdings are constant between rebalances, so the NAV path is one product.
        nav[start:t] = cash + marks[start:t] @ shares
        start = t

        price = prices[t]
        eligible = live[t] & (listed[t] >= LOOKBACK_TREND)
        if eligible.any():
            window = prices[t + 1 - LOOKBACK_TREND : t + 1, eligible]
            eligible[eligible] = price[eligible] > window.mean(axis=0)
        targets = np.zeros(width)
        method = None
        if eligible.any():
            recent = prices[t - LOOKBACK_RISK : t + 1, eligible]
            weights, method = risk_weights(recent[1:] / recent[:-1] - 1.0)
            value = cash + marks[t] @ shares
            targets[eligible] = cap_weights(weights, cap, level) * value / price[eligible]

        trade = targets - shares
        if not trade.any():
            continue
        # Fractional shares and no cash constraint: sells-before-buys cannot change
        # the outcome, so both legs are settled together.
        fill = marks[t] * np.where(trade > 0, 1.0 + cost, 1.0 - cost)
        notional = trade * fill
        cash -= notional.sum() + commission * np.abs(notional).sum()
        shares = targets
        rebalances += 1
        if method is not None:
            counts[method] += 1
        nav_t = cash + marks[t] @ shares
        traded += np.abs(trade) @ marks[t] / nav_t
    nav[start:] = cash + marks[start:] @ shares

    return Result(
        nav=pd.Series(nav, index=panel.dates, name="nav"),
        rebalances=rebalances,
        erc=counts["erc"],
        inverse_vol=counts["inverse_vol"],
        traded=float(traded),
    )


def _report(name: str, result: Result) -> str:
    m = result.metrics()
    return (
        f"{name:9s} final {m['final_nav']:,.0f}  CAGR {m['cagr']:.2%}  vol {m['vol']:.2%}  "
        f"Sharpe {m['sharpe']:.3f}  max DD {m['max_drawdown']:.2%}  "
        f"rebalances {m['rebalances']}  turnover {m['turnover']:.2f}/yr  "
        f"ERC {m['erc']} / inverse-vol {m['inverse_vol']}"
    )


def main() -> None:
    """Run the tasks named on the command line (default: both) on the shared data and
    print their figures and wall time."""
    began = time.perf_counter()
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    data_dir = Path(os.environ.get("TILLER_SHARED_DATA", str(default)))
    tasks = {"etf14": (load_etf14, 0.30), "scale150": (load_scale150, 0.05)}
    for name in sys.argv[1:] or list(tasks):
        load, cap = tasks[name]
        started = time.perf_counter()
        result = run(load(data_dir), cap=cap)
        print(f"{_report(name, result)}  [{time.perf_counter() - started:.2f} s]")
    print(f"wall time (imports excluded): {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
