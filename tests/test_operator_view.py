"""What an operator sees of a run: the summary `tiller run daily/weekly` prints, and in the
Prefect UI the dated run names and tags, the parameter descriptions, the artifacts (also
on a rerun whose stages were all skipped), checked through the API and in Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from . import browser
from .helpers import RULES_DAILY

DAYS = (date(2024, 3, 6), date(2024, 3, 7), date(2024, 3, 8))
BIN = Path(sys.executable).parent


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Path:
    monkeypatch.setenv("TILLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TILLER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TILLER_HISTORY_START", "2023-01-03")
    for key, value in RULES_DAILY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path / "home"


def _cli(*args: str) -> Any:
    from tiller.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _rows(output: str) -> dict[str, str]:
    """``  label  text`` lines -> {label: text} (the first line is the title)."""
    rows = {}
    for line in output.splitlines()[1:]:
        label, _, text = line.strip().partition("  ")
        rows.setdefault(label, text.strip())
    return rows


def test_run_daily_and_weekly_say_what_happened(home: Path) -> None:
    outputs = []
    for day in DAYS:
        result = _cli("run", "daily", "--as-of", day.isoformat())
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    first, _, last = outputs
    assert first.splitlines()[0] == "daily-rebalance 2024-03-06: completed (local)"
    rows = _rows(first)
    assert rows["stages"] == "ingest..report completed"
    assert rows["regime"].startswith(("NORMAL (VIX ", "ELEVATED (VIX ", "HIGH_VOL (VIX "))
    assert "on 2024-03-06" in rows["regime"]
    assert rows["risk"].startswith("L0, drawdown 0.00%")
    assert rows["signals"].startswith("first session: BTC-USD ")
    assert "CASH" in rows["targets"] and "%" in rows["targets"]
    assert rows["orders"].startswith("1 (0 filled): buy ")
    assert "day +$0.00" in rows["NAV"] and "since start +$0.00" in rows["NAV"]
    assert rows["report"] == str(home / "reports" / "daily" / "2024-03-06.html")

    rows = _rows(last)
    # the day's P&L is against the previous snapshot, since start against the capital
    assert "day -$" in rows["NAV"] or "day +$" in rows["NAV"]
    assert rows["signals"].startswith(("unchanged since 2024-03-07", "1 changed since"))
    assert rows["fills"].startswith("1, $") and "commission" in rows["fills"]

    rerun = _cli("run", "daily", "--as-of", "2024-03-08")
    assert _rows(rerun.output)["stages"] == "ingest..report skipped"
    assert _rows(rerun.output)["NAV"] == rows["NAV"]  # read back, not recomputed

    # --json keeps its keys and adds the new ones
    as_json = json.loads(_cli("run", "daily", "--as-of", "2024-03-08", "--json").output)
    for key in ("flow", "as_of", "status", "stages", "error", "run_id", "data_quality"):
        assert key in as_json
    for key in ("regime", "risk_level", "kill_switch", "signals", "target_weights", "orders"):
        assert key in as_json
    assert {"nav", "cash", "positions", "reports", "orchestrator"} <= set(as_json)
    assert as_json["previous_signals_as_of"] == "2024-03-07"
    assert as_json["vix"] > 0 and as_json["vix_date"] == "2024-03-08"
    assert as_json["drawdown"] >= 0
    assert as_json["fills"]["count"] == 1
    assert as_json["since_start_pnl"] == pytest.approx(as_json["nav"] - 100_000, abs=0.01)

    weekly = _cli("run", "weekly", "--as-of", "2024-03-08")
    assert weekly.exit_code == 0, weekly.output
    assert weekly.output.splitlines()[0] == "weekly-review 2024-03-08: completed (local)"
    text = weekly.output
    assert "GO/NO-GO" in text and "NO-GO (" in text  # three sessions cannot pass
    assert "trading_days" in text and "needs >= 63" in text  # a failing row, with its rule
    assert "performance gate" in text and "FAIL" in text
    weekly_json = json.loads(_cli("run", "weekly", "--as-of", "2024-03-08", "--json").output)
    gate = weekly_json["gate"]
    assert gate["verdict"] == "NO-GO"
    assert "trading_days" in {row["name"] for row in gate["failing"]}
    assert gate["performance_gate"]["verdict"] == "FAIL" and gate["performance_gate"]["reasons"]


def test_a_blocked_run_prints_its_error(home: Path, tmp_path: Path, monkeypatch) -> None:
    from .conftest import MARKET
    from .helpers import copy_market

    folder = copy_market(MARKET, tmp_path / "market", ["GLD", "SPY", "QQQ", "BTC-USD", "VIX"])
    spy = folder / "SPY.csv"
    lines = spy.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("2024-03-06,"))
    fields = lines[index].split(",")
    fields[4] = "-" + fields[4]
    lines[index] = ",".join(fields)
    spy.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("TILLER_DATA_SOURCES", f"csv:{folder}")
    result = _cli("run", "daily", "--as-of", "2024-03-06")
    assert result.exit_code == 1
    rows = _rows(result.output)
    assert result.output.startswith("daily-rebalance 2024-03-06: blocked")
    assert rows["stages"] == "ingest..validate completed"
    assert rows["error"] == "blocking data-quality failure(s):"
    # the error's further lines continue under its first, indented past the labels
    continued = "\n" + " " * 10 + "  SPY on 2024-03-06: positive_prices: close = -"
    assert continued in result.output, result.output
    assert "regime" not in rows and "NAV" not in rows


def test_run_names_resolve_the_default_as_of_like_the_flow() -> None:
    from flows.artifacts import resolved_as_of
    from tasks.preflight import resolve_as_of

    assert resolved_as_of(None) == resolve_as_of(None).isoformat()
    assert resolved_as_of("2024-03-08") == "2024-03-08"
    assert resolved_as_of(date(2024, 3, 8)) == "2024-03-08"
    assert resolved_as_of("2024-03-09") == "2024-03-09"  # a Saturday: the run says why


def test_deployments_describe_their_parameters_and_hide_the_run_id() -> None:
    from flows.serve import deployments

    served = {d.name: d for d in deployments()}
    for name in ("daily-rebalance", "weekly-review"):
        schema = served[name]._parameter_openapi_schema.model_dump()
        assert set(schema["properties"]) == {"as_of", "force"}, name
        described = " ".join(schema["properties"]["as_of"]["description"].split())
        assert "Empty: the latest completed session, resolved when the run starts" in described
        assert schema["properties"]["force"]["description"]
    # the flow itself still takes it (the CLI passes one)
    from flows.daily_rebalance import daily_rebalance

    assert "run_id" in daily_rebalance.parameters.properties


def _client_reads(flow: str) -> tuple[list[Any], dict[str, list[Any]], dict[str, list[str]]]:
    """The flow's runs, the artifacts of each run (by run id) and each run's log lines."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])))
        artifacts = {}
        logs = {}
        for run in runs:
            artifacts[str(run.id)] = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
            logs[str(run.id)] = [
                log.message
                for log in client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
                )
            ]
    return runs, artifacts, logs


