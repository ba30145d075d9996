"""``tiller``: the command line (typer).  Heavy libraries are imported per command."""

from __future__ import annotations

import gc
import json
import sys
import uuid
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
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
risk_app = typer.Typer(help="The risk state: level, halt, kill switch.", no_args_is_help=True)
report_app = typer.Typer(help="Daily and weekly reports (HTML + JSON).", no_args_is_help=True)
app.add_typer(report_app, name="report")
app.add_typer(risk_app, name="risk")
app.add_typer(run_app, name="run")
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")
backtest_app = typer.Typer(
    help="Replay history through the pipeline: `tiller backtest --start D --end D [--json]`; "
    "`tiller backtest list`; `tiller backtest report RUN_ID --date D`.",
)
app.add_typer(backtest_app, name="backtest")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"tiller {version('tiller')}")
        except PackageNotFoundError:
            typer.echo("tiller (version unknown: the package is not installed)")
        raise typer.Exit()


@app.callback()
def _main_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Tiller: a scheduled, regime-aware, risk-parity trading pipeline."""


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


def _not_future(day: date, option: str) -> date:
    """``day`` unless it is after the latest completed XNYS session (no bar exists yet)."""
    from tiller.calendars import latest_completed_session

    latest = latest_completed_session()
    if day > latest:
        raise TillerError(
            f"{option} {day} is in the future: the latest completed session is {latest}; "
            f"give {latest} or an earlier date"
        )
    return day


def _check_range(first: date, last: date, end_default: str = "") -> None:
    """A ``--start`` after the ``--end`` is refused (before any data source is asked)."""
    if first > last:
        raise TillerError(
            f"start {first} is after end {last}{end_default}: give a --start on or before the --end"
        )


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings():
    from tiller.runtime import prepare_environment
    from tiller.settings import load_settings

    settings = load_settings()
    prepare_environment(settings)
    return settings


def use_prefect(requested: bool) -> bool:
    """Run through Prefect when asked to (``--prefect``) or when a Prefect server is
    configured (``PREFECT_API_URL``): then the run shows in the Prefect UI.  Otherwise the
    same stages run in this process, without a server."""
    import os

    return requested or bool(os.environ.get("PREFECT_API_URL"))


def run_daily_flow(
    as_of: date | None,
    force: bool,
    prefect: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``daily-rebalance`` in this process and return its summary (never raises for a
    blocked or failed run: the summary says so; a check that fails before anything is
    written raises :class:`TillerError`).  ``progress(stages done, total)`` follows the
    stages of a run without Prefect."""
    settings = _settings()
    from tasks.daily import run_daily
    from tasks.preflight import check_settings, resolve_as_of

    day = resolve_as_of(as_of)  # before any server starts
    check_settings(settings)
    if use_prefect(prefect):
        _check_book_date(settings, day, force)  # before the server; the flow checks again
        with _prefect_api(settings):
            from flows.daily_rebalance import daily_rebalance

            return _run_flow(settings, daily_rebalance, "daily-rebalance", day, force)
    from tasks.daily import plain_stages

    stages = plain_stages() if progress is None else _counted(plain_stages(), progress)
    return _run_local(
        settings, lambda run_id: run_daily(settings, day, force, stages, run_id=run_id)
    )


def _check_book_date(settings: Any, day: date, force: bool) -> None:
    """The paper book only moves forward (:func:`tasks.preflight.check_book_date`), checked
    here before a Prefect server starts; the run checks it again under its lock."""
    from tasks.daily import FLOW, STAGES
    from tasks.preflight import check_book_date
    from tiller.store.repo import Store

    store = Store.open(settings.db_url)
    try:
        check_book_date(store, FLOW, STAGES, day, force)
    finally:
        store.close()


