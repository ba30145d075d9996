"""The data-quality suite: each SPEC check, severities, and messages naming symbol, date, check."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from tiller import calendars
from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import CsvProvider
from tiller.settings import load_settings
from tiller.validation import validate_market_data

from .conftest import MARKET

CONFIG = load_settings().validation
AS_OF = date(2024, 3, 8)


def _clean(symbol: str = "SPY", sessions: int = 20, end: date = AS_OF) -> pd.DataFrame:
    days = calendars.sessions("XNYS", date(2023, 12, 1), end)[-sessions:]
    close = 100 * np.cumprod(1 + 0.01 * np.sin(np.arange(sessions)))
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": days,
            "open": close * 0.999,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
        }
    )


def _validate(bars: pd.DataFrame, **kwargs):
    kwargs.setdefault("calendar_of", {s: "XNYS" for s in bars["symbol"].unique()})
    return validate_market_data(bars, AS_OF, CONFIG, **kwargs)


def test_clean_data_passes() -> None:
    report = _validate(_clean())
    assert report.status == "passed" and report.findings == ()
    assert report.rows_checked == 20 and report.expectations_run >= 13


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("close", np.nan, "not_null"),
        ("low", -1.0, "positive_prices"),
        ("high", 50.0, "ohlc_consistency"),  # high below open/close
        ("low", 500.0, "ohlc_consistency"),  # low above open/close
    ],
)
def test_blocking_checks_name_symbol_date_and_check(column: str, value: float, check: str) -> None:
    bars = _clean()
    bars.loc[12, column] = value
    day = bars.loc[12, "date"].date()
    report = _validate(bars)
    assert report.status == "blocked"
    finding = next(f for f in report.blocking if f.check == check)
    assert (finding.series, finding.date) == ("SPY", day)
    assert f"SPY on {day}: {check}" in report.blocking_message()


def test_a_big_jump_that_held_is_accepted_as_a_warning_with_the_move() -> None:
    """The level moves up 80% on session 10 and stays there: the next two closes are
    within 10% of it, so the jump is real (a warning), and nothing is refused."""
    bars = _clean()
    bars.loc[10:, ["open", "high", "low", "close"]] *= 1.8
    report = _validate(bars)
    assert report.status == "warnings" and report.refused == []
    (finding,) = report.findings
    assert finding.check == "jump" and finding.severity == "warning"
    assert finding.date == bars.loc[10, "date"].date()
    assert "accepted: the new level held for the next 2 sessions" in finding.message
    # |close_10 / close_9 - 1| with close_10 scaled by 1.8
    assert finding.observed == pytest.approx(bars.loc[10, "close"] / bars.loc[9, "close"] - 1)


def test_a_one_day_spike_that_reverses_is_quarantined_and_not_the_next_days_base() -> None:
    """A single +60% tick on session 12 that is gone on session 13: session 12 is refused
    (quarantine), and session 13 is measured from session 11's close, so it passes."""
    bars = _clean()
    bars.loc[12, ["open", "high", "low", "close"]] *= 1.6
    report = _validate(bars)
    assert report.status == "quarantined"
    (finding,) = report.findings
    assert (finding.check, finding.severity) == ("jump", "quarantine")
    assert finding.date == bars.loc[12, "date"].date()
    assert finding.observed == pytest.approx(bars.loc[12, "close"] / bars.loc[11, "close"] - 1)
    assert "refused" in finding.message
    assert [(f.series, f.date) for f in report.refused] == [("SPY", finding.date)]
    assert report.blocked_symbols() == []  # today's (as_of) bar is fine


def test_a_jump_on_the_latest_bar_blocks_that_symbol_unless_a_second_source_agrees() -> None:
    bars = _clean()
    last = bars.index[-1]
    bars.loc[last, ["open", "high", "low", "close"]] *= 1.6
    report = _validate(bars)
    assert report.status == "quarantined" and report.blocked_symbols() == ["SPY"]
    day = bars.loc[last, "date"]
    agree = pd.DataFrame(
        {
            "series": ["SPY"],
            "date": [day],
            "primary_source": ["csv"],
            "secondary_source": ["yfinance"],
            "primary_close": [bars.loc[last, "close"]],
            "secondary_close": [bars.loc[last, "close"] * 1.001],
            "deviation": [0.001],
        }
    )
    confirmed = _validate(bars, deviations=agree)
    (finding,) = confirmed.findings
    assert finding.severity == "warning" and "confirmed by a second source" in finding.message
    assert confirmed.blocked_symbols() == []
    run_wide = validate_market_data(
        bars,
        AS_OF,
        CONFIG.model_copy(update={"quarantine_scope": "run"}),
        calendar_of={"SPY": "XNYS"},
    )
    assert run_wide.status == "blocked" and "correct the source" in run_wide.blocking_message()


