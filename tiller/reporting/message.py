"""The summary a report sends to its notification channels, in each channel's format.

The same few figures three ways, from the report dict (:mod:`tiller.reporting.daily`,
:mod:`tiller.reporting.weekly`):

* ``html``: a short page for email -- a headline, a small table (one figure per row: the
  label and the value sit in one cell, so the plain-text part apprise derives from it
  reads ``Daily P&L  $12.21 (0.01%)`` on one line), what needs attention, and where the
  full report is;
* ``markdown``: the same for Slack and other chat services (Slack's ``*bold*`` and a
  bullet per figure: Slack shows no markdown tables);
* ``text``: plain lines for everything else (a JSON webhook, ...).

No chart and no plotly: a few kilobytes.  The full report stays on the Tiller host; its
paths are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from tiller.reporting.render import money, na, num, pct

Row = tuple[str, str]


@dataclass(frozen=True)
class SummaryMessage:
    """A report's notification: ``title`` (the email subject) and the three bodies."""

    title: str
    text: str
    html: str
    markdown: str


def _signed(value: Any) -> str:
    text = pct(value)
    return text if text.startswith(("-", "n/a")) or text == "0.00%" else f"+{text}"


def _daily(report: dict[str, Any]) -> tuple[str, list[Row], list[str]]:
    s = report["summary"]
    risk = report["risk"]
    annual = s.get("annualised") or {}
    headline = f"Tiller daily {report['as_of']}: NAV {money(s['nav'])}"
    rows: list[Row] = [
        ("NAV", f"{money(s['nav'])} (cash {money(s['cash'])})"),
        ("Daily P&L", f"{money(s['daily_pnl'])} ({_signed(s['daily_return'])})"),
        ("Cumulative P&L", f"{money(s['cumulative_pnl'])} ({_signed(s['cumulative_return'])})"),
        ("Trades today", f"{s['trades_count']} ({s['filled_count']} filled)"),
    ]
    level = f"{risk['level']}, drawdown {pct(risk['drawdown'])}"
    if risk.get("next_level"):
        level += f", {pct(risk['distance_to_next'])} to {risk['next_level']}"
    if risk.get("kill_switch"):
        level += " (KILL SWITCH ON)"
    rows.append(("Risk", level))
    regime = report.get("regime") or {}
    if regime.get("regime"):
        rows.append(("Regime", f"{regime['regime']} (VIX {num(regime.get('vix'))})"))
    if annual.get("available", True):
        rows += [
            ("Sharpe", num(s["sharpe"])),
            ("CAGR / volatility", f"{pct(s['annual_return'])} / {pct(s['annual_volatility'])}"),
        ]
    else:
        note = f"{annual.get('note')} ({annual.get('sessions')} so far)"
        rows.append(("Sharpe, CAGR, volatility", note))
    rows += [
        ("Max drawdown", pct(s["max_drawdown"])),
        ("Win rate", f"{pct(s['win_rate'], 1)} ({s['closed_trades']} closed trades)"),
        (
            "Signals",
            f"{report['signals']['executed_count']} executed, "
            f"{report['signals']['rejected_count']} not executed",
        ),
        ("Data quality", f"{na(report['data_quality']['status'])}"),
    ]
    attention = []
    if risk.get("kill_switch"):
        attention.append("The kill switch is on: no new orders.")
    if report["data_quality"].get("blocking"):
        attention.append("A blocking data-quality finding stopped the run.")
    health = report.get("health") or {}
    for error in health.get("errors") or []:
        attention.append(f"Stage error: {error}")
    failures = health.get("notification_failures") or []
    if failures:
        attention.append(f"{len(failures)} notification(s) failed in the last 7 days.")
    return headline, rows, attention