def _counted(stages: Any, progress: Callable[[int, int], None]) -> Any:
    """The daily stages, each reporting ``progress(stages done, total)`` when it returns."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(stages)]

    def counted(index: int, stage: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            outcome = stage(*args, **kwargs)
            progress(index + 1, len(names))
            return outcome

        return call

    return dataclasses.replace(
        stages, **{name: counted(i, getattr(stages, name)) for i, name in enumerate(names)}
    )


def run_weekly_flow(as_of: date | None, force: bool, prefect: bool = False) -> dict[str, Any]:
    """Run ``weekly-review`` in this process and return its summary."""
    settings = _settings()
    from tasks.preflight import check_home, resolve_as_of
    from tasks.review import run_weekly

    day = resolve_as_of(as_of)
    check_home(settings)
    if use_prefect(prefect):
        with _prefect_api(settings):
            from flows.weekly_review import weekly_review

            return _run_flow(settings, weekly_review, "weekly-review", day, force)
    return _run_local(settings, lambda run_id: run_weekly(settings, day, force, run_id=run_id))


def _prefect_api(settings: Any) -> Any:
    """The configured Prefect server, or a temporary one that dies with this process."""
    import contextlib
    import os

    if os.environ.get("PREFECT_API_URL"):
        return contextlib.nullcontext()
    from tiller.prefect_server import temporary_server

    typer.echo(
        "starting a temporary Prefect server for this run (set PREFECT_API_URL to use yours)",
        err=True,
    )
    return temporary_server(settings.home_dir)


def _run_local(settings: Any, run: Any) -> dict[str, Any]:
    """Call ``run(run_id)`` here and summarise the run it recorded; a failure before the
    run was recorded (a check, the run lock) is raised as the one-line error it is."""
    from flows.summary import summarize
    from tiller.store.repo import Store

    run_id = str(uuid.uuid4())
    capital = float(settings.optimize.initial_capital)
    try:
        run(run_id)
    except Exception:
        store = Store.open(settings.db_url, migrate=False)
        try:
            if store.run(run_id) is None:
                raise
            return {**summarize(store, run_id, capital), "orchestrator": "local"}
        finally:
            store.close()
    store = Store.open(settings.db_url, migrate=False)
    try:
        return {**summarize(store, run_id, capital), "orchestrator": "local"}
    finally:
        store.close()


def _run_flow(
    settings: Any, flow: Any, name: str, as_of: date | None, force: bool
) -> dict[str, Any]:
    from flows.summary import summarize
    from tiller.store.repo import Store

    run_id = str(uuid.uuid4())
    state = flow(as_of=as_of, force=force, run_id=run_id, return_state=True)
    try:
        store = Store.open(settings.db_url, migrate=False)
        if store.run(run_id) is not None:
            capital = float(settings.optimize.initial_capital)
            return {**summarize(store, run_id, capital), "orchestrator": "prefect"}
    except TillerError:
        pass
    error = state.message or "the flow failed before it started"
    try:
        state.result()
    except Exception as exc:  # the flow never reached the store: report why
        error = str(exc)
    return {
        "flow": name,
        "as_of": as_of.isoformat() if as_of else None,
        "status": "failed",
        "stages": {},
        "error": error,
        "run_id": None,
        "data_quality": None,
        "orchestrator": "prefect",
    }


def _print_summary(summary: dict[str, Any]) -> None:
    """What the run did, in a few lines (:func:`flows.summary.render_summary`)."""
    from flows.summary import render_summary

    typer.echo(render_summary(summary))


Prefect = Annotated[
    bool,
    typer.Option(
        "--prefect",
        help="Run as a Prefect flow even without PREFECT_API_URL (starts Prefect's "
        "temporary server). With PREFECT_API_URL set, runs always go through Prefect.",
    ),
]


@run_app.command("daily")
def run_daily(
    as_of: AsOf = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute completed stages.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    prefect: Prefect = False,
) -> None:
    """Run the daily-rebalance flow for one session."""
    from tiller.progress import TerminalProgress

    def run() -> dict[str, Any]:
        # stages done/total on a terminal; a Prefect run logs its own progress
        with TerminalProgress.for_command(as_json or use_prefect(prefect)) as bars:
            return run_daily_flow(
                _date(as_of, "--as-of"), force, prefect, bars.task("daily-rebalance stages")
            )

    _run_command("daily-rebalance", as_of, as_json, run)


def _run_command(flow: str, as_of: str | None, as_json: bool, run: Any) -> None:
    """Print a run's summary (JSON or text); exit 1 unless completed, 2 on a check that
    failed before the run started (one line, also as JSON with ``--json``)."""
    try:
        summary = run()
    except TillerError as exc:
        if as_json:
            failed: dict[str, Any] = {"flow": flow, "as_of": as_of, "status": "failed"}
            typer.echo(json.dumps({**failed, "stages": {}, "error": str(exc)}))
            raise typer.Exit(2) from None
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary["status"] != "completed":
        raise typer.Exit(1)


@run_app.command("weekly")
def run_weekly(
    as_of: AsOf = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild the review.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    prefect: Prefect = False,
) -> None:
    """Run the weekly-review flow for the week ending ``--as-of``."""
    _run_command(
        "weekly-review",
        as_of,
        as_json,
        lambda: run_weekly_flow(_date(as_of, "--as-of"), force, prefect),
    )


def _rerender(kind: str, as_of: str | None) -> None:
    from tasks.preflight import resolve_as_of

    day = resolve_as_of(_date(as_of, "--as-of"))  # a closed session, before anything opens
    settings = _settings()
    from tasks.report import RenderedReport, daily_inputs, write_report
    from tasks.weekly import weekly_inputs
    from tiller.reporting.daily import build_daily_report
    from tiller.reporting.render import render_html
    from tiller.reporting.weekly import build_weekly_report
    from tiller.store.repo import Store

    store = Store.open(settings.db_url)
    if kind == "daily":
        report = build_daily_report(daily_inputs(store, settings, "daily-rebalance", day))
    else:
        report = build_weekly_report(weekly_inputs(store, settings, day))
    rendered = RenderedReport(kind, day, report, render_html(report, kind))
    with store.transaction() as tx:
        json_path, html_path = write_report(settings.home_dir, store, tx, rendered, None)
    typer.echo(f"{kind} report for {day}:\n  {html_path}\n  {json_path}")


@report_app.command("daily")
def report_daily(as_of: AsOf = None) -> None:
    """Render the daily report of a session again from the database."""
    try:
        _rerender("daily", as_of)
    except TillerError as exc:
        _fail(str(exc))


@report_app.command("weekly")
def report_weekly(as_of: AsOf = None) -> None:
    """Render the weekly review of the week ending ``--as-of`` again from the database."""
    try:
        _rerender("weekly", as_of)
    except TillerError as exc:
        _fail(str(exc))


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
        from tiller.calendars import latest_completed_session

        first = _date(start, "--start")
        given_end = _date(end, "--end")
        last = _not_future(given_end, "--end") if given_end else latest_completed_session()
        if first is not None:
            _check_range(first, last, "" if given_end else " (the latest completed session)")
        settings = _settings()
        from tasks.context import RunContext
        from tasks.ingest import ingest_stage
        from tiller.progress import TerminalProgress
        from tiller.store.repo import Store

        if first is not None:
            settings = settings.model_copy(update={"history_start": first})
        store = Store.open(settings.db_url)
        run_id = store.start_run("data-ingest", last, False, None)
        ctx = RunContext(settings, store, "data-ingest", last, run_id, force=True)
        try:
            with TerminalProgress.for_command(as_json=False) as bars:
                outcome = ingest_stage(ctx, bars.task("ingest series"))
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


def _risk_store():
    settings = _settings()
    from tiller.risk import RiskState
    from tiller.store.repo import Store

    store = Store.open(settings.db_url)
    from tasks.risk import PORTFOLIO

    stored = store.load_risk_state(PORTFOLIO)
    return settings, store, (RiskState.from_dict(stored) if stored else RiskState())


def _save_risk(store: Any, state: Any, as_of: date, kind: str, reason: str) -> None:
    from tasks.risk import PORTFOLIO
    from tiller.store.risk import record_risk_event

    with store.transaction() as tx:
        store.save_risk_state(tx, PORTFOLIO, as_of, state.to_dict())
        record_risk_event(store, tx, as_of=as_of, portfolio=PORTFOLIO, kind=kind, reason=reason)


@risk_app.command("status")
def risk_status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Level, peak NAV, drawdown, distance to the next level, kill switch, halt."""
    try:
        settings, store, state = _risk_store()
        from tasks.risk import PORTFOLIO
        from tiller.risk import risk_status
        from tiller.store.risk import latest_decision_nav

        nav = latest_decision_nav(store, PORTFOLIO)
        if nav is None:
            nav = settings.optimize.initial_capital
        status = risk_status(state, nav, settings.risk)
    except TillerError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(status, default=str))
        return
    for key, value in status.items():
        shown = (
            f"{value:.2%}"
            if key in ("drawdown", "distance_to_next") and value is not None
            else value
        )
        typer.echo(f"{key:<22} {shown}")


