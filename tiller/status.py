"""``tiller status``: one screen on the state of the paper book and its pipeline.

:func:`collect_status` gathers it (from the store, the calendar and, when a Prefect server
is configured, the server); :func:`render_status` lays it out for a terminal.  The
``--json`` form is :func:`collect_status`'s dict as is:

* ``runs``: the newest run of each flow (``flow_runs``): session, status, times, error;
* ``nav``: the newest NAV snapshot with the day's P&L (against the snapshot before it)
  and the P&L since the start (against ``optimize.initial_capital``);
* ``risk``: what ``tiller risk status`` shows (level, drawdown, kill switch, halt);
* ``open_orders``: orders not filled, canceled, expired, rejected, failed or abandoned;
* ``data``: the last stored bar of each universe symbol and the volatility index against
  the last session of its calendar (``behind``: sessions missing);
* ``schedule``: the deployments' next scheduled flow runs, read from the Prefect server
  at ``PREFECT_API_URL`` (``configured: false`` when it is not set).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from typing import Any

from tiller.calendars import last_session, latest_completed_session, sessions
from tiller.settings import Settings
from tiller.store.repo import Store

PORTFOLIO = "paper"  # the paper book's name in the store (tasks.portfolio.PORTFOLIO)
FLOWS = ("daily-rebalance", "weekly-review")  # always listed, even before their first run


def collect_status(settings: Settings, store: Store, today: date | None = None) -> dict[str, Any]:
    """The whole status as a JSON-ready dict (module docstring); ``today`` is the latest
    completed XNYS session (default: now)."""
    last = today or latest_completed_session()
    return {
        "last_session": last.isoformat(),
        "runs": _runs(store),
        "nav": _nav(settings, store),
        "risk": _risk(settings, store),
        "open_orders": _open_orders(store),
        "data": _freshness(settings, store, last),
        "schedule": next_scheduled_runs(),
    }


def _iso(value: Any) -> str | None:
    """A date or time as ISO text; the store's times are UTC (SQLite keeps them naive)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _when(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM UTC`` for the screen."""
    if value is None:
        return "-"
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value


def _runs(store: Store) -> dict[str, dict[str, Any] | None]:
    from tiller.store.status import last_runs

    found = last_runs(store)
    names = [*FLOWS, *sorted(set(found) - set(FLOWS))]
    runs: dict[str, dict[str, Any] | None] = {}
    for name in names:
        row = found.get(name)
        runs[name] = (
            None
            if row is None
            else {
                "as_of": _iso(row["as_of"]),
                "status": row["status"],
                "started_at": _iso(row["started_at"]),
                "finished_at": _iso(row["finished_at"]),
                "error": row["error"],
            }
        )
    return runs


def _nav(settings: Settings, store: Store) -> dict[str, Any] | None:
    from tiller.store.status import latest_navs

    rows = latest_navs(store, PORTFOLIO, 2)
    if not rows:
        return None
    newest = rows[0]
    nav = float(newest["nav"])
    capital = float(settings.optimize.initial_capital)
    before = float(rows[1]["nav"]) if len(rows) > 1 else capital
    return {
        "as_of": _iso(newest["as_of"]),
        "nav": nav,
        "cash": float(newest["cash"]),
        "positions_value": float(newest["positions_value"]),
        "day_pnl": round(nav - before, 2),
        "day_return": nav / before - 1.0 if before else None,
        "previous_as_of": _iso(rows[1]["as_of"]) if len(rows) > 1 else None,
        "initial_capital": capital,
        "since_start_pnl": round(nav - capital, 2),
        "since_start_return": nav / capital - 1.0 if capital else None,
        "fees": float(newest["fees"]),
    }


def _risk(settings: Settings, store: Store) -> dict[str, Any]:
    from tiller.risk import RiskState, risk_status
    from tiller.store.risk import latest_decision_nav

    stored = store.load_risk_state(PORTFOLIO)
    state = RiskState.from_dict(stored) if stored else RiskState()
    nav = latest_decision_nav(store, PORTFOLIO)
    return risk_status(
        state, nav if nav is not None else settings.optimize.initial_capital, settings.risk
    )


def _open_orders(store: Store) -> list[dict[str, Any]]:
    from tiller.store.status import open_orders

    return [
        {**row, "as_of": _iso(row["as_of"]), "qty": float(row["qty"])} for row in open_orders(store)
    ]


def _freshness(settings: Settings, store: Store, today: date) -> list[dict[str, Any]]:
    stored = store.last_bar_dates()
    rows = []
    for series in [*settings.symbols, settings.volatility_index]:
        calendar = settings.calendar_of(series)
        expected = last_session(calendar, today)
        bar = stored.get(series)
        if bar is not None and isinstance(bar, datetime):
            bar = bar.date()
        behind = None if bar is None else max(0, len(sessions(calendar, bar, expected)) - 1)
        rows.append(
            {
                "symbol": series,
                "calendar": calendar,
                "last_bar": _iso(bar),
                "last_session": expected.isoformat(),
                "behind": behind,
                "fresh": behind == 0,
            }
        )
    return rows