def _weekly(report: dict[str, Any]) -> tuple[str, list[Row], list[str]]:
    s = report["summary"]
    gates = report.get("go_no_go") or {}
    failing = [g["name"] for g in gates.get("gates", []) if g.get("status") != "pass"]
    headline = (
        f"Tiller weekly {report['week_start']}..{report['week_end']}: "
        f"P&L {money(s.get('pnl'))} ({_signed(s.get('return'))})"
    )
    rows: list[Row] = [
        ("Week P&L", f"{money(s.get('pnl'))} ({_signed(s.get('return'))})"),
        ("NAV at week end", money(s.get("nav_end"))),
        ("Trades", f"{s.get('trades_count', 0)} ({s.get('closed_trades', 0)} closed)"),
        ("Win rate", pct(s.get("win_rate"), 1)),
        ("Profit factor", num(s.get("profit_factor"))),
        ("Max drawdown (week)", pct(s.get("max_drawdown"))),
        ("Best / worst day", f"{money(s.get('best_day'))} / {money(s.get('worst_day'))}"),
        ("GO/NO-GO", str(gates.get("verdict", "n/a"))),
    ]
    attention = [f"Gates not passing: {', '.join(failing)}."] if failing else []
    return headline, rows, attention


def build_message(
    report: dict[str, Any], kind: str, links: Sequence[tuple[str, str]] = ()
) -> SummaryMessage:
    """The notification of a ``daily`` or ``weekly`` report; ``links``: (label, path) of
    the full report's files on the Tiller host."""
    if kind == "daily":
        headline, rows, attention = _daily(report)
        title = f"Tiller daily summary {report['as_of']}"
    elif kind == "weekly":
        headline, rows, attention = _weekly(report)
        title = f"Tiller weekly summary {report['week_end']}"
    else:
        raise ValueError(f"kind must be 'daily' or 'weekly', got {kind!r}")
    return SummaryMessage(
        title=title,
        text=_text(headline, rows, attention, links),
        html=_html(headline, rows, attention, links),
        markdown=_markdown(headline, rows, attention, links),
    )


def _text(
    headline: str, rows: list[Row], attention: list[str], links: Sequence[tuple[str, str]]
) -> str:
    width = max(len(label) for label, _ in rows)
    lines = [headline, ""]
    lines += [f"{label + ':':<{width + 1}} {value}" for label, value in rows]
    if attention:
        lines += ["", "Attention:", *[f"- {a}" for a in attention]]
    if links:
        lines += ["", *[f"{label}: {path}" for label, path in links]]
    return "\n".join(lines)


_CELL = 'style="padding:2px 12px 2px 0;border-bottom:1px solid #eee"'
_LABEL = 'style="display:inline-block;min-width:13em;color:#555"'


def _html(
    headline: str, rows: list[Row], attention: list[str], links: Sequence[tuple[str, str]]
) -> str:
    parts = [
        Markup('<div style="font-family:Helvetica,Arial,sans-serif;font-size:14px;color:#222">'),
        Markup("<p><b>{}</b></p>").format(headline),
        Markup('<table style="border-collapse:collapse">'),
    ]
    for label, value in rows:
        parts.append(
            Markup("<tr><td {}><span {}>{}:</span> {}</td></tr>").format(
                Markup(_CELL), Markup(_LABEL), label, value
            )
        )
    parts.append(Markup("</table>"))
    if attention:
        parts.append(Markup('<p style="color:#b00"><b>Attention</b></p><ul>'))
        parts += [Markup("<li>{}</li>").format(a) for a in attention]
        parts.append(Markup("</ul>"))
    if links:
        parts.append(Markup("<p>"))
        parts += [
            Markup('{}: <span style="font-family:monospace">{}</span><br>').format(label, path)
            for label, path in links
        ]
        parts.append(Markup("</p>"))
    parts.append(Markup("</div>"))
    # no whitespace between tags: apprise's plain-text part would turn it into blank lines
    return str(Markup("").join(parts))


def _markdown(
    headline: str, rows: list[Row], attention: list[str], links: Sequence[tuple[str, str]]
) -> str:
    lines = [f"*{headline}*"]
    lines += [f"• {label}: {value}" for label, value in rows]
    if attention:
        lines += ["", "*Attention*", *[f"• {a}" for a in attention]]
    if links:
        lines += ["", *[f"{label}: `{path}`" for label, path in links]]
    return "\n".join(lines)
