"""The ingest stage: fetch what is missing up to ``as_of``, upsert it, log every source."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tiller import calendars
from tiller.data.base import SeriesKind
from tiller.data.factory import build_chain, series_specs
from tiller.data.ingest import IngestFailed, IngestResult, plan_ingest, run_ingest
from tiller.store import Tx
from tiller.store import quality as quality_store

STAGE = "ingest"


def ingest_stage(
    ctx: RunContext, progress: Callable[[int, int], None] | None = None
) -> StageOutcome:
    """Run the ingest stage for ``ctx.as_of`` (checkpointed, see ``tasks.checkpoint``).

    With ``force`` the ``as_of`` session itself is fetched again (revisions
    replace stored values); otherwise only sessions after the last stored bar.
    ``progress(series done, total)`` follows the fetches (``tiller data ingest``).
    """
    settings = ctx.settings
    specs = series_specs(settings)
    key = fingerprint(
        ctx.as_of,
        [(s.series, s.kind) for s in specs],
        [str(s) for s in settings.data_sources],
        settings.history_start,
    )

    def compute() -> IngestResult:
        last = {**ctx.store.last_bar_dates(ctx.as_of), **ctx.store.last_macro_dates(ctx.as_of)}
        if ctx.force:
            for spec in specs:
                if spec.series in last and spec.kind is SeriesKind.BAR:
                    previous = calendars.last_session(
                        spec.calendar or "XNYS", ctx.as_of - timedelta(days=1)
                    )
                    last[spec.series] = min(last[spec.series], previous)
        plans = plan_ingest(specs, last, ctx.as_of, settings.history_start)
        chain = build_chain(settings)
        sessions = settings.data.cross_check_sessions if settings.data.cross_check else None
        return run_ingest(plans, chain, ctx.as_of, sessions, progress)

    def persist(tx: Tx, result: IngestResult) -> tuple[str, str]:
        store = ctx.store
        rows = []
        for fetched in result.fetched:
            request, frame = fetched.request, fetched.frame
            if fetched.source is not None:
                if request.kind is SeriesKind.BAR:
                    store.upsert_bars(tx, request.series, frame, fetched.source)
                else:
                    store.upsert_macro(tx, request.series, frame, fetched.source)
            status = "ingested" if fetched.source else ("failed" if fetched.failed else "no_data")
            rows.append(
                {
                    "run_id": ctx.run_id,
                    "as_of": ctx.as_of,
                    "series": request.series,
                    "kind": request.kind.value,
                    "status": status,
                    "source": fetched.source,
                    "rows": len(frame),
                    "first_date": frame["date"].iloc[0].date() if len(frame) else None,
                    "last_date": frame["date"].iloc[-1].date() if len(frame) else None,
                    "attempts": "; ".join(str(a) for a in fetched.attempts),
                    "error": fetched.errors or None,
                }
            )
        for spec in result.up_to_date:
            rows.append(
                {
                    "run_id": ctx.run_id,
                    "as_of": ctx.as_of,
                    "series": spec.series,
                    "kind": spec.kind.value,
                    "status": "up_to_date",
                    "source": None,
                    "rows": 0,
                    "first_date": None,
                    "last_date": None,
                    "attempts": "",
                    "error": None,
                }
            )
        # one current ingest log per (as_of): a forced rerun replaces it
        quality_store.replace_ingest_log(
            tx,
            store,
            ctx.as_of,
            rows,
            [
                {
                    "run_id": ctx.run_id,
                    "as_of": ctx.as_of,
                    "series": d.series,
                    "date": d.date.date(),
                    "primary_source": d.primary_source,
                    "secondary_source": d.secondary_source,
                    "primary_close": d.primary_close,
                    "secondary_close": d.secondary_close,
                    "deviation": d.deviation,
                }
                for d in result.deviations
            ],
        )
        return "completed", f"ingest_log?as_of={ctx.as_of.isoformat()}"

    return run_stage(ctx, STAGE, key, compute, persist)


def retry_when_transient(task: object, task_run: object, state: Any) -> bool:
    """Retry only when every failing source failed transiently (rate limit, 5xx, timeout)."""
    try:
        state.result()
    except IngestFailed as exc:
        return exc.transient
    except Exception:
        return False
    return False
