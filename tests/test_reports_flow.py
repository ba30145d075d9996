"""Reports end to end: the daily report stage, the weekly-review flow, notifications
(with the HTML attached) through a local receiver, re-rendering from the CLI, and the
HTML opened in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
from datetime import date
from pathlib import Path

import pytest

from tests.fakes.http import FakeHandler, FakeServer
from tiller.store.repo import Store

from . import browser

DAYS = (date(2024, 3, 6), date(2024, 3, 7), date(2024, 3, 8))


class Hook(FakeHandler):
    """Receives apprise's json:// notifications."""

    def route(self, method, path, query, body):  # type: ignore[no-untyped-def]
        return 200, {}, {"ok": True}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str, prefect_api: str):
    monkeypatch.setenv("TILLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TILLER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TILLER_HISTORY_START", "2023-01-03")
    return tmp_path / "home"


def _no_nan(text: str) -> None:
    assert "NaN" not in text and "nan" not in text.replace("nano", "")


def _artifacts(api: str, key: str) -> list[dict]:  # type: ignore[type-arg]
    import urllib.request

    request = urllib.request.Request(
        f"{api.rstrip('/')}/artifacts/filter",
        data=json.dumps({"artifacts": {"key": {"any_": [key]}}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read()))


def test_daily_reports_weekly_review_and_summaries(
    env: Path, monkeypatch, prefect_api: str
) -> None:
    from tiller.cli import run_daily_flow, run_weekly_flow

    with FakeServer(Hook) as hook:
        monkeypatch.setenv("TILLER_NOTIFY_URLS", f"json://127.0.0.1:{hook.port}/hook")
        for day in DAYS:
            summary = run_daily_flow(day, force=False, prefect=True)
            assert summary["status"] == "completed", summary["error"]
        weekly = run_weekly_flow(DAYS[-1], force=False, prefect=True)
    assert weekly["status"] == "completed", weekly["error"]

    daily_json = Path(summary["reports"]["daily"]["json"])
    report = json.loads(daily_json.read_text())
    assert report["schema_version"] == "1.0" and report["as_of"] == "2024-03-08"
    assert report["summary"]["nav"] == summary["nav"]
    assert report["risk"]["level"] == summary["risk_level"]
    _no_nan(daily_json.read_text())
    review = json.loads(Path(weekly["reports"]["weekly"]["json"]).read_text())
    gates = {g["name"] for g in review["go_no_go"]["gates"]}
    assert len(gates) == 7
    assert review["stress_tests"]["notes"]  # "no stress test has been run yet"
    # paper vs a daily-cadence backtest over the same three sessions on the same bars
    deviation = review["deviation"]
    assert deviation["available"], deviation
    assert deviation["return"]["paper"] == pytest.approx(summary["nav"] / 100_000 - 1)
    assert deviation["return"]["backtest"] is not None
    assert deviation["drawdown"]["flagged"] in (True, False)

    posts = [r for r in hook.requests if r.method == "POST"]
    assert len(posts) == 4  # three daily summaries and the weekly one
    last = json.loads(posts[-1].body)
    assert "weekly" in last["title"].lower()
    assert last["attachments"][0]["filename"] == "weekly-2024-03-08-tables.html"
    # a short summary and a light copy of the report (no plotly), not the 5 MB page
    for post in posts:
        assert len(post.body) < 200_000
        light = base64.b64decode(json.loads(post.body)["attachments"][0]["base64"])
        assert b"<script" not in light
    assert "Full report (HTML): " in json.loads(posts[0].body)["message"]

    # published as Prefect artifacts: a markdown summary and a table per report
    markdown = _artifacts(prefect_api, "daily-report")
    assert markdown and markdown[0]["type"] == "markdown" and "NAV" in markdown[0]["data"]
    assert _artifacts(prefect_api, "weekly-report")

    store = Store.open(os.environ["TILLER_DATABASE_URL"])
    assert (
        store.select(__import__("sqlalchemy").text("SELECT count(*) FROM reports")).iloc[0, 0] == 4
    )
    # turnover and costs per month, from the fills the store holds
    fills = store.select(__import__("sqlalchemy").text("SELECT qty, price, commission FROM fills"))
    assert len(fills)  # the first day's orders filled on the second
    trading = report["trading"]
    assert [m["month"] for m in trading["months"]] == ["2024-03"]
    inception = trading["since_inception"]
    assert inception["sessions"] == 3
    assert inception["traded"] == pytest.approx(float((fills["qty"] * fills["price"]).sum()))
    assert inception["costs"] == pytest.approx(float(fills["commission"].sum()))
    assert review["trading"]["since_inception"] == inception
    assert 'id="trading"' in Path(summary["reports"]["daily"]["html"]).read_text()


def test_a_notification_failure_never_fails_the_run(env: Path, monkeypatch) -> None:
    from tiller.cli import run_daily_flow

    monkeypatch.setenv("TILLER_NOTIFY_URLS", "json://127.0.0.1:9/closed")
    first = run_daily_flow(DAYS[0], force=False)
    assert first["status"] == "completed"
    second = run_daily_flow(DAYS[1], force=False)
    report = json.loads(Path(second["reports"]["daily"]["json"]).read_text())
    failures = report["health"]["notification_failures"]
    assert failures and failures[0]["trigger"] == "summary"
    assert "127.0.0.1:9" not in json.dumps(report)  # no URL leaks into the report


def test_html_reports_render_in_chromium_with_charts_and_no_console_errors(env: Path) -> None:
    from tiller.cli import run_daily_flow, run_weekly_flow

    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("chromium not installed")
    for day in DAYS:
        daily = run_daily_flow(day, force=False)
    weekly = run_weekly_flow(DAYS[-1], force=False)
    for kind, summary, charts in (("daily", daily, 4), ("weekly", weekly, 1)):
        page = browser.render(Path(summary["reports"][kind]["html"]))
        assert page.console == [], page.console
        assert page.charts >= charts, f"{kind}: {page.charts} charts drawn"
        assert page.drawn_svgs >= charts


def test_report_for_a_date_without_a_run_fails_in_one_line(env: Path, tmp_path: Path) -> None:
    """It used to write a "first run, NAV $100,000" report for a session that never ran
    (and this test expected that): now one line naming the sessions that did, nothing
    written; a session that ran renders as before."""
    import subprocess
    import sys

    from tiller.cli import run_daily_flow

    def report(day: date) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tiller.cli", "report", "daily", "--as-of", day.isoformat()],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ},
        )

    never = report(DAYS[2])
    assert never.returncode == 2, never.stdout
    [line] = never.stderr.strip().splitlines()
    assert line == (
        "error: no daily-rebalance run for 2024-03-08, so there is no report to render: no "
        "daily-rebalance run is stored yet; start with `tiller run daily`"
    )
    assert not (env / "reports").exists()

    assert run_daily_flow(DAYS[0], force=False)["status"] == "completed"
    again = report(DAYS[0])
    assert again.returncode == 0, again.stderr
    html = Path(again.stdout.strip().splitlines()[1].strip())
    _no_nan(html.read_text().split("<script")[0])
    missing = report(DAYS[2])
    assert missing.returncode == 2
    assert "1 session(s) ran from 2024-03-06 to 2024-03-06" in missing.stderr
    assert not (env / "reports" / "daily" / "2024-03-08.html").exists()
