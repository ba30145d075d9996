"""Notifications an operator can trust, over real transports on 127.0.0.1 (SMTP via
aiosmtpd, Slack's webhook and json:// on a local HTTP server):

* ``tiller notify test``: one line per channel, ``scheme://host[:port]`` only, exit 1 when
  one failed;
* an unusable URL (``TILLER_NOTIFY_URLS=notaurl``) is a one-line configuration error at
  start-up, quoting nothing of the URL;
* the summary email was 6.6 MB (the 4.8 MB HTML report attached, its text one long line):
  now a short HTML part with a small table, a readable text part, a light copy of the
  report attached, well under 200 KB; Slack gets markdown, a JSON webhook plain text.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.fakes.channels import MailHandler, free_port
from tests.fakes.http import FakeServer
from tiller.alerts import ALERT_LOG, Notifier, flow_failed
from tiller.channels import channel_label, url_problem
from tiller.errors import ConfigError
from tiller.reporting.daily import DailyReportInputs, build_daily_report
from tiller.reporting.render import num, render_html
from tiller.store.repo import Store

SLACK_TOKENS = ("T0SECRETAA", "B0SECRETBB", "xoxSECRETcccccccccccccc")
SLACK_URL = "slack://{}/{}/{}".format(*SLACK_TOKENS)
PASSWORD = "hunter2SECRETpw"
LIMIT = 200_000  # bytes: the summary email must stay well under this


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    store = Store.open(sqlite_url)
    yield store
    store.close()


def mail_url(port: int) -> str:
    return f"mailto://127.0.0.1:{port}?from=tiller@example.com&to=ops@example.com"


# ------------------------------------------------------------------ notify test


def test_notify_test_prints_each_channel_without_its_secrets(
    receiver: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tiller import cli

    closed = free_port()
    good = f"json://127.0.0.1:{receiver.port}/hook?token=QSECRETtoken"
    bad = f"json://ops:{PASSWORD}@127.0.0.1:{closed}/hook?token=ZSECRETtoken"
    monkeypatch.setenv("TILLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TILLER_NOTIFY_URLS", f"{good}, {bad} {SLACK_URL}")
    monkeypatch.setenv("TILLER_ALERTS__TIMEOUT_SECONDS", "3")

    result = CliRunner().invoke(cli.app, ["notify", "test"])

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "test message sent to 3 channel(s):"
    assert lines[1].startswith(f"  1. ok      json://127.0.0.1:{receiver.port} ")
    assert lines[2].startswith(f"  2. FAILED  json://127.0.0.1:{closed} ")
    assert "JSON (all levels): " in lines[2] and "onnection" in lines[2]
    assert lines[3].startswith("  3. ok      slack://*** ") and "Slack (all levels)" in lines[3]
    assert lines[4] == "2 of 3 channel(s) delivered, 1 failed"
    for secret in (*SLACK_TOKENS, PASSWORD, "QSECRETtoken", "ZSECRETtoken", "/hook"):
        assert secret not in result.output
    # the messages arrived: the json hook and Slack's webhook
    by_path = {r.path: r for r in receiver.requests}
    assert json.loads(by_path["/hook"].body)["title"] == "Tiller test notification"
    slack = json.loads(by_path["/services/{}/{}/{}".format(*SLACK_TOKENS)].body)
    assert "tiller notify test" in slack["attachments"][0]["text"]
    # nothing is recorded as an alert: a test has no cooldown
    assert not (tmp_path / "home" / "tiller.db").exists()

    monkeypatch.setenv("TILLER_NOTIFY_URLS", good)
    ok = CliRunner().invoke(cli.app, ["notify", "test"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().endswith("1 of 1 channel(s) delivered")


def test_notify_test_names_the_levels_of_per_level_channels(
    receiver: FakeServer, make_settings: Callable[..., Any]
) -> None:
    from tiller.alerts import check_channels

    hook = f"json://127.0.0.1:{receiver.port}/hook"
    other = f"json://127.0.0.1:{receiver.port}/critical"
    settings = make_settings(
        notify_urls=[hook], alerts={"channels": {"CRITICAL": [other, hook], "EMERGENCY": [other]}}
    )
    checks = check_channels(settings)
    assert [(c.label, c.levels, c.ok) for c in checks] == [
        (f"json://127.0.0.1:{receiver.port}", ("INFO", "WARNING", "CRITICAL", "EMERGENCY"), True),
        (f"json://127.0.0.1:{receiver.port}", ("CRITICAL", "EMERGENCY"), True),
    ]
    assert len(receiver.requests) == 2


def test_notify_test_without_a_channel_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tiller import cli

    monkeypatch.setenv("TILLER_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli.app, ["notify", "test"])
    assert result.exit_code == 2
    assert "no notification channel is configured: set TILLER_NOTIFY_URLS" in result.output


# ------------------------------------------------------------- URLs at start-up


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "not a URL (no scheme://)"),
        ("xyzSECRET://hostname/path", "apprise has no service for xyzsecret://"),
        ("slack://SECRETonlyonetoken", "apprise cannot use this slack:// URL"),
        ("mailto://127.0.0.1:25?from=x@y.z&to=ops@example.com", "Invalid ~From~ email"),
    ],
)
def test_apprise_decides_which_urls_are_usable(url: str, why: str) -> None:
    problem = url_problem(url)
    assert problem is not None and why in problem
    for part in ("SECRETonlyonetoken", "x@y.z", "hostname"):
        assert part not in problem


def test_usable_urls_pass_and_are_labelled_by_scheme_and_host() -> None:
    mail = "mailtos://tiller:APPpassword99@smtp.example.com:587?to=ops@example.com"
    assert url_problem(mail) is None
    assert channel_label(mail) == "mailtos://smtp.example.com:587"
    assert url_problem(SLACK_URL) is None
    assert channel_label(SLACK_URL) == "slack://***"  # the token sits where a host would be
    hook = "https://hooks.slack.com/services/" + "/".join(SLACK_TOKENS)
    assert channel_label(hook) == "https://hooks.slack.com"
    assert channel_label("json://user:pw@127.0.0.1:8080/x?token=abc") == "json://127.0.0.1:8080"


def test_an_unusable_url_is_one_line_of_configuration_error(
    make_settings: Callable[..., Any],
) -> None:
    with pytest.raises(ConfigError) as error:
        make_settings(notify_urls="json://127.0.0.1:9/ok notaurl")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: TILLER_NOTIFY_URLS")
    assert "entry 2 of 2: not a URL" in message and "notaurl" not in message
    assert "127.0.0.1:9" not in message  # the value is never echoed
    with pytest.raises(ConfigError) as level:
        make_settings(alerts={"channels": {"CRITICAL": ["slack://SECRETonlyonetoken"]}})
    assert "\n" not in str(level.value)
    assert "alerts.channels" in str(level.value) and "CRITICAL: not a usable" in str(level.value)
    assert "SECRETonlyonetoken" not in str(level.value)


def test_the_cli_refuses_notaurl_in_one_line_before_anything_runs(tmp_path: Path) -> None:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TILLER_")},
        "TILLER_HOME": str(tmp_path / "home"),
        "TILLER_NOTIFY_URLS": "notaurl",
    }
    for args in (["notify", "test"], ["run", "daily", "--as-of", "2024-03-08"]):
        result = subprocess.run(
            [sys.executable, "-m", "tiller.cli", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: invalid configuration: TILLER_NOTIFY_URLS")
        assert "not a URL" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "tiller.db").exists()


# --------------------------------------------------------------- the summary


def three_session_report() -> dict[str, Any]:
    """The report that showed it: a few sessions, a handful of signals, the HTML with
    plotly (about 4.8 MB)."""
    idx = pd.bdate_range(end="2024-03-08", periods=3)
    nav = pd.Series([100_000.0, 99_950.75, 99_962.83], index=idx)
    inputs = DailyReportInputs(
        as_of=dt.date(2024, 3, 8),
        nav_history=nav,
        cash=69_928.48,
        positions=[
            {"symbol": "GLD", "qty": 115.0, "price": 261.17, "value": 30_034.35, "weight": 0.3}
        ],
        targets={"GLD": 0.43, "CASH": 0.57},
        trades=[
            {
                "symbol": "GLD",
                "side": "buy",
                "qty": 49.0,
                "status": "accepted",
                "fill_price": None,
                "client_order_id": "tiller-rp-20240308-GLD-buy-1",
            }
        ],
        risk={
            "level": "L0",
            "drawdown": 0.0004,
            "peak_nav": 100_000.0,
            "distance_to_next": 0.0496,
            "kill_switch": False,
            "actions": [],
        },
        risk_history=pd.Series([0, 0, 0], index=idx),
        signals=[
            {"symbol": "GLD", "signal": "BUY", "confidence": 0.42, "reason": "momentum"},
            {"symbol": "SPY", "signal": "SELL", "confidence": 0.26, "reason": "below SMA50"},
        ],
        data_quality={"status": "passed", "blocking": False, "warnings": 0, "findings": []},
        regime={"regime": "HIGH_VOL", "vix": 31.39, "vix_date": "2024-03-08", "effect": "x"},
    )
    return build_daily_report(inputs)


@pytest.fixture
def full_report(tmp_path: Path) -> tuple[Any, Path]:
    from tasks.report import RenderedReport

    report = three_session_report()
    folder = tmp_path / "home" / "reports" / "daily"
    folder.mkdir(parents=True)
    html_path = folder / "2024-03-08.html"
    html_path.write_text(render_html(report, "daily"), encoding="utf-8")
    (folder / "2024-03-08.json").write_text(json.dumps(report))
    assert html_path.stat().st_size > 3_000_000  # plotly.js inline: the page is heavy
    return RenderedReport("daily", dt.date(2024, 3, 8), report, html_path.read_text()), html_path


def _parts(raw: bytes) -> tuple[Message, dict[str, str], list[Message]]:
    message = message_from_bytes(raw)
    bodies: dict[str, str] = {}
    attached = []
    for part in message.walk():
        if part.get_filename():
            attached.append(part)
        elif part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            bodies[part.get_content_type()] = payload.decode()
    return message, bodies, attached


def test_the_summary_email_is_short_readable_and_light(
    smtp: tuple[int, MailHandler],
    store: Store,
    make_settings: Callable[..., Any],
    full_report: tuple[Any, Path],
) -> None:
    from tasks.report import notify

    port, mail = smtp
    rendered, html_path = full_report
    settings = make_settings(notify_urls=[mail_url(port)])

    assert notify(settings, store, rendered, html_path) == "sent"

    [raw] = mail.raw
    assert len(raw) < LIMIT, f"summary email is {len(raw)} bytes"
    message, bodies, attached = _parts(raw)
    assert message["Subject"] == "Tiller daily summary 2024-03-08"
    html, text = bodies["text/html"], bodies["text/plain"]
    # HTML: a small table, one figure per row
    assert "<table" in html and html.count("<tr>") >= 8
    assert "Daily P&amp;L:</span> $12.08 (+0.01%)" in html
    assert "n/a: fewer than 60 sessions (2 so far)" in html
    assert str(html_path) in html
    # text: one figure per line, label and value together
    lines = text.splitlines()
    assert lines[0] == "Tiller daily 2024-03-08: NAV $99,962.83"
    assert "Daily P&L: $12.08 (+0.01%)" in lines
    assert "Regime: HIGH_VOL (VIX 31.39)" in lines
    assert "Sharpe, CAGR, volatility: n/a: fewer than 60 sessions (2 so far)" in lines
    assert f"Full report (HTML): {html_path}" in lines
    assert "" not in lines[1:-2]  # no blank line between figures
    # attached: the report's tables, no plotly
    [light] = attached
    assert light.get_filename() == "daily-2024-03-08-tables.html"
    body = light.get_payload(decode=True)
    assert isinstance(body, bytes) and len(body) < 50_000
    assert b"<script" not in body and b"Positions and weights" in body
    assert b"Chart left out of this light copy" in body


def test_slack_gets_markdown_and_a_json_webhook_plain_text(
    receiver: FakeServer,
    store: Store,
    make_settings: Callable[..., Any],
    full_report: tuple[Any, Path],
) -> None:
    from tasks.report import notify

    rendered, html_path = full_report
    hook = f"json://127.0.0.1:{receiver.port}/hook"
    settings = make_settings(notify_urls=[hook, SLACK_URL])

    assert notify(settings, store, rendered, html_path) == "sent"

    by_path = {r.path: r for r in receiver.requests}
    slack = json.loads(by_path["/services/{}/{}/{}".format(*SLACK_TOKENS)].body)
    assert slack["mrkdwn"] is True
    text = slack["attachments"][0]["text"]
    assert text.startswith("*Tiller daily 2024-03-08: NAV $99,962.83*\n• NAV: ")
    assert "• Daily P&amp;L: $12.08 (+0.01%)" in text  # Slack's entity for &
    assert f"Full report (HTML): `{html_path}`" in text
    payload = json.loads(by_path["/hook"].body)
    assert payload["title"] == "Tiller daily summary 2024-03-08"
    assert "Daily P&L:" in payload["message"] and "<" not in payload["message"]
    [attachment] = payload["attachments"]
    assert attachment["filename"] == "daily-2024-03-08-tables.html"
    assert len(base64.b64decode(attachment["base64"])) < 50_000
    assert len(by_path["/hook"].body) < LIMIT


def test_every_email_alert_keeps_its_line_breaks(
    smtp: tuple[int, MailHandler], store: Store, make_settings: Callable[..., Any]
) -> None:
    port, mail = smtp
    settings = make_settings(notify_urls=[mail_url(port)])
    alert = flow_failed("daily-rebalance", "2024-03-08", "stage orders failed\nbroker said 503")
    assert Notifier(settings, store).send(alert).status == "sent"
    _, bodies, _ = _parts(mail.raw[0])
    assert "<br" in bodies["text/html"]
    assert "stage orders failed\nbroker said 503" in bodies["text/plain"].replace("\r\n", "\n")
    assert store.select(ALERT_LOG.select()).iloc[0]["status"] == "sent"


def test_a_summary_that_cannot_be_built_still_names_the_report(
    receiver: FakeServer,
    store: Store,
    make_settings: Callable[..., Any],
    full_report: tuple[Any, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.report import notify
    from tiller.reporting import message

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("summary")

    monkeypatch.setattr(message, "build_message", broken)
    rendered, html_path = full_report
    settings = make_settings(notify_urls=[f"json://127.0.0.1:{receiver.port}/hook"])
    assert notify(settings, store, rendered, html_path) == "sent"
    payload = json.loads(receiver.requests[-1].body)
    assert f"Full report: {html_path}" in payload["message"]
    assert payload["attachments"] == []


def test_summary_figures_match_the_report() -> None:
    from tiller.reporting.message import build_message

    rng = np.random.default_rng(3)
    idx = pd.bdate_range(end="2024-06-28", periods=80)
    nav = pd.Series(100_000 * np.cumprod(1 + rng.normal(0.0005, 0.01, 80)), index=idx)
    report = build_daily_report(
        DailyReportInputs(as_of=idx[-1].date(), nav_history=nav, cash=1_000.0)
    )
    text = build_message(report, "daily").text
    assert "Sharpe:" in text and num(report["summary"]["sharpe"]) in text
    assert "fewer than 60 sessions" not in text