def test_the_seam_with_stored_history_is_checked_for_jumps() -> None:
    """The stored close before the window is a third of the new bars': both new bars are
    200% above the last good close, and the new level has held for one session only."""
    bars = _clean(sessions=2)
    previous = pd.DataFrame({"symbol": ["SPY"], "close": [bars["close"].iloc[0] / 3]})
    report = _validate(bars, previous_close=previous)
    assert [f.check for f in report.findings] == ["jump", "jump"]
    assert report.findings[0].date == bars["date"].iloc[0].date()
    assert {f.severity for f in report.findings} == {"quarantine"}


def test_missing_sessions_over_five_percent_are_flagged() -> None:
    bars = _clean(sessions=40).drop(index=[5, 6, 7]).reset_index(drop=True)  # 3 / 40 = 7.5%
    report = _validate(bars)
    (finding,) = report.findings
    assert finding.check == "missing_sessions" and finding.severity == "warning"
    assert finding.observed == pytest.approx(3 / 40)


def test_a_stale_last_bar_blocks() -> None:
    bars = _clean(end=date(2024, 3, 6))  # two sessions behind as_of (Thu 7th, Fri 8th)
    report = _validate(bars)
    (finding,) = report.blocking
    assert finding.check == "stale" and finding.observed == 2
    assert "last bar is 2024-03-06, 2 session(s) before as_of 2024-03-08" in finding.message


def test_a_series_with_no_data_at_all_is_stale() -> None:
    report = _validate(_clean(), expected_series=["SPY", "GLD"])
    assert [(f.series, f.check) for f in report.blocking] == [("GLD", "stale")]


def test_index_ohlc_quirks_are_warnings_but_a_missing_close_still_blocks() -> None:
    vix = _clean("VIX")
    vix.loc[3, "open"] = vix.loc[3, "high"] * 1.05  # CBOE legacy: open above the high
    report = _validate(vix, index_series=["VIX"])
    assert report.status == "warnings"
    vix.loc[4, "close"] = np.nan
    assert _validate(vix, index_series=["VIX"]).status == "blocked"


def test_cross_source_deviation_over_one_percent_is_flagged() -> None:
    deviations = pd.DataFrame(
        {
            "series": ["SPY", "SPY"],
            "date": pd.to_datetime(["2024-03-07", "2024-03-08"]),
            "primary_source": "yfinance",
            "secondary_source": "massive",
            "primary_close": [100.0, 100.0],
            "secondary_close": [100.5, 101.5],
            "deviation": [0.005, 0.015],
        }
    )
    report = _validate(_clean(), deviations=deviations)
    (finding,) = report.findings
    assert finding.check == "cross_source" and finding.date == date(2024, 3, 8)
    assert "yfinance close 100 vs massive 101.5 (1.50% apart)" in finding.message


def test_real_etf_history_passes_and_real_vix_quirks_are_only_warnings() -> None:
    provider = CsvProvider(MARKET)
    frames = []
    for symbol in ("SPY", "GLD", "TLT", "VIX"):
        bars = provider.fetch(
            SeriesRequest(symbol, SeriesKind.BAR, date(2004, 1, 2), date(2020, 6, 30))
        )
        frames.append(bars.assign(symbol=symbol))
    bars = pd.concat(frames, ignore_index=True)
    report = validate_market_data(
        bars,
        date(2020, 6, 30),
        CONFIG,
        {s: "XNYS" for s in ("SPY", "GLD", "TLT", "VIX")},
        index_series=["VIX"],
    )
    assert report.blocking == []
    vix_checks = {f.check for f in report.findings if f.series == "VIX"}
    assert "ohlc_consistency" in vix_checks and "jump" in vix_checks  # 2007-02-27, 2018-02-05
    assert {f.series for f in report.findings} == {"VIX"}