def test_prefect_runs_are_dated_tagged_and_publish_their_artifacts(
    home: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiller.cli import run_daily_flow, run_weekly_flow

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the test harness's server
    for day in DAYS[:2]:
        assert run_daily_flow(day, force=False, prefect=True)["status"] == "completed"
    rerun = run_daily_flow(DAYS[1], force=False, prefect=True)
    assert rerun["stages"] == dict.fromkeys(rerun["stages"], "skipped")
    assert run_weekly_flow(DAYS[1], force=False, prefect=True)["status"] == "completed"

    runs, artifacts, logs = _client_reads("daily-rebalance")
    dated = [r for r in runs if r.name == "daily-rebalance 2024-03-07"]
    assert len(dated) == 2  # the run and its rerun
    assert [r.name for r in runs if r.name == "daily-rebalance 2024-03-06"]
    for run in dated:
        assert "as_of:2024-03-07" in run.tags
        keys = {a.key: a for a in artifacts[str(run.id)]}
        # the rerun skipped every stage, and still shows the day's report
        assert set(keys) == {
            "daily-rebalance-summary",
            "daily-report",
            "daily-report-table",
            "daily-report-link",
        }, keys
        summary = str(keys["daily-rebalance-summary"].data)
        assert "daily-rebalance 2024-03-07" in summary and "VIX" in summary
        assert "since start" in summary and "2024-03-07.html" in summary
        table = keys["daily-report-table"].data
        rows = json.loads(table) if isinstance(table, str) else table
        assert rows and {"symbol", "weight", "target", "deviation"} <= set(rows[0])
        assert "CASH" in {row["symbol"] for row in rows}
        link = str(keys["daily-report-link"].data)
        assert "file://" in link and "2024-03-07.html" in link
        assert "NAV" in str(keys["daily-report"].data)
        # the same summary in the flow run's log
        assert any(m.startswith("daily-rebalance 2024-03-07: completed") for m in logs[str(run.id)])

    weekly_runs, weekly_artifacts, _ = _client_reads("weekly-review")
    (weekly,) = [r for r in weekly_runs if r.name == "weekly-review 2024-03-07"]
    weekly_keys = {a.key: a for a in weekly_artifacts[str(weekly.id)]}
    assert {"weekly-review-summary", "weekly-report", "weekly-report-table"} <= set(weekly_keys)
    assert "GO/NO-GO" in str(weekly_keys["weekly-review-summary"].data)


# ----------------------------------------------------------------- the UI in Chromium


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Prefect server with its UI, on a free loopback port."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"{base}/api",
        "PREFECT_UI_API_URL": f"{base}/api",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the Prefect server did not start"
                assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(1)
        yield base, env
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


@pytest.mark.slow
def test_the_flow_run_page_shows_the_artifacts(
    ui_server: tuple[str, dict[str, str]], home: Path, tmp_path: Path
) -> None:
    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("chromium not installed")
    base, env = ui_server
    env = {
        **env,
        "TILLER_HOME": os.environ["TILLER_HOME"],
        "TILLER_DATABASE_URL": os.environ["TILLER_DATABASE_URL"],
        "TILLER_HISTORY_START": "2023-01-03",
        **RULES_DAILY,
    }
    for _ in range(2):  # the run, then a rerun that skips every stage
        run = subprocess.run(
            [str(BIN / "tiller"), "run", "daily", "--as-of", "2024-03-06"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert run.stdout.startswith("daily-rebalance 2024-03-06: completed (prefect)")
    runs = _post(f"{base}/api/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC"})
    names = [r["name"] for r in runs]
    assert names == ["daily-rebalance 2024-03-06"] * 2, names
    rerun = runs[0]  # the newest: every stage skipped
    with browser.Page(timeout=90) as page:
        page.open(f"{base}/runs/flow-run/{rerun['id']}")
        page.wait_for_text("daily-rebalance 2024-03-06", "as_of:2024-03-06", "Artifacts")
        deadline = time.monotonic() + 30
        while not page.click_text("Artifacts", ".p-tab"):
            assert time.monotonic() < deadline, "no Artifacts tab to click"
            time.sleep(0.5)
        text = page.wait_for_text(
            "daily-rebalance-summary",
            "daily-report-table",
            "daily-report-link",
            "positions vs targets 2024-03-06",
        )
        assert "daily-report\n" in text
        # the summary artifact's own page renders its markdown
        artifacts = _post(
            f"{base}/api/artifacts/filter",
            {"artifacts": {"flow_run_id": {"any_": [rerun["id"]]}}},
        )
        summary = next(a for a in artifacts if a["key"] == "daily-rebalance-summary")
        page.open(f"{base}/artifacts/artifact/{summary['id']}")
        page.wait_for_text("daily-rebalance 2024-03-06: completed (prefect)", "VIX", "since start")
