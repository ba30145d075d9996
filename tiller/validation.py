"""The validate stage's maths: a great-expectations suite over freshly ingested data.

Pure: frames and config in, a :class:`QualityReport` out; no Prefect, no
database.  Three batches are validated, each with its own suite:

``bars`` (one row per series and session; SPEC stage 2)
    not_null          open/high/low/close present
    positive_prices   open/high/low/close > 0
    ohlc_consistency  high >= max(open, close) and min(open, close) >= low
    jump              |close_t / close_g - 1| <= jump_threshold, with ``close_g`` the last
                      *good* close before t (a refused spike is never the base of the
                      next day's move).  A jump is confirmed -- accepted, a warning --
                      when a second source agrees on that close (within
                      ``cross_source_threshold``), or when the next
                      ``jump_confirm_sessions`` closes stay within
                      ``jump_persist_tolerance`` of it (the new level held); otherwise
                      it is refused with the check's severity (``quarantine``).
``coverage`` (one row per series)
    missing_sessions  share of calendar sessions between the series' first and
                      last validated bar that have no bar <= missing_threshold
    stale             sessions of the series' calendar after its last bar, up
                      to as_of, <= stale_tolerance_sessions
``cross_source`` (one row per series and session served by two sources)
    cross_source      |secondary close / primary close - 1| <= threshold

Each failed row becomes a :class:`Finding` with the series, date, check and
severity (``blocking``, ``quarantine`` or ``warning``, from config; relaxed for the
volatility index).  A row-level finding that is ``blocking`` or ``quarantine``
refuses its bar (:attr:`QualityReport.refused`): the stage moves it out of the store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from tiller import calendars
from tiller.settings import ValidationConfig

PRICE_COLUMNS = ("open", "high", "low", "close")
ROW_CHECKS = ("not_null", "positive_prices", "ohlc_consistency", "jump", "cross_source")
"""Checks about one bar: a refused finding of these quarantines that bar."""
REFUSING = ("blocking", "quarantine")


@dataclass(frozen=True)
class Finding:
    """One failed check on one series (and session, where the check is per row)."""

    series: str
    date: date | None
    check: str
    severity: str
    observed: float | None
    threshold: float | None
    message: str


@dataclass(frozen=True)
class QualityReport:
    """The data-quality outcome of one validate stage."""

    as_of: date
    series_checked: int
    rows_checked: int
    expectations_run: int
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "blocking"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    quarantine_scope: str = "symbol"

    @property
    def quarantined(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "quarantine"]

    @property
    def refused(self) -> list[Finding]:
        """Row-level findings that refuse their bar (blocking or quarantine), by bar."""
        return [
            f
            for f in self.findings
            if f.check in ROW_CHECKS and f.severity in REFUSING and f.date is not None
        ]

    def blocked_symbols(self) -> list[str]:
        """Symbols not traded today: their ``as_of`` bar is quarantined."""
        return sorted({f.series for f in self.quarantined if f.date == self.as_of})

    @property
    def status(self) -> str:
        """``blocked`` if any blocking finding (or a quarantine when its scope is the run),
        ``quarantined`` if bars were quarantined, ``warnings`` if any warning, else
        ``passed``."""
        if self.blocking or (self.quarantined and self.quarantine_scope == "run"):
            return "blocked"
        if self.quarantined:
            return "quarantined"
        return "warnings" if self.findings else "passed"

    def blocking_message(self, limit: int = 10) -> str:
        """A readable list of what blocks the run, and what to do about it."""
        stopping = self.blocking or (self.quarantined if self.quarantine_scope == "run" else [])
        lines = [f.message for f in stopping[:limit]]
        more = len(stopping) - limit
        if more > 0:
            lines.append(f"... and {more} more")
        todo = (
            "the refused bars are quarantined (no stage or later session uses them); correct "
            "the source and run this date again: they are fetched again"
        )
        return "blocking data-quality failure(s):\n  " + "\n  ".join([*lines, todo])


@lru_cache(maxsize=1)
def _context():
    """One ephemeral great-expectations context per process (offline, quiet)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    # GX pins this logger at INFO and announces a temporary docs folder on every start.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _validate(
    name: str, frame: pd.DataFrame, expectations: Sequence[Any], index: list[str]
) -> list[Any]:
    """Run ``expectations`` on ``frame``; return GX results with failing rows' index columns."""
    import great_expectations as gx

    context = _context()
    source = context.data_sources.add_or_update_pandas(f"tiller_{name}")
    asset = source.add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(name).get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = gx.ExpectationSuite(name=f"tiller_{name}", expectations=list(expectations))
    result = batch.validate(
        suite,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index},
    )
    return list(result.results)


