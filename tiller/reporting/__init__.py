"""Reporting: performance metrics, the daily and weekly report documents, and their rendering.

Everything here is pure: inputs are plain dataclasses, dicts and pandas objects
built by the flows; outputs are JSON-serialisable dicts (see ``reports/SCHEMA.md``)
and strings (self-contained HTML, markdown, short text).
"""

from tiller.reporting.daily import DailyReportInputs, build_daily_report
from tiller.reporting.render import render_html, render_markdown_summary, summary_text
from tiller.reporting.weekly import Gates, WeeklyReportInputs, build_weekly_report

SCHEMA_VERSION = "1.0"

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
