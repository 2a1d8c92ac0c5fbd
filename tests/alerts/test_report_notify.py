"""`clauditor report --notify` (run from cron) posts yesterday's digest to the team's Slack and
webhook once a day: the figures are those the CLI prints for the same period, a failed delivery
is retried by the next run and said clearly, and the webhook URL never appears in the output."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clauditor.alerts.message import AlertMessage
from clauditor.alerts.state import claim_transitions, load_open_incidents
from clauditor.config import load_config
from clauditor.dashboards.sections import format_usd
from clauditor.errors import ConfigError
from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows
from clauditor.store import write_calls
from tests.alerts.fakeslack import FakeWebhook
from tests.alerts.test_webhook_secrets import CLI, assert_no_piece_of
from tests.conftest import call_row

BERLIN = "Europe/Berlin"
# Tuesday 08:00 in Berlin: "yesterday" is Monday 2026-10-05 there (22:00 UTC Oct 4 to 22:00
# UTC Oct 5).
AS_OF = "2026-10-06T06:00:00Z"
REPORT_URL = "https://reports.example.com/clauditor/report.html"


def _calls() -> list[dict[str, Any]]:
    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:  # UTC
        month = 10 if day < 20 else 9
        return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC)

    plan = [
        # yesterday (Berlin): chat, search, untagged and an unpriced model
        *[(at(5, 8, i), "chat", "claude-sonnet-4-5", 4000) for i in range(10)],
        *[(at(5, 9, i), "search", "claude-sonnet-4-5", 15_000) for i in range(4)],
        *[(at(5, 10, i), None, "claude-sonnet-4-5", 2000) for i in range(2)],
        *[(at(5, 11, i), "chat", "claude-mystery-9", 1000) for i in range(3)],
        (at(4, 22, 30), "chat", "claude-sonnet-4-5", 5000),  # 00:30 Monday in Berlin
        (at(5, 22, 30), "chat", "claude-sonnet-4-5", 50_000),  # 00:30 Tuesday: today, not in it
        # the day before (Sunday) and the same weekday last week (Monday Sep 28)
        *[(at(4, 12, i), "chat", "claude-sonnet-4-5", 6000) for i in range(5)],
        *[(at(28, 12, i), "chat", "claude-sonnet-4-5", 3000) for i in range(8)],
    ]
    return [
        call_row(
            start_time=start,
            end_time=start + dt.timedelta(seconds=2),
            feature=feature,
            request_model=model,
            response_model=model,
            input_tokens=tokens,
            output_tokens=tokens // 10,
        )
        for start, feature, model, tokens in plan
    ]


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    db = tmp_path / "clauditor.duckdb"
    write_calls(db, price_calls(frame_from_rows(_calls())))
    # An open budget incident, recorded as `alerts check` records it.
    started = dt.datetime(2026, 10, 5, 9, 0, tzinfo=dt.UTC)
    incident = AlertMessage(
        rule="budget",
        key="total",
        incident="budget|total|2026-10-05T09:00:00Z",
        transition="start",
        level=1,
        severity="warning",
        title="Budget: 80% of the monthly budget",
        summary="spent 80%",
        started_at=started,
        as_of=started,
    )
    claim_transitions(db, lambda _open: [incident], run_id="earlier-check", now=started)
    config = tmp_path / "clauditor.toml"
    config.write_text(
        f'timezone = "{BERLIN}"\n[budget]\nmonthly_usd = 2\n[report]\nurl = "{REPORT_URL}"\n'
    )
    return {"db": db, "config": config, "out": tmp_path / "report.html"}


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=180,
    )


def _common(setup: dict[str, Path]) -> list[str]:
    return ["--db", str(setup["db"]), "--config", str(setup["config"]), "--as-of", AS_OF]


def _notify(setup: dict[str, Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(["report", "--notify", "--out", str(setup["out"]), *_common(setup)], env)


def _total(setup: dict[str, Path], period: str) -> float:
    done = _run(["costs", "--period", period, "--format", "json", *_common(setup)])
    assert done.returncode == 0, done.stderr
    return sum(r["cost_usd"] or 0.0 for r in json.loads(done.stdout))


def _fields(payload: dict[str, Any]) -> dict[str, str]:
    """The Slack payload's section fields, label -> value (mrkdwn ``*label*\\nvalue``)."""
    fields = {}
    for block in payload["blocks"]:
        for f in block.get("fields", []):
            label, _, value = f["text"].partition("\n")
            fields[label.strip("*")] = value
    return fields