def _bar_frame(
    bars: pd.DataFrame,
    jump_from: pd.DataFrame | None,
    config: ValidationConfig,
    guarded: set[str],
    confirmed_by_source: set[tuple[str, pd.Timestamp]],
) -> pd.DataFrame:
    """Bars plus the derived columns the suite checks (max/min of open and close, jump).

    ``jump`` is measured from the last good close (module docstring); ``confirmed`` says
    why a jump above the threshold is accepted (``""`` when it is not).  For series not
    in ``guarded`` (the volatility index, whose jumps are real) every close is good.
    """
    frame = bars.loc[:, ["symbol", "date", *PRICE_COLUMNS]].sort_values(["symbol", "date"])
    frame = frame.reset_index(drop=True)
    frame["max_open_close"] = frame[["open", "close"]].max(axis=1, skipna=False)
    frame["min_open_close"] = frame[["open", "close"]].min(axis=1, skipna=False)
    seam = (
        jump_from.set_index("symbol")["close"]
        if jump_from is not None and not jump_from.empty
        else pd.Series(dtype=float)
    )
    previous = np.full(len(frame), np.nan)
    confirmed = [""] * len(frame)
    closes = frame["close"].to_numpy(dtype=float)
    symbols = frame["symbol"].to_numpy()
    dates = frame["date"].to_numpy()
    k, tolerance = config.jump_confirm_sessions, config.jump_persist_tolerance
    start = 0
    while start < len(frame):
        end = start
        while end < len(frame) and symbols[end] == symbols[start]:
            end += 1
        symbol = str(symbols[start])
        good = float(seam[symbol]) if symbol in seam.index else np.nan
        for i in range(start, end):
            previous[i] = good
            close = closes[i]
            if not (np.isfinite(close) and close > 0):
                continue
            if not np.isfinite(good) or abs(close / good - 1.0) <= config.jump_threshold:
                good = close
                continue
            if (symbol, pd.Timestamp(dates[i])) in confirmed_by_source:
                confirmed[i] = "confirmed by a second source"
            elif i + k < end and all(
                abs(closes[j] / close - 1.0) <= tolerance for j in range(i + 1, i + k + 1)
            ):
                confirmed[i] = f"the new level held for the next {k} sessions"
            if confirmed[i] or symbol not in guarded:
                good = close
        start = end
    frame["prev_close"] = previous
    frame["jump"] = (frame["close"] / frame["prev_close"] - 1.0).abs()
    frame["confirmed"] = confirmed
    return frame


def _coverage(bars: pd.DataFrame, as_of: date, calendar_of: dict[str, str]) -> pd.DataFrame:
    rows = []
    for symbol, group in bars.groupby("symbol", sort=True):
        calendar = calendar_of.get(str(symbol), "XNYS")
        dates = pd.DatetimeIndex(group["date"])
        first, last = dates.min().date(), dates.max().date()
        expected = calendars.sessions(calendar, first, last)
        missing = int((~expected.isin(dates)).sum())
        behind = len(calendars.sessions(calendar, last, as_of)) - 1
        rows.append(
            {
                "symbol": symbol,
                "last_date": pd.Timestamp(last),
                "expected": len(expected),
                "missing": missing,
                "missing_share": missing / len(expected) if len(expected) else 0.0,
                "sessions_behind": max(behind, 0),
            }
        )
    return pd.DataFrame(rows)


