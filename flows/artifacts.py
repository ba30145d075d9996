"""What a flow run shows in the Prefect UI: its name and tag carry the session date, and it
publishes the run's summary, the report's key figures, the positions-vs-targets table and
a link to the HTML report as artifacts.

The artifacts are published by the flow after the run, from what the store and the
registered report hold, not by the report stage: a rerun whose stages were all skipped
(the date was complete) shows the day's report as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

# internal parameters a caller may pass but the deployments' forms do not show
HIDDEN_PARAMETERS = ("run_id",)

log = logging.getLogger(__name__)


def resolved_as_of(value: object) -> str:
    """The session a run of ``as_of=value`` is for, as the flow resolves it
    (:func:`tasks.preflight.resolve_as_of`: None means the latest completed session);
    the value as given when it does not resolve (the run then fails and says why)."""
    from tasks.preflight import resolve_as_of

    try:
        day = value if isinstance(value, date) or value is None else date.fromisoformat(str(value))
        return resolve_as_of(day).isoformat()
    except Exception:
        return "latest" if value is None else str(value)


def dated_run_name(flow_name: str) -> Callable[[], str]:
    """A ``flow_run_name`` callable: ``daily-rebalance 2024-03-08``, with the default
    ``as_of`` resolved when the run starts (a scheduled run passes none)."""

    def name() -> str:
        from prefect.runtime import flow_run

        return f"{flow_name} {resolved_as_of(flow_run.parameters.get('as_of'))}"

    name.__name__ = f"{flow_name.replace('-', '_')}_run_name"
    return name


def hide_parameters(deployment: Any) -> Any:
    """Drop the internal parameters from a deployment's parameter schema (the UI's run
    form and the parameters tab); the flow still accepts them from a direct call."""
    schema = deployment._parameter_openapi_schema  # no public setter in Prefect 3.8
    for name in HIDDEN_PARAMETERS:
        schema.properties.pop(name, None)
        if name in schema.required:
            schema.required.remove(name)
    return deployment


def settle(settings: Any, run_id: str, logger: Any, failed: bool = False) -> dict[str, Any] | None:
    """After a run: its summary (None when it was never recorded, e.g. a check failed
    first), logged and published as artifacts; the flow run tagged with its date.

    ``failed``: the run raised; then nothing here may hide that error (a store that
    cannot be read back is logged, not raised)."""
    from flows.summary import render_summary, summarize
    from tiller.store.repo import Store

    try:
        store = Store.open(settings.db_url, migrate=False)
        try:
            if store.run(run_id) is None:
                return None
            summary = summarize(store, run_id, float(settings.optimize.initial_capital))
        finally:
            store.close()
    except Exception:
        if not failed:
            raise
        logger.warning("could not read back the summary of run %s", run_id, exc_info=True)
        return None
    logger.info("%s", render_summary({**summary, "orchestrator": "prefect"}))
    try:
        tag_as_of(summary["as_of"])
        publish_run(summary)
    except Exception:  # the UI's view is not worth failing the run for
        logger.warning("could not publish the run's artifacts", exc_info=True)
    return summary


def tag_as_of(as_of: str) -> None:
    """Add the tag ``as_of:<date>`` to the current flow run (filterable in the UI)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    tag = f"as_of:{as_of}"
    tags = list(context.flow_run.tags or [])
    if tag in tags:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(context.flow_run.id, tags=[*tags, tag])


def publish_run(summary: dict[str, Any]) -> None:
    """The run's artifacts, inside a flow run: the summary (``<flow>-summary``) and, when
    the day's report is registered, its key figures (``<kind>-report``), its
    positions-vs-targets table (``<kind>-report-table``) and a link to its HTML
    (``<kind>-report-link``)."""
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )
    from prefect.context import FlowRunContext

    from flows.summary import summary_markdown

    if FlowRunContext.get() is None:
        return
    flow, as_of = summary["flow"], summary["as_of"]
    create_markdown_artifact(
        summary_markdown({**summary, "orchestrator": "prefect"}),
        key=f"{flow}-summary",
        description=f"{flow} {as_of}: what the run did",
    )
    kind = "weekly" if flow == "weekly-review" else "daily"
    paths = (summary.get("reports") or {}).get(kind)
    if not paths or not Path(paths["json"]).is_file():
        return
    from tiller.reporting.render import render_markdown_summary

    report = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    html = Path(paths["html"])
    key = f"{kind}-report"
    create_markdown_artifact(
        render_markdown_summary(report, kind) + f"\n\nHTML: [{html.name}]({html.as_uri()})",
        key=key,
        description=f"{kind} report {as_of}",
    )
    rows = report_rows(report)
    if rows:
        create_table_artifact(rows, key=f"{key}-table", description=f"positions vs targets {as_of}")
    create_link_artifact(
        html.as_uri(),
        link_text=f"{kind} report {as_of} (HTML, on the Tiller host: {html})",
        key=f"{key}-link",
        description=f"the full {kind} report of {as_of}",
    )


def report_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The positions-vs-targets rows of a daily report (``positions.rows``) or a weekly
    review (``targets_vs_actual.rows``), weights rounded for reading."""
    section = report.get("positions") or report.get("targets_vs_actual") or {}
    rows = section.get("rows") if isinstance(section, dict) else section
    out = []
    for row in rows or []:
        out.append({k: round(v, 6) if isinstance(v, float) else v for k, v in dict(row).items()})
    return out
