"""Render report dicts as self-contained HTML, a markdown summary, or a few lines of text.

The HTML embeds the full plotly.js bundle **once**, inline (no CDN), so the file
opens offline.  A chart whose data is missing is replaced by a sentence.
Numbers are formatted (``$1,234.56``, ``5.00%``); ``None`` renders as ``n/a``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

if TYPE_CHECKING:
    import jinja2
    import plotly.graph_objects as go

TEMPLATE_DIR = Path(__file__).parents[2] / "reports" / "templates"
NA = "n/a"
LEVEL_COLOURS = {"L1": "#e0b000", "L2": "#e07000", "L3": "#d03000", "L4": "#900000"}

Kind = str
"""``"daily"`` or ``"weekly"`` (checked at run time)."""


DAY = "%b %d, %Y"  # date axes: one label per day, no clock times
ONE_DAY_MS = 86_400_000


def _date_axis(fig: Any, points: int) -> None:
    """Label dates, never clock times: short series get one tick per day."""
    fig.update_xaxes(tickformat=DAY, **({"dtick": ONE_DAY_MS} if points <= 31 else {}))


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _unsigned_zero(text: str) -> str:
    """``-0.00`` -> ``0.00``: a value that rounds to zero is shown without a sign."""
    if text.startswith("-") and not any(c in "123456789" for c in text):
        return text[1:]
    return text


def money(value: Any) -> str:
    """``-1234.5`` -> ``-$1,234.50``; a value that rounds to zero -> ``$0.00``; None/NaN ->
    ``n/a``."""
    if not _is_num(value):
        return NA
    return f"-${abs(value):,.2f}" if round(value, 2) < 0 else f"${abs(value):,.2f}"


def pct(value: Any, digits: int = 2) -> str:
    """``0.0512`` -> ``5.12%``; ``-0.00001`` -> ``0.00%`` (never ``-0.00%``); None/NaN ->
    ``n/a``."""
    return _unsigned_zero(f"{value * 100:.{digits}f}") + "%" if _is_num(value) else NA


def num(value: Any, digits: int = 2) -> str:
    """``1.23456`` -> ``1.23``; ``-0.001`` -> ``0.00``; None/NaN -> ``n/a``."""
    return _unsigned_zero(f"{value:,.{digits}f}") if _is_num(value) else NA


def na(value: Any) -> str:
    """Any value as text, None as ``n/a``."""
    if value is None or (isinstance(value, float) and value != value):
        return NA
    return str(value)


def _env() -> jinja2.Environment:
    import jinja2  # imported when a page is rendered, not with this module

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, pct=pct, num=num, na=na)
    return env


class _Charts:
    """Turns figures into HTML, inlining plotly.js with the first one only."""

    def __init__(self) -> None:
        self.bundled = False

    def html(self, name: str, fig: go.Figure) -> Markup:
        fig.update_layout(height=340, margin={"l": 50, "r": 20, "t": 40, "b": 40})
        body = fig.to_html(
            full_html=False, include_plotlyjs=not self.bundled, config={"displaylogo": False}
        )
        self.bundled = True
        return Markup(f'<div class="chart" data-chart="{name}">{body}</div>')


def _missing(sentence: str) -> Markup:
    return Markup('<p class="missing">{}</p>').format(sentence)


def _daily_charts(report: dict[str, Any]) -> dict[str, Markup]:
    import plotly.graph_objects as go  # imported when a chart is drawn, not with this module

    charts = _Charts()
    out: dict[str, Markup] = {}
    nav = report["series"]["nav"]
    dd = report["series"]["drawdown"]
    if len(nav) >= 2:
        fig = go.Figure(
            go.Scatter(
                x=[p["date"] for p in nav], y=[p["nav"] for p in nav], mode="lines", name="NAV"
            )
        )
        fig.update_layout(title="Equity curve (NAV, USD)")
        _date_axis(fig, len(nav))
        out["equity"] = charts.html("equity", fig)
    else:
        out["equity"] = _missing("Not enough history yet for an equity curve.")
    if len(dd) >= 2:
        fig = go.Figure(
            go.Scatter(
                x=[p["date"] for p in dd],
                y=[p["drawdown"] for p in dd],
                mode="lines",
                fill="tozeroy",
                name="Drawdown",
            )
        )
        for level, threshold in report["risk"]["thresholds"].items():
            if _is_num(threshold):
                fig.add_hline(
                    y=threshold,
                    line_dash="dash",
                    line_color=LEVEL_COLOURS.get(level, "#888"),
                    annotation_text=f"{level} {threshold:.0%}",
                )
        fig.update_layout(title="Drawdown from peak", yaxis_tickformat=".0%")
        _date_axis(fig, len(dd))
        out["drawdown"] = charts.html("drawdown", fig)
    else:
        out["drawdown"] = _missing("Not enough history yet for a drawdown chart.")
    rows = report["positions"]["rows"]
    if rows:
        symbols = [r["symbol"] for r in rows]
        fig = go.Figure(
            [
                go.Bar(x=symbols, y=[r["weight"] for r in rows], name="Actual"),
                go.Bar(x=symbols, y=[r["target"] for r in rows], name="Target"),
            ]
        )
        fig.update_layout(title="Weights vs targets", barmode="group", yaxis_tickformat=".0%")
        out["weights"] = charts.html("weights", fig)
    else:
        out["weights"] = _missing("No positions and no targets: nothing to chart.")
    history = report["risk"]["history"]
    if len(history) >= 2:
        fig = go.Figure(
            go.Scatter(
                x=[p["date"] for p in history],
                y=[p["level"] for p in history],
                mode="lines+markers",
                line_shape="hv",
                name="Risk level",
            )
        )
        fig.update_layout(
            title="Risk-level timeline",
            yaxis={
                "tickvals": [0, 1, 2, 3, 4],
                "ticktext": ["L0", "L1", "L2", "L3", "L4"],
                "range": [-0.2, 4.2],
            },
        )
        _date_axis(fig, len(history))
        out["risk_timeline"] = charts.html("risk_timeline", fig)
    else:
        out["risk_timeline"] = _missing("Not enough history yet for a risk-level timeline.")
    return out


def _weekly_charts(report: dict[str, Any]) -> dict[str, Markup]:
    import plotly.graph_objects as go

    charts = _Charts()
    out: dict[str, Markup] = {}
    pnl = report["series"]["daily_pnl"]
    if pnl:
        values = [p["pnl"] for p in pnl]
        colours = ["#2a8" if _is_num(v) and v >= 0 else "#c33" for v in values]
        fig = go.Figure(go.Bar(x=[p["date"] for p in pnl], y=values, marker_color=colours))
        fig.update_layout(title="Daily P&L (USD)")
        _date_axis(fig, len(pnl))
        out["daily_pnl"] = charts.html("daily_pnl", fig)
    else:
        out["daily_pnl"] = _missing("Not enough history yet for daily P&L.")
    corr = report["correlation"]
    if corr["symbols"]:
        symbols = corr["symbols"]
        z = [[corr["matrix"][r][c] for c in symbols] for r in symbols]
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=symbols,
                y=symbols,
                zmin=-1,
                zmax=1,
                colorscale="RdBu",
                reversescale=True,
                text=[[num(v) for v in row] for row in z],
                texttemplate="%{text}",
            )
        )
        window = corr.get("window") or {}
        span = (
            f" over {window['sessions']} sessions, {window['start']} to {window['end']}"
            if window
            else ""
        )
        fig.update_layout(title=f"Correlation of daily returns{span}")
        out["correlation"] = charts.html("correlation", fig)
    else:
        out["correlation"] = _missing("Not enough history yet for a correlation matrix.")
    return out


class _NoCharts(dict[str, Markup]):
    """Every chart replaced by one sentence (the light copy sent with a notification)."""

    def __missing__(self, key: str) -> Markup:
        return _missing(
            "Chart left out of this light copy (no plotly): the full report on the Tiller "
            "host has it."
        )


def render_html(report: dict[str, Any], kind: Kind, charts: bool = True) -> str:
    """One self-contained HTML page (plotly.js inline once) for a daily or weekly report;
    ``charts=False``: the same tables without any chart or plotly.js (a few kilobytes, for
    a notification)."""
    if kind not in ("daily", "weekly"):
        raise ValueError(f"kind must be 'daily' or 'weekly', got {kind!r}")
    drawn: dict[str, Markup]
    if not charts:
        drawn = _NoCharts()
    elif kind == "daily":
        drawn = _daily_charts(report)
    else:
        drawn = _weekly_charts(report)
    template = _env().get_template(f"{kind}.html.j2")
    return template.render(report=report, charts=drawn)


def render_markdown_summary(report: dict[str, Any], kind: Kind) -> str:
    """A short markdown table for a Prefect artifact."""
    s = report["summary"]
    if kind == "daily":
        risk = report["risk"]
        rows = [
            ("NAV", money(s["nav"])),
            ("Daily P&L", f"{money(s['daily_pnl'])} ({pct(s['daily_return'])})"),
            ("Cumulative P&L", f"{money(s['cumulative_pnl'])} ({pct(s['cumulative_return'])})"),
            ("Trades", str(s["trades_count"])),
            ("Win rate", pct(s["win_rate"], 1)),
            ("Sharpe", num(s["sharpe"])),
            ("Max drawdown", pct(s["max_drawdown"])),
            (
                "Risk level",
                f"{risk['level']} (drawdown {pct(risk['drawdown'])}, "
                f"{pct(risk['distance_to_next'])} to {na(risk['next_level'])})",
            ),
            ("Data quality", na(report["data_quality"]["status"])),
        ]
        title = f"## Tiller daily report — {report['as_of']}"
    else:
        rows = [
            ("Week P&L", f"{money(s['pnl'])} ({pct(s['return'])})"),
            ("Trades", str(s["trades_count"])),
            ("Win rate", pct(s["win_rate"], 1)),
            ("Profit factor", num(s["profit_factor"])),
            ("Sharpe", num(s["sharpe"])),
            ("Max drawdown", pct(s["max_drawdown"])),
            ("Best / worst day", f"{money(s['best_day'])} / {money(s['worst_day'])}"),
            ("GO/NO-GO", report["go_no_go"]["verdict"]),
        ]
        title = f"## Tiller weekly review — {report['week_start']} to {report['week_end']}"
    lines = [title, "", "| Metric | Value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    notes = s.get("notes") or []
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def summary_text(report: dict[str, Any], kind: Kind) -> str:
    """Three to six plain lines for email or Slack."""
    s = report["summary"]
    if kind == "daily":
        risk = report["risk"]
        lines = [
            f"Tiller daily {report['as_of']}: NAV {money(s['nav'])}",
            f"P&L today {money(s['daily_pnl'])} ({pct(s['daily_return'])}), "
            f"cumulative {money(s['cumulative_pnl'])} ({pct(s['cumulative_return'])})",
            f"Trades {s['trades_count']}, win rate {pct(s['win_rate'], 1)}, "
            f"Sharpe {num(s['sharpe'])}, max DD {pct(s['max_drawdown'])}",
            f"Risk {risk['level']} (drawdown {pct(risk['drawdown'])}, "
            f"{pct(risk['distance_to_next'])} to {na(risk['next_level'])})"
            + (" — KILL SWITCH ON" if risk["kill_switch"] else ""),
        ]
        errors = report["health"]["errors"]
        if errors or report["data_quality"]["blocking"]:
            lines.append(
                f"Attention: {len(errors)} error(s), data quality "
                f"{na(report['data_quality']['status'])}"
            )
    else:
        gates = report["go_no_go"]
        failing = [g["name"] for g in gates["gates"] if g["status"] != "pass"]
        lines = [
            f"Tiller weekly {report['week_start']}..{report['week_end']}: "
            f"P&L {money(s['pnl'])} ({pct(s['return'])})",
            f"Trades {s['trades_count']}, win rate {pct(s['win_rate'], 1)}, "
            f"profit factor {num(s['profit_factor'])}",
            f"Sharpe {num(s['sharpe'])}, max DD {pct(s['max_drawdown'])}",
            f"GO/NO-GO: {gates['verdict']}"
            + (f" (not passing: {', '.join(failing)})" if failing else ""),
        ]
    return "\n".join(lines)