def next_scheduled_runs(limit: int = 3) -> dict[str, Any]:
    """The next scheduled flow runs of each deployment on the Prefect server at
    ``PREFECT_API_URL``; ``configured: false`` (and no query) when it is not set.

    A server that cannot be reached is reported in ``error``, never raised: the rest of
    the status stands on its own.
    """
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return {"configured": False, "api_url": None, "deployments": [], "error": None}
    try:
        deployments = _deployments(url, limit)
    except Exception as exc:  # an unreachable or failing server is shown, not raised
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {
            "configured": True,
            "api_url": url,
            "deployments": [],
            "error": f"{type(exc).__name__}: {message}"[:300],
        }
    return {"configured": True, "api_url": url, "deployments": deployments, "error": None}


def _deployments(url: str, limit: int) -> list[dict[str, Any]]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    scheduled = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
    )
    found = []
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            flow = client.read_flow(deployment.flow_id)
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=scheduled,
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=limit,
            )
            found.append(
                {
                    "deployment": f"{flow.name}/{deployment.name}",
                    "paused": bool(getattr(deployment, "paused", False)),
                    "schedules": [_schedule(s) for s in deployment.schedules or []],
                    "next_runs": [
                        _iso(r.expected_start_time or r.next_scheduled_start_time) for r in runs
                    ],
                }
            )
    return sorted(found, key=lambda d: d["deployment"])


def _schedule(entry: Any) -> str:
    schedule = getattr(entry, "schedule", entry)
    cron = getattr(schedule, "cron", None)
    text = f"cron {cron} {getattr(schedule, 'timezone', None) or 'UTC'}" if cron else str(schedule)
    return text if getattr(entry, "active", True) else f"{text} (inactive)"


# ------------------------------------------------------------------------ rendering


def _money(value: float) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "-") + f"${abs(value):,.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def render_status(status: dict[str, Any]) -> str:
    """The status for a terminal: a title, then one block per topic (about 20 lines for
    the core universe)."""
    lines = [f"Tiller status (last completed XNYS session {status['last_session']})", ""]
    lines.append("last runs")
    for flow, run in status["runs"].items():
        if run is None:
            lines.append(f"  {flow:<16} never run")
            continue
        when = _when(run["finished_at"] or run["started_at"])
        lines.append(f"  {flow:<16} {run['as_of']}  {run['status']:<11} at {when}")
        if run["error"]:
            lines.append(f"  {'':<16} error: {run['error'].splitlines()[0][:120]}")

    nav = status["nav"]
    lines.append("")
    if nav is None:
        lines.append("NAV      no NAV snapshot yet (the first `tiller run daily` makes one)")
    else:
        lines.append(
            f"NAV      {_money(nav['nav'])} on {nav['as_of']} (cash {_money(nav['cash'])}, "
            f"positions {_money(nav['positions_value'])})"
        )
        lines.append(
            f"P&L      day {_signed(nav['day_pnl'])} ({_pct(nav['day_return'])})   since start "
            f"{_signed(nav['since_start_pnl'])} ({_pct(nav['since_start_return'])}) on "
            f"{_money(nav['initial_capital'])}"
        )

    risk = status["risk"]
    distance = risk["distance_to_next"]
    to_next = f", {risk['next_level']} in {distance:.2%}" if distance is not None else ", top level"
    lines.append(
        f"risk     {risk['level']}  drawdown {risk['drawdown']:.2%} from peak "
        f"{_money(risk['peak_nav'])}{to_next}{'  HALTED' if risk['halted'] else ''}"
    )
    kill = f"ON ({risk['kill_reason']})" if risk["kill_switch"] else "off"
    lines.append(f"kill     {kill}")

    orders = status["open_orders"]
    if not orders:
        lines.append("orders   none open")
    else:
        lines.append(f"orders   {len(orders)} open")
        for o in orders[:8]:
            lines.append(
                f"  {o['as_of']}  {o['symbol']:<8} {o['side']:<4} {o['qty']:g} "
                f"({o['status']}, filled {o['filled_qty']:g})  {o['client_order_id']}"
            )
        if len(orders) > 8:
            lines.append(f"  ... and {len(orders) - 8} more (`tiller status --json` lists all)")

    lines.append("")
    lines.append("data     last bar vs the last session of its calendar")
    for row in status["data"]:
        if row["last_bar"] is None:
            state = "no bars stored"
        elif row["fresh"]:
            state = "up to date"
        else:
            state = f"{row['behind']} session(s) behind {row['last_session']}"
        lines.append(f"  {row['symbol']:<9} {row['last_bar'] or '-':<10}  {state}")

    lines.append("")
    lines.extend(_render_schedule(status["schedule"]))
    return "\n".join(lines)


def _render_schedule(schedule: dict[str, Any]) -> list[str]:
    if not schedule["configured"]:
        return [
            "schedule no Prefect server configured (PREFECT_API_URL is not set): nothing "
            "runs on a schedule; set it and run `tiller serve`"
        ]
    if schedule["error"]:
        return [f"schedule Prefect server {schedule['api_url']}: {schedule['error']}"]
    if not schedule["deployments"]:
        return [
            f"schedule no deployment on the Prefect server {schedule['api_url']}: "
            "run `tiller serve` to register them"
        ]
    lines = [f"schedule next runs on {schedule['api_url']}"]
    for d in schedule["deployments"]:
        nexts = ", ".join(_when(t) for t in d["next_runs"]) or "none scheduled yet"
        paused = " (paused)" if d["paused"] else ""
        cron = f"  [{'; '.join(d['schedules'])}]" if d["schedules"] else ""
        lines.append(f"  {d['deployment']:<32} {nexts}{paused}{cron}")
    return lines