@risk_app.command("reset")
def risk_reset(
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Confirm that a person reviewed the L4 halt.")
    ] = False,
) -> None:
    """Lift the L4 halt after review; trading re-enters through the ramp."""
    if not confirm:
        _fail("resetting the L4 halt needs --confirm (a person must review it first)")
    try:
        _, store, state = _risk_store()
        if not state.halted:
            _fail("the portfolio is not halted: nothing to reset")
        from tiller.calendars import latest_completed_session
        from tiller.risk import reset_after_confirmation

        as_of = max(latest_completed_session(), state.last_date or date.min)
        new_state = reset_after_confirmation(state, as_of)
        _save_risk(
            store, new_state, as_of, "reset", "L4 halt lifted by `tiller risk reset --confirm`"
        )
        typer.echo(f"halt lifted on {as_of}; re-entry waits for calm, then ramps up")
    except (TillerError, ValueError) as exc:
        _fail(str(exc))


@risk_app.command("kill-switch")
def kill_switch(
    state_word: Annotated[str, typer.Argument(help="on or off")],
    reason: Annotated[str, typer.Option(help="Why (required to turn it on).")] = "",
) -> None:
    """Turn the manual kill switch on (no new orders) or off."""
    if state_word not in ("on", "off"):
        _fail(f"kill-switch takes 'on' or 'off', not {state_word!r}")
    if state_word == "on" and not reason.strip():
        _fail(
            "turning the kill switch on needs a reason: give --reason TEXT (it is recorded "
            "in the risk state and the audit trail), e.g. tiller risk kill-switch on "
            "--reason 'broker outage'"
        )
    try:
        _, store, state = _risk_store()
        from tiller.calendars import latest_completed_session
        from tiller.risk import set_kill_switch

        new_state = set_kill_switch(state, state_word == "on", reason or "turned off by operator")
        as_of = max(latest_completed_session(), state.last_date or date.min)
        _save_risk(
            store, new_state, as_of, "kill_switch", f"manual kill switch {state_word}: {reason}"
        )
        typer.echo(f"kill switch {state_word}")
    except (TillerError, ValueError) as exc:
        _fail(str(exc))


