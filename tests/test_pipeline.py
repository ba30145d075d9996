"""The panel computation (every date at once, as the backtest runs it) equals the one-date
computation (as the daily flow runs it) on real data, date after date."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import MARKET
from tiller.backtest.data import load_market
from tiller.calendars import sessions
from tiller.pipeline.market import Market
from tiller.settings import load_settings
from tiller.strategy.factors import factor_arrays, factor_panel, factors_at
from tiller.strategy.regime import regime_at
from tiller.strategy.signals import (
    KINDS,
    generate_signals,
    inputs_from_arrays,
    signal_panel,
    signals_at,
)

UNIVERSE = "SPY,QQQ,GLD,SLV,XLK,XLF,XLE,XLV,TLT,TIP,EFA,EEM,DBC,VNQ,BTC-USD"


@pytest.fixture(scope="module")
def history() -> tuple[Any, Any, pd.DataFrame, list[date]]:
    # the rules signals: every signal kind occurs (the trend rule has its own tests)
    settings = load_settings(
        data_sources=f"csv:{MARKET}",
        universe=UNIVERSE,
        home=Path("/none"),
        strategy={"signals": {"rule": "rules"}},
    )
    market = load_market(settings, date(2012, 1, 1), date(2023, 12, 29))
    calendars = {s: settings.calendar_of(s) for s in settings.symbols}
    panel = factor_panel(market.bars, settings.strategy.factors, calendars)
    days = [d.date() for d in sessions("XNYS", date(2012, 1, 3), date(2023, 12, 29))][::17]
    return settings, market, panel, days


def test_factor_values_of_every_date_equal_the_one_date_snapshot(history: Any) -> None:
    settings, _, panel, days = history
    symbols = settings.symbols
    arrays = factor_arrays(panel, days, symbols)
    for t, day in enumerate(days):
        snapshot = factors_at(panel, day)
        for j, symbol in enumerate(symbols):
            assert arrays.present[t, j] == (symbol in snapshot.bar_dates)
            factors = snapshot.factors_of(symbol)
            for name, values in arrays.values.items():
                expected = factors.get(name, np.nan)
                assert values[t, j] == pytest.approx(expected, nan_ok=True, abs=0, rel=0), (
                    day,
                    symbol,
                    name,
                )
            rank = factors.get("momentum_12_1_rank", np.nan)
            assert arrays.rank[t, j] == pytest.approx(rank, nan_ok=True, abs=0, rel=0)
            assert arrays.history[t, j] == snapshot.history.get(symbol, 0)


def test_signals_of_every_date_equal_the_one_date_signals(history: Any) -> None:
    settings, market, panel, days = history
    config = settings.strategy.signals
    arrays = factor_arrays(panel, days, settings.symbols)
    vix_market = Market.from_bars(
        market.bars,
        market.vix,
        settings.symbols,
        {s: settings.calendar_of(s) for s in settings.symbols},
    )
    vix = np.array([vix_market.vix_on(d) for d in days], dtype=float)
    every = signal_panel(
        inputs_from_arrays(arrays, vix, config, settings.strategy.regime), config, 252
    )
    checked = 0
    for t, day in enumerate(days):
        one_date = generate_signals(
            factors_at(panel, day), regime_at(market.vix, day, settings.strategy.regime), config
        )
        panel_row = signals_at(every, t, config)
        assert [s.symbol for s in panel_row] == [s.symbol for s in one_date]
        for a, b in zip(panel_row, one_date, strict=True):
            assert (a.signal, a.long_eligible) == (b.signal, b.long_eligible), (day, a.symbol)
            assert a.confidence == b.confidence, (day, a.symbol)
            checked += 1
    kinds = {KINDS[k] for k in every.kind.ravel() if k >= 0}
    assert checked > 2000 and len(kinds) == len(KINDS)  # every rule fired somewhere
