"""Alerts over real transports on 127.0.0.1: SMTP (aiosmtpd), a Slack webhook and json://."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.channels import MailHandler, free_port
from tests.fakes.http import FakeServer
from tiller.alerts import (
    ALERT_LOG,
    AlertLevel,
    Notifier,
    emergency_stop,
    flow_failed,
    kill_switch,
    order_failures,
    recent_failures,
    risk_level_change,
    source_down,
    summary,
)
from tiller.store.repo import Store

SLACK_TOKENS = ("T0SECRETAA", "B0SECRETBB", "xoxSECRETcccccccccccccc")
SLACK_URL = "slack://{}/{}/{}".format(*SLACK_TOKENS)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 3, 1, 21, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    store = Store.open(sqlite_url)  # migration 0004 creates alert_log
    yield store
    store.close()


def rows(store: Store) -> list[dict[str, Any]]:
    frame = store.select(ALERT_LOG.select().order_by(ALERT_LOG.c.id))
    return frame.to_dict("records")


def test_email_with_the_report_attached(
    store: Store, smtp: tuple[int, MailHandler], make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    port, mail = smtp
    report = tmp_path / "report-2024-03-01.html"
    report.write_text("<html><body><h1>Daily report</h1><p>NAV 100,000</p></body></html>")
    url = f"mailto://127.0.0.1:{port}?from=tiller@example.com&to=ops@example.com"
    settings = make_settings(alerts={"channels": {"INFO": [url]}})
    notifier = Notifier(settings, store, clock=Clock())

    outcome = notifier.send(summary("daily", "2024-03-01", "NAV 100,000; 2 trades.", report))

    assert outcome.status == "sent", outcome.error
    assert outcome.channels == 1 and outcome.log_id is not None
    assert len(mail.messages) == 1
    message = mail.messages[0]
    assert "Tiller daily summary 2024-03-01" in str(message["Subject"])
    parts = list(message.walk())
    texts = [
        p.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for p in parts
        if p.get_content_maintype() == "text" and not p.get_filename()
    ]
    assert any("NAV 100,000; 2 trades." in t for t in texts)
    attached = [p for p in parts if p.get_filename() == report.name]
    assert attached, [p.get_content_type() for p in parts]
    assert b"Daily report" in attached[0].get_payload(decode=True)
    [row] = rows(store)
    assert row["status"] == "sent" and row["trigger"] == "summary" and row["level"] == "INFO"


def test_slack_webhook_and_json_channels(
    store: Store, receiver: FakeServer, make_settings: Callable[..., Any]
) -> None:
    json_url = f"json://127.0.0.1:{receiver.port}/hook"
    settings = make_settings(
        notify_urls=[json_url], alerts={"channels": {"EMERGENCY": [SLACK_URL]}}
    )
    outcome = Notifier(settings, store, clock=Clock()).send(emergency_stop("L4 drawdown 16%"))

    assert outcome.status == "sent", outcome.error
    assert outcome.channels == 2 and outcome.delivered == 2
    by_path = {r.path: r for r in receiver.requests}
    slack = by_path["/services/{}/{}/{}".format(*SLACK_TOKENS)]
    assert "L4 drawdown 16%" in slack.body.decode()
    payload = json.loads(by_path["/hook"].body)
    assert payload["title"] == "EMERGENCY STOP: trading halted"
    assert "L4 drawdown 16%" in payload["message"]


def test_json_carries_the_attachment(
    store: Store, receiver: FakeServer, make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    report = tmp_path / "weekly.html"
    report.write_text("<html>weekly</html>")
    settings = make_settings(notify_urls=[f"json://127.0.0.1:{receiver.port}/hook"])
    outcome = Notifier(settings, store).send(summary("weekly", "2024-03-01", "ok", report))
    assert outcome.status == "sent", outcome.error
    payload = json.loads(receiver.requests[-1].body)
    [attachment] = payload["attachments"]
    assert attachment["filename"] == "weekly.html"
    assert base64.b64decode(attachment["base64"]) == b"<html>weekly</html>"


def test_cooldown_suppresses_a_repeat_and_survives_a_restart(
    store: Store, receiver: FakeServer, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(
        notify_urls=[f"json://127.0.0.1:{receiver.port}/hook"],
        alerts={"cooldown_seconds": {"INFO": 60, "WARNING": 600, "CRITICAL": 60, "EMERGENCY": 0}},
    )
    clock = Clock()
    first = Notifier(settings, store, clock=clock)
    assert first.send(source_down("yfinance", "HTTP 503")).status == "sent"
    clock.now += timedelta(seconds=300)
    assert first.send(source_down("yfinance", "HTTP 503")).status == "suppressed_cooldown"
    assert first.send(source_down("massive", "HTTP 503")).status == "sent"  # another key

    restarted = Notifier(settings, Store(store.engine), clock=clock)
    assert restarted.send(source_down("yfinance", "timeout")).status == "suppressed_cooldown"
    clock.now += timedelta(seconds=301)
    assert restarted.send(source_down("yfinance", "timeout")).status == "sent"
    # EMERGENCY has no cooldown
    assert restarted.send(emergency_stop("x")).status == "sent"
    assert restarted.send(emergency_stop("x")).status == "sent"
    assert [r["status"] for r in rows(store)] == [
        "sent",
        "suppressed_cooldown",
        "sent",
        "suppressed_cooldown",
        "sent",
        "sent",
        "sent",
    ]
    assert len(receiver.requests) == 5


def test_a_failing_channel_is_recorded_and_leaks_no_secret(
    store: Store,
    receiver: FakeServer,
    make_settings: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from apprise.plugins.slack import NotifySlack

    closed = free_port()
    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://127.0.0.1:{closed}/services")
    password = "hunter2SECRETpw"
    bad_json = f"json://ops:{password}@127.0.0.1:{closed}/hook?token=QSECRETtoken"
    good_json = f"json://127.0.0.1:{receiver.port}/hook"
    settings = make_settings(
        notify_urls=[good_json], alerts={"channels": {"CRITICAL": [SLACK_URL, bad_json]}}
    )
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    notifier = Notifier(settings, store, clock=clock)

    outcome = notifier.send(order_failures(3))  # must not raise

    assert outcome.status == "failed"
    assert outcome.channels == 3 and outcome.delivered == 1
    assert outcome.error and "channel 2/3" in outcome.error and "channel 3/3" in outcome.error
    [row] = rows(store)
    assert row["status"] == "failed" and row["error"] == outcome.error
    secrets = [*SLACK_TOKENS, password, "QSECRETtoken", bad_json, SLACK_URL]
    for text in (row["error"], caplog.text):
        for secret in secrets:
            assert secret not in text
    # a failed send starts no cooldown: the next attempt goes out again
    clock.now += timedelta(seconds=1)
    assert notifier.send(order_failures(3)).status == "failed"
    failures = recent_failures(store, clock.now - timedelta(hours=1))
    assert [f["trigger"] for f in failures] == ["order_failures", "order_failures"]
    assert failures[0]["created_at"].tzinfo is not None
    assert recent_failures(store, clock.now + timedelta(seconds=1)) == []
    assert len(recent_failures(store, clock.now.date())) == 2  # a date: from its midnight UTC


def test_exceptions_inside_send_are_caught(
    store: Store,
    make_settings: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "json://127.0.0.1:9/hook?token=BOOMsecret"
    settings = make_settings(notify_urls=[url])
    notifier = Notifier(settings, store)

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"could not reach {url} with BOOMsecret")

    monkeypatch.setattr("apprise.Apprise.notify", explode)  # inside one channel's delivery
    outcome = notifier.send(kill_switch(True, "daily loss 3.4%"))
    assert outcome.status == "failed"
    assert outcome.error and "RuntimeError" in outcome.error

    monkeypatch.setattr(Notifier, "urls", explode)  # anywhere else in send()
    outcome = notifier.send(kill_switch(True, "daily loss 3.4%"))
    assert outcome.status == "failed"
    assert outcome.error and "RuntimeError" in outcome.error
    assert "BOOMsecret" not in outcome.error and "BOOMsecret" not in caplog.text
    assert [r["error"] for r in rows(store)][-1] == outcome.error
    assert "BOOMsecret" not in " ".join(r["error"] for r in rows(store))


def test_no_channel(store: Store, make_settings: Callable[..., Any]) -> None:
    outcome = Notifier(make_settings(), store).send(flow_failed("daily", "2024-03-01", "boom"))
    assert outcome.status == "no_channel" and outcome.channels == 0
    [row] = rows(store)
    assert row["status"] == "no_channel" and row["key"] == "flow_failed:daily:2024-03-01"


def test_trigger_levels() -> None:
    assert risk_level_change("L1", "L2", 0.085).level is AlertLevel.WARNING
    assert risk_level_change("L3", "L4", 0.16).level is AlertLevel.CRITICAL
    assert risk_level_change("L2", "L1", 0.04).level is AlertLevel.INFO
    assert "8.50%" in risk_level_change("L1", "L2", 0.085).body
    assert emergency_stop("x").level is AlertLevel.EMERGENCY
    assert kill_switch(True, "x").level is AlertLevel.CRITICAL
    assert order_failures(3).level is AlertLevel.CRITICAL
    assert source_down("fred", "x").key == "source_down:fred"
    assert summary("daily", "2024-03-01", "x").level is AlertLevel.INFO