def test_the_digest_reaches_slack_and_the_webhook_once_a_day(
    setup: dict[str, Path], slack: FakeWebhook, hook: FakeWebhook
) -> None:
    env = {"CLAUDITOR_SLACK_WEBHOOK_URL": slack.url, "CLAUDITOR_WEBHOOK_URL": hook.url}
    first = _notify(setup, env)
    assert first.returncode == 0, first.stderr
    assert "digest for 2026-10-05 sent" in first.stdout
    assert setup["out"].is_file()
    assert slack.rejected == [] and len(slack.received) == 1 and len(hook.received) == 1

    # Cron runs it again the same day: nothing more is sent.
    again = _notify(setup, env)
    assert again.returncode == 0, again.stderr
    assert "digest for 2026-10-05 already sent" in again.stdout
    assert len(slack.received) == 1 and len(hook.received) == 1

    # The digest is in the alerts' outbox, but it is no incident `alerts check` would resolve.
    assert set(load_open_incidents(setup["db"])) == {("budget", "total")}

    payload, data = slack.received[0], hook.received[0]["data"]
    # Yesterday in Berlin, the day before and the same weekday last week, as `costs` says.
    spent = _total(setup, "yesterday")
    before = _total(setup, "2026-10-04")
    week = _total(setup, "2026-09-28")
    assert spent > before > 0 and week > 0
    assert data["day"] == "2026-10-05" and data["timezone"] == BERLIN
    assert data["spent_usd"] == pytest.approx(spent, abs=1e-9)
    assert data["day_before_usd"] == pytest.approx(before, abs=1e-9)
    assert data["last_week_usd"] == pytest.approx(week, abs=1e-9)
    # The month, as `budget` says.
    done = _run(["budget", "--format", "json", *_common(setup)])
    assert done.returncode == 0, done.stderr
    total = next(r for r in json.loads(done.stdout) if r["scope"] == "total")
    assert data["month_spent_usd"] == pytest.approx(total["spent_usd"], abs=1e-9)
    assert data["forecast_usd"] == pytest.approx(total["forecast_usd"], abs=1e-9)

    # What the team reads: Block Kit with a text fallback, the same figures, the report link.
    assert payload["blocks"][0]["type"] == "header"
    assert "Monday 2026-10-05" in payload["blocks"][0]["text"]["text"]
    assert f"Spent {format_usd(spent)} on Monday 2026-10-05" in payload["text"]
    assert format_usd(before) in payload["text"] and format_usd(week) in payload["text"]
    fields = _fields(payload)
    assert fields["Full report"] == REPORT_URL
    assert fields["Budget"].startswith(f"{format_usd(total['spent_usd'])} of $2.00")
    assert format_usd(total["forecast_usd"]) in fields["Forecast"]
    assert fields["Top features"].splitlines()[0].startswith("search: ")
    assert "(untagged)" in fields["Top features"]
    assert fields["Biggest movers"].splitlines()[0].startswith("search: +")
    assert fields["Open incidents"].startswith("budget total (warning)")
    assert "3 calls without a price" in fields["Unpriced calls"]
    assert "claude-mystery-9" in fields["Unpriced calls"]
    for where, text in [("stdout", first.stdout + again.stdout), ("stderr", first.stderr)]:
        assert_no_piece_of(slack.url.split("/", 3)[3], where, text)
        assert_no_piece_of(hook.url.split("/", 3)[3], where, text)


def test_a_failed_digest_is_said_and_retried_by_the_next_run(
    setup: dict[str, Path], slack: FakeWebhook
) -> None:
    env = {"CLAUDITOR_SLACK_WEBHOOK_URL": slack.url}
    slack.script = [(404, {})]
    failed = _notify(setup, env)
    assert failed.returncode == 1
    assert "digest for 2026-10-05 not delivered (retried on the next run)" in failed.stderr
    assert "HTTP 404" in failed.stderr
    assert "HTTP Request: POST" in failed.stderr  # httpx's log line, with the URL redacted
    assert slack.received == []

    retried = _notify(setup, env)
    assert retried.returncode == 0, retried.stderr
    assert "digest for 2026-10-05 sent" in retried.stdout
    assert len(slack.received) == 1
    assert _notify(setup, env).returncode == 0
    assert len(slack.received) == 1
    secret = slack.url.split("/", 3)[3]
    for run in (failed, retried):
        assert_no_piece_of(secret, "stdout", run.stdout)
        assert_no_piece_of(secret, "stderr (output and logs)", run.stderr)


def test_notify_without_a_destination_says_which_variable(setup: dict[str, Path]) -> None:
    env = {"CLAUDITOR_SLACK_WEBHOOK_URL": "", "CLAUDITOR_WEBHOOK_URL": ""}
    done = _notify(setup, env)
    assert done.returncode != 0
    assert "CLAUDITOR_SLACK_WEBHOOK_URL" in done.stderr
    assert setup["out"].is_file()  # the report itself is still written


@pytest.mark.parametrize("url", ["ftp://example.com/r.html", "report.html", 3, "https://"])
def test_a_bad_report_url_is_refused_naming_the_key(tmp_path: Path, url: object) -> None:
    config = tmp_path / "clauditor.toml"
    config.write_text(f"[report]\nurl = {json.dumps(url)}\n")
    with pytest.raises(ConfigError, match=r"report\.url must be an http\(s\) URL"):
        load_config(config)
    config.write_text(f'[report]\nurl = "{REPORT_URL}"\n')
    assert load_config(config).report.url == REPORT_URL