def validate_market_data(
    bars: pd.DataFrame,
    as_of: date,
    config: ValidationConfig,
    calendar_of: dict[str, str],
    index_series: Sequence[str] = (),
    deviations: pd.DataFrame | None = None,
    previous_close: pd.DataFrame | None = None,
    expected_series: Sequence[str] = (),
) -> QualityReport:
    """Validate bars (long frame: symbol, date, open, high, low, close, ...).

    Parameters
    ----------
    bars:
        The rows to check: what ingest wrote, per series from its first new
        session (plus context) to ``as_of``.
    as_of:
        The run's session date; staleness is measured against it.
    config:
        Thresholds and severities.
    calendar_of:
        Exchange calendar per series (``XNYS``, ``24/7``).
    index_series:
        Series whose checks use ``config.index_severity`` (the volatility index).
    deviations:
        Cross-source comparisons: ``series, date, primary_source,
        secondary_source, primary_close, secondary_close, deviation``.
    previous_close:
        ``symbol, close``: the stored close before each series' first row, so
        a jump at the seam with stored history is seen.
    expected_series:
        Series that must have data; one with no bar at all is a stale finding.
    """
    import great_expectations as gx

    E = gx.expectations
    indices = set(index_series)
    findings: list[Finding] = []
    expectations_run = 0

    def severity(check: str, series: str) -> str:
        return config.severity_of(check, series in indices)

    def add(
        series: str,
        day: Any,
        check: str,
        observed: Any,
        threshold: Any,
        what: str,
        downgrade: bool = False,
    ) -> None:
        when = pd.Timestamp(day).date() if day is not None and not pd.isna(day) else None
        observed_value = None if observed is None or pd.isna(observed) else float(observed)
        place = f"{series} on {when}" if when else series
        findings.append(
            Finding(
                series=series,
                date=when,
                check=check,
                severity="warning" if downgrade else severity(check, series),
                observed=observed_value,
                threshold=None if threshold is None else float(threshold),
                message=f"{place}: {check}: {what}",
            )
        )

    guarded = (
        {
            str(symbol)
            for symbol in bars["symbol"].unique()
            if config.severity_of("jump", symbol in indices) != "warning"
        }
        if not bars.empty
        else set()
    )
    agreeing: set[tuple[str, pd.Timestamp]] = set()
    if deviations is not None and not deviations.empty:
        ok = deviations[deviations["deviation"] <= config.cross_source_threshold]
        agreeing = {(str(r.series), pd.Timestamp(r.date)) for r in ok.itertuples()}
    frame = (
        _bar_frame(bars, previous_close, config, guarded, agreeing)
        if not bars.empty
        else pd.DataFrame()
    )
    if not frame.empty:
        suite: list[Any] = []
        for column in PRICE_COLUMNS:
            suite.append(E.ExpectColumnValuesToNotBeNull(column=column, meta={"check": "not_null"}))
            suite.append(
                E.ExpectColumnValuesToBeBetween(
                    column=column, min_value=0, strict_min=True, meta={"check": "positive_prices"}
                )
            )
        suite += [
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high",
                column_B="max_open_close",
                or_equal=True,
                meta={"check": "ohlc_consistency", "what": "high"},
            ),
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="min_open_close",
                column_B="low",
                or_equal=True,
                meta={"check": "ohlc_consistency", "what": "low"},
            ),
            E.ExpectColumnValuesToBeBetween(
                column="jump", max_value=config.jump_threshold, meta={"check": "jump"}
            ),
        ]
        expectations_run += len(suite)
        lookup = frame.set_index(["symbol", "date"])
        for result in _validate("bars", frame, suite, ["symbol", "date"]):
            if result.success:
                continue
            meta = result.expectation_config.meta
            check = meta["check"]
            column = result.expectation_config.kwargs.get("column")
            for item in result.result.get("unexpected_index_list") or []:
                symbol, day = item["symbol"], item["date"]
                row = lookup.loc[(symbol, day)]
                if check == "not_null":
                    add(symbol, day, check, None, None, f"{column} is missing")
                elif check == "positive_prices":
                    add(
                        symbol, day, check, row[column], 0, f"{column} = {row[column]:g} is not > 0"
                    )
                elif check == "ohlc_consistency" and meta["what"] == "high":
                    add(
                        symbol,
                        day,
                        check,
                        row["high"],
                        row["max_open_close"],
                        f"high {row['high']:g} < max(open, close) {row['max_open_close']:g}",
                    )
                elif check == "ohlc_consistency":
                    add(
                        symbol,
                        day,
                        check,
                        row["low"],
                        row["min_open_close"],
                        f"low {row['low']:g} > min(open, close) {row['min_open_close']:g}",
                    )
                else:
                    why = row["confirmed"]
                    refused = severity(check, symbol) in REFUSING and not why
                    add(
                        symbol,
                        day,
                        check,
                        row["jump"],
                        config.jump_threshold,
                        f"close moved {row['jump']:.1%} from the last good close "
                        f"{row['prev_close']:g} to {row['close']:g} (threshold "
                        f"{config.jump_threshold:.0%})"
                        + (f"; accepted: {why}" if why else "")
                        + (
                            "; not confirmed by a second source or by the next sessions: refused"
                            if refused
                            else ""
                        ),
                        downgrade=bool(why),
                    )

    coverage = _coverage(bars, as_of, calendar_of) if not bars.empty else pd.DataFrame()
    if not coverage.empty:
        suite = [
            E.ExpectColumnValuesToBeBetween(
                column="missing_share",
                max_value=config.missing_threshold,
                meta={"check": "missing_sessions"},
            ),
            E.ExpectColumnValuesToBeBetween(
                column="sessions_behind",
                max_value=config.stale_tolerance_sessions,
                meta={"check": "stale"},
            ),
        ]
        expectations_run += len(suite)
        by_symbol = coverage.set_index("symbol")
        for result in _validate("coverage", coverage, suite, ["symbol"]):
            if result.success:
                continue
            check = result.expectation_config.meta["check"]
            for item in result.result.get("unexpected_index_list") or []:
                row = by_symbol.loc[item["symbol"]]
                if check == "missing_sessions":
                    add(
                        item["symbol"],
                        None,
                        check,
                        row["missing_share"],
                        config.missing_threshold,
                        f"{row['missing']} of {row['expected']} sessions have no bar "
                        f"({row['missing_share']:.1%} > {config.missing_threshold:.0%})",
                    )
                else:
                    add(
                        item["symbol"],
                        row["last_date"],
                        check,
                        row["sessions_behind"],
                        config.stale_tolerance_sessions,
                        f"last bar is {row['last_date'].date()}, {row['sessions_behind']} "
                        f"session(s) before as_of {as_of}",
                    )
    present = set(bars["symbol"]) if not bars.empty else set()
    for series in expected_series:
        if series not in present:
            add(
                series,
                None,
                "stale",
                None,
                config.stale_tolerance_sessions,
                f"no bar at all on or before {as_of}",
            )

    if deviations is not None and not deviations.empty:
        suite = [
            E.ExpectColumnValuesToBeBetween(
                column="deviation",
                max_value=config.cross_source_threshold,
                meta={"check": "cross_source"},
            )
        ]
        expectations_run += 1
        keyed = deviations.set_index(["series", "date"])
        for result in _validate("cross_source", deviations, suite, ["series", "date"]):
            for item in result.result.get("unexpected_index_list") or []:
                row = keyed.loc[(item["series"], item["date"])]
                add(
                    item["series"],
                    item["date"],
                    "cross_source",
                    row["deviation"],
                    config.cross_source_threshold,
                    f"{row['primary_source']} close {row['primary_close']:g} vs "
                    f"{row['secondary_source']} {row['secondary_close']:g} "
                    f"({row['deviation']:.2%} apart)",
                )

    findings.sort(key=lambda f: (f.severity != "blocking", f.series, f.date or date.min, f.check))
    rows = 0 if frame.empty else len(frame)
    return QualityReport(
        as_of=as_of,
        series_checked=len(present | set(expected_series)),
        rows_checked=rows,
        expectations_run=expectations_run,
        findings=tuple(findings),
        quarantine_scope=config.quarantine_scope,
    )


__all__ = ["Finding", "QualityReport", "validate_market_data"]
