"""The validate stage: run the data-quality suite on what ingest wrote; persist the report."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tiller.store import Tx
from tiller.store import quality as quality_store
from tiller.validation import QualityReport, validate_market_data

STAGE = "validate"


def _window_starts(ctx: RunContext, symbols: list[str]) -> dict[str, date]:
    """Per series, the first session to validate: the first one ingested for this ``as_of``,
    or the last stored bar when nothing new arrived (so staleness is still checked)."""
    ingested = quality_store.first_ingested(ctx.store, ctx.as_of)
    last = ctx.store.last_bar_dates(ctx.as_of)
    return {s: ingested.get(s) or last[s] for s in symbols if s in ingested or s in last}


def load_inputs(ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The bars to validate, the close before each series' window, and cross-source checks."""
    settings = ctx.settings
    symbols = [*settings.symbols, settings.volatility_index]
    starts = _window_starts(ctx, symbols)
    if not starts:
        empty = pd.DataFrame(columns=["symbol", "date", "open", "high", "low", "close"])
        return empty, pd.DataFrame(columns=["symbol", "close"]), pd.DataFrame()
    # a few extra days back to find the close before each window (weekends, holidays)
    earliest = min(starts.values()) - timedelta(days=10)
    bars = ctx.store.load_bars(list(starts), earliest, ctx.as_of)
    window_start = bars["symbol"].map({s: pd.Timestamp(d) for s, d in starts.items()})
    before = bars[bars["date"] < window_start]
    previous = before.groupby("symbol", as_index=False).last()[["symbol", "close"]]
    window = bars[bars["date"] >= window_start].reset_index(drop=True)
    deviations = quality_store.cross_checks(ctx.store, ctx.as_of)
    return window, previous, deviations


def validate_stage(ctx: RunContext) -> StageOutcome:
    """Validate the ingested data for ``ctx.as_of``; status ``blocked`` on a blocking finding."""
    settings = ctx.settings
    window, previous, deviations = load_inputs(ctx)
    key = fingerprint(
        ctx.as_of,
        settings.validation.model_dump(),
        int(pd.util.hash_pandas_object(window, index=False).sum()) if len(window) else 0,
        len(deviations),
    )

    def compute() -> QualityReport:
        return validate_market_data(
            window,
            ctx.as_of,
            settings.validation,
            calendar_of={s: settings.calendar_of(s) for s in window["symbol"].unique()},
            index_series=[settings.volatility_index],
            deviations=deviations,
            previous_close=previous,
            expected_series=[*settings.symbols, settings.volatility_index],
        )

    def persist(tx: Tx, report: QualityReport) -> tuple[str, str]:
        store = ctx.store
        report_id = quality_store.save_report(
            tx,
            store,
            ctx.as_of,
            {
                "run_id": ctx.run_id,
                "status": report.status,
                "series_checked": report.series_checked,
                "rows_checked": report.rows_checked,
                "expectations_run": report.expectations_run,
                "blocking": len(report.blocking),
                "warnings": len(report.warnings),
            },
            [
                {
                    "series": f.series,
                    "date": f.date,
                    "check": f.check,
                    "severity": f.severity,
                    "observed": f.observed,
                    "threshold": f.threshold,
                    "message": f.message,
                }
                for f in report.findings
            ],
        )
        # refused bars leave `bars` for `quarantined_bars`: no stage and no later session
        # uses them; bars of the window that pass now (a corrected source) are released
        refused = [
            (f.series, f.date, f.check, f.severity, f.message)
            for f in report.refused
            if f.date is not None
        ]
        store.quarantine_bars(tx, refused, ctx.as_of, ctx.run_id)
        bad = {(s, d) for s, d, *_ in refused}
        passed = {(str(r.symbol), r.date.date()) for r in window.itertuples()} - bad
        store.release_quarantine(tx, sorted(passed))
        status = "blocked" if report.status == "blocked" else "completed"
        return status, f"data_quality_reports:{report_id}"

    return run_stage(ctx, STAGE, key, compute, persist)
