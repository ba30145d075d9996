"""``tiller``: the command line (typer).  Heavy libraries are imported per command."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import date, datetime
from typing import Annotated, Any

import typer

from tiller.errors import TillerError

app = typer.Typer(
    help="Tiller: a scheduled, regime-aware, risk-parity trading pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help="Run a flow now, without a Prefect server.", no_args_is_help=True)
data_app = typer.Typer(help="Market and macro data.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")

AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Session date YYYY-MM-DD (default: latest completed session)."),
]


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TillerError(f"{option}: {value!r} is not a date; use YYYY-MM-DD") from None


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings():
    from tiller.runtime import prepare_environment
    from tiller.settings import load_settings

    settings = load_settings()
    prepare_environment(settings)
    return settings


def run_daily_flow(as_of: date | None, force: bool) -> dict[str, Any]:
    """Run ``daily-rebalance`` in this process and return its summary (never raises for a
    blocked or failed run: the summary says so)."""
    settings = _settings()
    from flows.daily_rebalance import FLOW, daily_rebalance
    from flows.summary import summarize
    from tiller.store.repo import Store

    run_id = str(uuid.uuid4())
    state = daily_rebalance(as_of=as_of, force=force, run_id=run_id, return_state=True)
    try:
        store = Store.open(settings.db_url, migrate=False)
        if store.run(run_id) is not None:
            return summarize(store, run_id)
    except TillerError:
        pass
    error = state.message or "the flow failed before it started"
    try:
        state.result()
    except Exception as exc:  # the flow never reached the store: report why
        error = str(exc)
    return {
        "flow": FLOW,
        "as_of": as_of.isoformat() if as_of else None,
        "status": "failed",
        "stages": {},
        "error": error,
        "run_id": None,
        "data_quality": None,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(f"{summary['flow']} {summary['as_of']}: {summary['status']}")
    for stage, status in summary["stages"].items():
        typer.echo(f"  {stage:<10} {status}")
    quality = summary.get("data_quality")
    if quality:
        typer.echo(
            f"  data quality: {quality['status']} "
            f"({quality['blocking']} blocking, {quality['warnings']} warnings)"
        )
    if summary["error"]:
        typer.echo(f"  error: {summary['error']}")


@run_app.command("daily")
def run_daily(
    as_of: AsOf = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute completed stages.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the daily-rebalance flow for one session."""
    try:
        summary = run_daily_flow(_date(as_of, "--as-of"), force)
    except TillerError as exc:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "flow": "daily-rebalance",
                        "as_of": as_of,
                        "status": "failed",
                        "stages": {},
                        "error": str(exc),
                    }
                )
            )
            raise typer.Exit(2) from None
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary["status"] != "completed":
        raise typer.Exit(1)


