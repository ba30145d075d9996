"""Reporting: performance metrics, the daily and weekly report documents, and their rendering.

Everything here is pure: inputs are plain dataclasses, dicts and pandas objects
built by the flows; outputs are JSON-serialisable dicts (see ``reports/SCHEMA.md``)
and strings (self-contained HTML, markdown, short text).

The names below are loaded on first use (:pep:`562`), so importing one submodule (the
daily flow's report stage, the backtest's tearsheet) does not load the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tiller.reporting.daily import DailyReportInputs, build_daily_report
    from tiller.reporting.render import render_html, render_markdown_summary, summary_text
    from tiller.reporting.weekly import Gates, WeeklyReportInputs, build_weekly_report

SCHEMA_VERSION = "1.0"

_EXPORTS = {
    "DailyReportInputs": "tiller.reporting.daily",
    "build_daily_report": "tiller.reporting.daily",
    "render_html": "tiller.reporting.render",
    "render_markdown_summary": "tiller.reporting.render",
    "summary_text": "tiller.reporting.render",
    "Gates": "tiller.reporting.weekly",
    "WeeklyReportInputs": "tiller.reporting.weekly",
    "build_weekly_report": "tiller.reporting.weekly",
}

__all__ = [
    "SCHEMA_VERSION",
    "DailyReportInputs",
    "Gates",
    "WeeklyReportInputs",
    "build_daily_report",
    "build_weekly_report",
    "render_html",
    "render_markdown_summary",
    "summary_text",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` when it is first asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