Cadence = Annotated[
    str | None,
    typer.Option(
        help="Rebalance cadence: daily, weekly, monthly, month_end or once (default: config)."
    ),
]


@backtest_app.callback(invoke_without_command=True)
def backtest_command(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD.")] = None,
    cadence: Cadence = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Config profile to overlay (config/profiles/NAME.yaml or a path)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    no_benchmarks: Annotated[
        bool,
        typer.Option(
            "--no-benchmarks",
            help="Leave buy-and-hold SPY, 60/40 and trend-rp out of the tearsheet (they are "
            "cached in the store after their first run).",
        ),
    ] = False,
) -> None:
    """Replay every session from --start to --end with the simulated broker; save the run
    (apart from paper trading) and its tearsheet, with the benchmarks over the same window."""
    if ctx.invoked_subcommand is not None:
        return
    import os

    if profile:
        os.environ["TILLER_PROFILE"] = profile
    try:
        first, last = _date(start, "--start"), _date(end, "--end")
        if first is None or last is None:
            _fail("give --start and --end (YYYY-MM-DD), e.g. --start 2019-01-01 --end 2023-12-31")
            return
        _check_range(first, last)
        _not_future(last, "--end")
        if cadence not in (None, "daily", "weekly", "monthly", "month_end", "once"):
            _fail(f"--cadence {cadence!r}: use daily, weekly, monthly, month_end or once")
        settings = _settings()
        from tiller.backtest.service import backtest
        from tiller.progress import TerminalProgress

        with TerminalProgress.for_command(as_json) as bars:
            saved = backtest(
                settings,
                first,
                last,
                cadence=cadence,  # type: ignore[arg-type]
                progress=bars.task("backtest sessions"),
                benchmarks=not no_benchmarks,
            )
    except TillerError as exc:
        _fail(str(exc))
        return
    summary = saved.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    m = summary["metrics"]
    typer.echo(
        f"backtest {summary['run_id']}  {summary['start']}..{summary['end']}  "
        f"cadence {summary['cadence']}\n"
        f"  final NAV {m['final_nav']:,.2f}  CAGR {_pct(m.get('cagr'))}  "
        f"vol {_pct(m.get('volatility'))}  Sharpe {_num(m.get('sharpe'))}  "
        f"max DD {_pct(m.get('max_drawdown'))}\n"
        f"  trades {m['trades']}  turnover {_num(m.get('turnover_one_way'))}x/yr one-way "
        f"({_num(m.get('turnover_two_way'))}x two-way)  "
        f"costs {m['costs']:,.2f}  worst level L{m['max_level']}\n"
        f"  tearsheet {summary['tearsheet']}"
    )
    for symbol, last in summary["delisted"].items():
        typer.echo(f"  {symbol}: no data after {last}: sold at its last close (delisted)")
    if summary["no_data"]:
        typer.echo(f"  no data in the window: {', '.join(summary['no_data'])} (left out)")


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@backtest_app.command("list")
def backtest_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The saved backtest, stress and comparison runs, newest first."""
    settings = _settings()
    from tiller.store.backtests import list_runs
    from tiller.store.repo import Store

    runs = list_runs(Store.open(settings.db_url))
    rows = [
        {
            "run_id": r["run_id"],
            "kind": r["kind"],
            "label": r["label"],
            "start": str(r["start"]),
            "end": str(r["end"]),
            "cadence": r["cadence"],
            "metrics": json.loads(r["metrics"]),
        }
        for r in runs.to_dict("records")
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo("no backtest yet: tiller backtest --start 2019-01-01 --end 2023-12-31")
    for r in rows:
        m = r["metrics"]
        typer.echo(
            f"{r['run_id']}  {r['kind']:<8} {r['start']}..{r['end']}  {r['cadence']:<7} "
            f"NAV {m.get('final_nav', 0):>14,.2f}  max DD {_pct(m.get('max_drawdown'))}  "
            f"{r['label']}"
        )


@backtest_app.command("report")
def backtest_report(
    run_id: Annotated[str, typer.Argument(help="Run id (see `tiller backtest list`).")],
    day: Annotated[str, typer.Option("--date", help="Session date YYYY-MM-DD.")],
) -> None:
    """Write the daily report (JSON + HTML, the paper report's format) of one backtest date."""
    try:
        settings = _settings()
        from tiller.backtest.reports import write_daily_report
        from tiller.store.backtests import load_result
        from tiller.store.repo import Store

        as_of = _date(day, "--date")
        assert as_of is not None
        try:
            result = load_result(Store.open(settings.db_url), run_id)
        except KeyError as exc:
            _fail(str(exc.args[0]))
            return
        json_path, html_path = write_daily_report(settings, result, as_of)
    except TillerError as exc:
        _fail(str(exc))
        return
    typer.echo(f"{json_path}\n{html_path}")


@app.command("stress")
def stress_command(
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="Scenario name (repeatable); default: all configured."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Run the stress scenarios (2008, 2020, 2022, synthetic -20% shock) against their
    drawdown limits; exit 1 when the pass criteria fail."""
    try:
        settings = _settings()
        from tiller.backtest.service import stress
        from tiller.progress import TerminalProgress

        with TerminalProgress.for_command(as_json) as bars:
            outcome = stress(settings, scenario, progress=bars.named("stress {name}"))
    except TillerError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(outcome, indent=2, default=str))
    else:
        for o in outcome["scenarios"]:
            mark = "pass" if o["passed"] else "FAIL"
            typer.echo(
                f"{mark}  {o['scenario']:<12} {o['start']}..{o['end']}  max DD "
                f"{o['max_drawdown']:.2%} (limit {o['drawdown_limit']:.0%})  "
                f"worst L{o['max_level']}  run {o['run_id']}"
            )
        v = outcome["verdict"]
        typer.echo(
            f"{'PASS' if v['passed'] else 'FAIL'}: mean drawdown {_pct(v['mean_drawdown'])}"
            + "".join(f"\n  - {r}" for r in v["reasons"])
        )
    if not outcome["verdict"]["passed"]:
        raise typer.Exit(1)


@app.command("gate")
def gate_command(
    profile: Annotated[
        str | None,
        typer.Option(help="Config profile to overlay (config/profiles/NAME.yaml or a path)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First date (default: the last 5 years of data).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD.")] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Judge this saved run instead of a new one.")
    ] = None,
    run_stress: Annotated[
        bool,
        typer.Option("--run-stress", help="Run the stress scenarios now (else: the latest batch)."),
    ] = False,
    no_benchmarks: Annotated[
        bool, typer.Option("--no-benchmarks", help="No benchmarks in the tearsheet.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
) -> None:
    """The performance targets and the pre-paper gate (config/gate.yaml) on a backtest: each
    figure with its target and minimum, the stress batch, the verdict; exit 1 when it fails."""
    import os

    if profile:
        os.environ["TILLER_PROFILE"] = profile
    try:
        first, last = _date(start, "--start"), _date(end, "--end")
        if (first is None) != (last is None):
            _fail("give both --start and --end, or neither (the last 5 years of data)")
        if first is not None and last is not None:
            _check_range(first, last)
            _not_future(last, "--end")
        settings = _settings()
        from tiller.backtest.service import gate

        report = gate(
            settings,
            start=first,
            end=last,
            run_id=run_id,
            run_stress=run_stress,
            benchmarks=not no_benchmarks,
        )
    except TillerError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        from tiller.backtest.gate import print_report

        run = report["run"]
        header = (
            f"{run['profile'] or 'default configuration'}, run {run['run_id']} "
            f"{run['start']}..{run['end']}"
        )
        print_report(report, header)
        if run["tearsheet"]:
            typer.echo(f"tearsheet {run['tearsheet']}")
    if not report["verdict"]["passed"]:
        raise typer.Exit(1)


@app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """One screen: the last run of each flow, NAV and P&L, risk level and drawdown, kill
    switch, open orders, data freshness and the next scheduled runs."""
    try:
        settings = _settings()
        from tiller.status import collect_status, render_status
        from tiller.store.repo import Store

        store = Store.open(settings.db_url)
        try:
            status = collect_status(settings, store)
        finally:
            store.close()
    except TillerError as exc:
        _fail(str(exc))
        return
    status["database"] = _masked(settings.db_url)
    if as_json:
        typer.echo(json.dumps(status, default=str))
        return
    typer.echo(render_status(status))
    typer.echo(f"\ndatabase {status['database']}")


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
def deploy(
    pool: Annotated[str, typer.Option(help="The process work pool the workers poll.")],
    create_pool: Annotated[
        bool, typer.Option("--create-pool", help="Create the pool (type process) if missing.")
    ] = False,
    code_dir: Annotated[
        Path | None,
        typer.Option(help="The Tiller checkout on the workers' machines (default: this one)."),
    ] = None,
) -> None:
    """Register daily-rebalance and weekly-review on a Prefect work pool (PREFECT_API_URL);
    `prefect worker start --pool POOL` processes run them, with their own TILLER_* env."""
    try:
        from flows.deploy import deploy_to_pool

        deployed = deploy_to_pool(pool, create_pool=create_pool, code_dir=code_dir)
    except TillerError as exc:
        _fail(str(exc))
        return
    for item in deployed:
        when = ", ".join(item.schedules) or "no schedule"
        typer.echo(f"{item.name}  pool {pool}  {when}  id {item.deployment_id}")
    typer.echo(f"start a worker: uv run prefect worker start --pool {pool}")


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
        summary: dict[str, Any] = {}
        for day in days:
            summary = run_daily_flow(day.date(), force=False)
            _print_summary(summary)
        weekly = run_weekly_flow(days[-1].date(), force=False)
        _print_summary(weekly)
        typer.echo(_demo_footer(settings, started))
        for name, result in (("daily", summary), ("weekly", weekly)):
            html = result.get("reports", {}).get(name, {}).get("html")
            if html:
                typer.echo(f"  {name} report  {html}")
    except TillerError as exc:
        _fail(str(exc))


def _demo_footer(settings: Any, started: datetime) -> str:
    from tiller.store.repo import Store
    from tiller.store.reports import bar_counts, latest_nav, positions_on, row_counts

    store = Store.open(settings.db_url, migrate=False)
    bars = bar_counts(store)
    last = latest_nav(store)
    counts = row_counts(store)
    lines = [
        "",
        f"Done in {(datetime.now() - started).total_seconds():.0f} s. Results:",
        f"  database      {_masked(settings.db_url)}",
        f"  bars stored   {int(bars['n'].sum())} across {len(bars)} series",
        f"  quality       {counts['data_quality_reports']} data-quality reports "
        "(data_quality_reports)",
        f"  orders        {counts['orders']} sent to the simulated paper broker, "
        f"{counts['fills']} fills "
        "(orders, fills; audit trail in audit_events and "
        f"{settings.home_dir / 'audit'}/<date>.jsonl)",
    ]
    if last is not None:
        held = positions_on(store, last["as_of"])
        positions = ", ".join(f"{r.symbol} {r.qty:g}" for r in held.itertuples()) or "none"
        lines.append(
            f"  portfolio     NAV ${last['nav']:,.2f} (cash ${last['cash']:,.2f}) on "
            f"{last['as_of']}; positions: {positions}"
        )
    lines += [
        f"  prefect home  {settings.home_dir / 'prefect'}",
        "Try: uv run tiller run daily --json   |   uv run tiller risk status",
    ]
    return "\n".join(lines)


Executor = Annotated[
    str,
    typer.Option(
        help="Where points run: serial, local (a Dask LocalCluster, one worker per core) or "
        "tcp://HOST:PORT of a running Dask scheduler."
    ),
]


@app.command("sweep")
def sweep_command(
    grid: Annotated[Path, typer.Option(help="Grid file (YAML): parameters, profiles, periods.")],
    executor: Executor = "local",
    workers: Annotated[int | None, typer.Option(help="Local workers (default: cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Backtest every point of a grid (resumable: points already computed are reused);
    write the sweep report (HTML + JSON) under TILLER_HOME/research."""
    from tiller.progress import TerminalProgress

    try:
        settings = _settings()
        from tiller.research.service import sweep_study

        with TerminalProgress.for_command(as_json) as bars:
            summary = sweep_study(settings, grid, executor, workers, bars.task("points"))
    except TillerError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(
        f"sweep {summary['study_id']}: {summary['points']} points ({summary['computed']} "
        f"computed, {summary['reused']} reused, {len(summary['failed'])} failed); "
        f"objective {summary['objective']}"
    )
    for i, row in enumerate(summary["best"], 1):
        typer.echo(
            f"  {i}. {row['label']}  score {_num(row.get('score'))}  CAGR {_pct(row.get('cagr'))}"
            f"  Sharpe {_num(row.get('sharpe'))}  max DD {_pct(row.get('max_drawdown'))}"
        )
    for failure in summary["failed"]:
        typer.echo(f"  failed: {failure['point']}: {failure['error']}")
    typer.echo(f"  report {summary['report']}")


@app.command("walkforward")
def walkforward_command(
    grid: Annotated[Path, typer.Option(help="Grid file (YAML); its first period is split.")],
    train: Annotated[int, typer.Option(help="Train window, years.")] = 5,
    test: Annotated[int, typer.Option(help="Test window (and step), years.")] = 1,
    objective: Annotated[
        str | None, typer.Option(help="sharpe, sortino, cagr, calmar or total_return.")
    ] = None,
    executor: Executor = "local",
    workers: Annotated[int | None, typer.Option(help="Local workers (default: cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Rolling walk-forward: the best grid point on each train window, run on the next
    test window; the stitched out-of-sample record and each choice in the report."""
    from tiller.progress import TerminalProgress

    try:
        settings = _settings()
        from tiller.research.service import walkforward_study

        with TerminalProgress.for_command(as_json) as bars:
            summary = walkforward_study(
                settings, grid, train, test, objective, executor, workers, bars.task("points")
            )
    except TillerError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    m = summary["out_of_sample"]
    typer.echo(
        f"walk-forward {summary['study_id']}: {len(summary['steps'])} steps; out of sample "
        f"{m.get('start')}..{m.get('end')}: CAGR {_pct(m.get('cagr'))}  Sharpe "
        f"{_num(m.get('sharpe'))}  max DD {_pct(m.get('max_drawdown'))}; IS -> OOS score "
        f"change {_num(summary['degradation'])}"
    )
    for step in summary["steps"]:
        typer.echo(
            f"  train {step['train']}  test {step['test']}  chose {step['chosen']}  "
            f"IS {_num(step['is_score'])}  OOS {_num(step['oos_score'])}"
        )
    typer.echo(f"  report {summary['report']}")


notify_app = typer.Typer(help="Notification channels (apprise URLs).", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test() -> None:
    """Send a test message to every configured channel (TILLER_NOTIFY_URLS and
    config/alerts.yaml) and print each outcome; exit 1 if any channel failed."""
    try:
        from tiller.alerts import check_channels
        from tiller.settings import load_settings

        settings = load_settings()  # an unusable URL: one line, exit 2
        checks = check_channels(settings)
        if not checks:
            raise TillerError(
                "no notification channel is configured: set TILLER_NOTIFY_URLS (comma- or "
                "space-separated apprise URLs, e.g. mailtos://..., slack://..., json://...) "
                "or alerts.channels in config/alerts.yaml"
            )
    except TillerError as exc:
        _fail(str(exc))
        return
    typer.echo(f"test message sent to {len(checks)} channel(s):")
    width = max(len(c.label) for c in checks)
    for check in checks:
        levels = "all levels" if len(check.levels) == 4 else ", ".join(check.levels)
        line = f"  {check.position}. {'ok    ' if check.ok else 'FAILED'}  {check.label:<{width}}"
        line += f"  {check.service} ({levels})"
        typer.echo(line + ("" if check.ok else f": {check.error}"))
    failed = sum(1 for c in checks if not c.ok)
    typer.echo(
        f"{len(checks) - failed} of {len(checks)} channel(s) delivered"
        + (f", {failed} failed" if failed else "")
    )
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except TillerError as exc:  # raised outside a command's own handling
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        # The command is done and the process ends: the cyclic collector need not walk the
        # millions of objects pandas, Prefect and great-expectations created, again at each
        # collection while the interpreter shuts down (about 1 s of a daily run).  Objects
        # are still freed by reference counting; exit handlers run as before.
        gc.freeze()


if __name__ == "__main__":
    main()