@data_app.command("ingest")
def data_ingest(
    start: Annotated[
        str | None,
        typer.Option(
            help="First date for series with nothing stored yet (default: history_start)."
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last date to ingest (default: latest completed session).")
    ] = None,
) -> None:
    """Bring bars, VIX and macro series up to date (no Prefect; same stage code)."""
    try:
        settings = _settings()
        from tasks.context import RunContext
        from tasks.ingest import ingest_stage
        from tiller.calendars import latest_completed_session
        from tiller.store.repo import Store

        first = _date(start, "--start")
        if first is not None:
            settings = settings.model_copy(update={"history_start": first})
        last = _date(end, "--end") or latest_completed_session()
        store = Store.open(settings.db_url)
        run_id = store.start_run("data-ingest", last, False, None)
        ctx = RunContext(settings, store, "data-ingest", last, run_id, force=True)
        try:
            outcome = ingest_stage(ctx)
        except Exception as exc:
            store.finish_run(run_id, "failed", {"ingest": "failed"}, str(exc))
            raise
        store.finish_run(run_id, "completed", {"ingest": outcome.status})
        result = outcome.value
        for fetched in result.fetched:
            frame = fetched.frame
            span = (
                f"{frame['date'].iloc[0].date()}..{frame['date'].iloc[-1].date()}"
                if len(frame)
                else ""
            )
            typer.echo(
                f"  {fetched.request.series:<9} {len(frame):>6} rows {span:<23} "
                f"{fetched.source or 'no data'}"
            )
        for spec in result.up_to_date:
            typer.echo(f"  {spec.series:<9} up to date")
        typer.echo(f"ingested {result.rows} rows up to {last} into {_masked(settings.db_url)}")
    except TillerError as exc:
        _fail(str(exc))


def _masked(url: str) -> str:
    from tiller.store.engine import mask_url

    return mask_url(url)


@db_app.command("init")
def db_init() -> None:
    """Create the database (if needed) and migrate it to the newest schema."""
    try:
        settings = _settings()
        from tiller.store.engine import connect
        from tiller.store.migrate import current_revision, upgrade

        engine = connect(settings.db_url)
        before = current_revision(engine)
        after = upgrade(engine)
        engine.dispose()
        change = "already at" if before == after else f"upgraded from {before or 'empty'} to"
        typer.echo(f"{_masked(settings.db_url)}: {change} revision {after}")
    except TillerError as exc:
        _fail(str(exc))


@db_app.command("schema")
def db_schema(
    dialect: Annotated[str, typer.Option(help="sqlite or postgresql")] = "sqlite",
) -> None:
    """Print the DDL of the current schema (kept in sql/schema.sql)."""
    from tiller.store.schema import ddl

    typer.echo(ddl(dialect), nl=False)


@app.command()
def serve() -> None:
    """Serve the deployments (daily-rebalance on its cron schedule) to a Prefect server."""
    try:
        _settings()
        from flows.serve import serve_deployments

        serve_deployments()
    except TillerError as exc:
        _fail(str(exc))


@app.command()
def demo(
    sessions: Annotated[int, typer.Option(help="How many recent sessions to run.")] = 3,
) -> None:
    """Run the daily flow offline on the synthetic market for the latest sessions."""
    import os

    os.environ.setdefault("TILLER_DATA_SOURCES", "synthetic")
    try:
        settings = _settings()
        from tiller.calendars import latest_completed_session
        from tiller.calendars import sessions as xnys_sessions

        last = latest_completed_session()
        days = xnys_sessions("XNYS", date(last.year - 1, 1, 1), last)[-sessions:]
        typer.echo(
            f"Tiller demo: universe {', '.join(settings.symbols)}, sources "
            f"{', '.join(str(s) for s in settings.data_sources)}, store {_masked(settings.db_url)}"
        )
        started = datetime.now()
        for day in days:
            summary = run_daily_flow(day.date(), force=False)
            _print_summary(summary)
        typer.echo(_demo_footer(settings, started))
    except TillerError as exc:
        _fail(str(exc))


def _demo_footer(settings: Any, started: datetime) -> str:
    from tiller.store.repo import Store

    store = Store.open(settings.db_url, migrate=False)
    from sqlalchemy import func, select

    from tiller.store.repo import BARS, DQ_REPORTS, INGEST_LOG

    bars = store.select(select(BARS.c.symbol, func.count().label("n")).group_by(BARS.c.symbol))
    reports = store.select(select(func.count().label("n")).select_from(DQ_REPORTS))
    logs = store.select(select(func.count().label("n")).select_from(INGEST_LOG))
    lines = [
        "",
        f"Done in {(datetime.now() - started).total_seconds():.0f} s. Results:",
        f"  database      {_masked(settings.db_url)}",
        f"  bars stored   {int(bars['n'].sum())} across {len(bars)} series",
        f"  quality       {int(reports['n'].iloc[0])} data-quality reports "
        "(table data_quality_reports, findings in data_quality_findings)",
        f"  ingest log    {int(logs['n'].iloc[0])} rows (table ingest_log: source per series)",
        f"  prefect home  {settings.home_dir / 'prefect'}",
        "Try: uv run tiller run daily --json",
    ]
    return "\n".join(lines)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except TillerError as exc:  # raised outside a command's own handling
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
