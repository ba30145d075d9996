"""Reference strategies, run by ``tiller backtest`` through configuration profiles only
(``config/profiles``), against an independent plain-pandas computation on the same data.

Both strategies trade at the close of the decision day, in fractional lots of 0.0001
share, and pay 0.05% slippage + 0.10% commission (the ETF cost class, with the volatility
and size terms switched off in the profile).  Cash dividends (implied by the adjusted
close, see :mod:`tiller.execution.dividends`) are paid into cash.  The NAV of every
session must agree to 0.01%.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import MARKET
from tiller.calendars import sessions
from tiller.settings import load_settings
from tiller.store.backtests import load_result
from tiller.store.repo import Store

START, END = "2005-01-01", "2023-12-31"
SLIPPAGE, COMMISSION, LOT = 0.0005, 0.0010, 0.0001
INVESTED = 0.99  # the profiles keep a 1% cash buffer for costs


def _tiller(home: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLER_")}
    env |= {"TILLER_HOME": str(home), "TILLER_DATA_SOURCES": f"csv:{MARKET}"}
    done = subprocess.run(
        [sys.executable, "-m", "tiller.cli", *args, "--no-benchmarks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _prices(symbols: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Closes and per-share dividends (USD) on the XNYS sessions of the window."""
    days = sessions("XNYS", pd.Timestamp(START).date(), pd.Timestamp(END).date())
    closes, dividends = {}, {}
    for symbol in symbols:
        raw = pd.read_csv(MARKET / f"{symbol}.csv", parse_dates=["date"]).set_index("date")
        factor = raw["adj_close"] / raw["close"]
        # Yahoo adjusts every close before an ex-date by (1 - D / previous close)
        fraction = 1 - factor.shift(1) / factor
        paid = (raw["close"].shift(1) * fraction).where(fraction > 5e-6, 0.0).fillna(0.0)
        closes[symbol] = raw["close"].reindex(days)
        dividends[symbol] = paid.reindex(days, fill_value=0.0)
    return pd.DataFrame(closes), pd.DataFrame(dividends)


def _cents(x: float) -> float:
    return math.floor(abs(x) * 100 + 0.5 + 1e-9) / 100 * (1 if x >= 0 else -1)


def _reference_nav(weights: dict[str, float], rebalance_days: pd.DatetimeIndex) -> pd.Series:
    """Plain pandas/python: trade to ``weights`` x 99% of NAV at the close on each
    rebalance day (sells first), pay dividends in cash, value at the closes."""
    symbols = list(weights)
    closes, dividends = _prices(symbols)
    cash, qty = 100_000.0, dict.fromkeys(symbols, 0.0)
    navs = {}
    for day, close in closes.iterrows():
        for s in symbols:  # holders at the previous close receive the dividend
            cash = round(cash + _cents(qty[s] * dividends.at[day, s]), 2)
        if day in rebalance_days:
            nav = cash + sum(_cents(qty[s] * close[s]) for s in symbols)
            change = {}
            for s in symbols:
                raw = weights[s] * INVESTED * nav / close[s] - qty[s]
                change[s] = math.trunc(raw / LOT + math.copysign(1e-9, raw)) * LOT
            for s in sorted(symbols, key=lambda s: change[s] > 0):  # sells first
                q = change[s]
                if abs(q) < LOT / 2:
                    continue
                price = close[s] * (1 + SLIPPAGE if q > 0 else 1 - SLIPPAGE)
                gross = _cents(abs(q) * price)
                fee = _cents(abs(q) * price * COMMISSION)
                cash = round(cash - gross - fee if q > 0 else cash + gross - fee, 2)
                qty[s] = round(qty[s] + q, 10)
        navs[day] = cash + sum(_cents(qty[s] * close[s]) for s in symbols)
    return pd.Series(navs)


def _check(home: Path, run_id: str, reference: pd.Series) -> None:
    settings = load_settings(home=home)
    result = load_result(Store.open(settings.db_url), run_id)
    nav = result.daily["nav"]
    nav.index = pd.to_datetime(nav.index)
    assert list(nav.index) == list(reference.index)
    relative = (nav / reference - 1).abs()
    assert relative.max() < 1e-4, relative.idxmax()
    # the trading costs were paid: the first trade alone cost > $100
    assert result.metrics["costs"] > 100


@pytest.mark.slow
def test_buy_and_hold_spy_matches_plain_pandas(tmp_path: Path) -> None:
    summary = _tiller(
        tmp_path,
        "backtest",
        "--profile",
        "buy-and-hold-spy",
        "--start",
        START,
        "--end",
        END,
        "--json",
    )
    assert summary["cadence"] == "once" and summary["metrics"]["trades"] == 1
    days = sessions("XNYS", pd.Timestamp(START).date(), pd.Timestamp(END).date())
    _check(tmp_path, summary["run_id"], _reference_nav({"SPY": 1.0}, days[:1]))


@pytest.mark.slow
def test_sixty_forty_monthly_matches_plain_pandas(tmp_path: Path) -> None:
    summary = _tiller(
        tmp_path, "backtest", "--profile", "sixty-forty", "--start", START, "--end", END, "--json"
    )
    assert summary["cadence"] == "monthly"
    days = sessions("XNYS", pd.Timestamp(START).date(), pd.Timestamp(END).date())
    month = pd.Series(days.to_period("M"), index=days)
    first_of_month = days[(month != month.shift(1)).to_numpy()]
    assert len(first_of_month) == 228  # 19 years x 12 months
    reference = _reference_nav({"SPY": 0.6, "TLT": 0.4}, first_of_month)
    _check(tmp_path, summary["run_id"], reference)
    # both legs were rebalanced every month: ~2 trades a month
    assert summary["metrics"]["trades"] >= 2 * 228 - 10
    assert np.isfinite(reference).all()
