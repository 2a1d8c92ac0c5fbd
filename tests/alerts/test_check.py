"""``check_alerts`` end to end: a real DuckDB file, a fake Slack on 127.0.0.1, an injected clock.

The scenario (2026-10-05, UTC): ten calls a minute from 10:00 to 13:00. From 11:00 to 11:20
every fifth call fails with ``overloaded_error`` (20 %: above the 5 % threshold), from 11:20 to
11:40 every second one (50 %: above the 25 % critical rate), then all is well again. Cooldown
15 minutes, lookback 5 minutes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import threading
from pathlib import Path

import duckdb
import pytest

from clauditor.alerts import check_alerts
from clauditor.alerts.deliver import RetryPolicy, WebhookSink, sinks_from_env
from clauditor.alerts.message import AlertMessage
from clauditor.alerts.state import claim_transitions
from clauditor.config import Config, parse_config
from clauditor.schema import frame_from_rows
from clauditor.store import write_calls
from tests.conftest import call_row

DAY = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
CONFIG = {"alerts": {"cooldown": "15m", "lookback": "5m"}}
FAST = RetryPolicy(max_attempts=2, base_delay=0.5, timeout=5.0)


def at(hh: int, mm: int) -> dt.datetime:
    return DAY.replace(hour=hh, minute=mm)


def storm_rows() -> list[dict]:
    rows = []
    for minute in range(180):
        for i in range(10):
            start = at(10, 0) + dt.timedelta(minutes=minute, seconds=6 * i)
            if 60 <= minute < 80:
                failed = i % 5 == 0
            elif 80 <= minute < 100:
                failed = i % 2 == 0
            else:
                failed = False
            row = {
                "span_id": f"{minute:04d}{i:02d}".ljust(16, "0"),
                "start_time": start,
                "end_time": start + dt.timedelta(seconds=2),
            }
            if failed:
                row.update(
                    status="error", error_type="overloaded_error", http_status=529, input_tokens=0
                )
            rows.append(call_row(**row))
    return rows


@pytest.fixture(scope="module")
def storm_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario's database, written once; tests copy it."""
    from clauditor.pricing import price_calls

    path = tmp_path_factory.mktemp("storm") / "template.duckdb"
    write_calls(path, price_calls(frame_from_rows(storm_rows())))
    return path


@pytest.fixture
def db(storm_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "clauditor.duckdb"
    copy.write_bytes(storm_db.read_bytes())
    return copy


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG)


def alert_rows(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT rule, key, transition, status, attempts, delivered_to FROM alerts "
            "ORDER BY created_at, transition"
        ).fetchall()
    finally:
        con.close()


def test_start_hold_escalate_resolve_one_message_each(db, config, slack, sleeps) -> None:
    sink = WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps)

    def run(hh: int, mm: int):
        return check_alerts(db, config, as_of=at(hh, mm), sender=sink)

    quiet = run(10, 30)
    assert quiet.sent == [] and quiet.firing == []

    started = run(11, 10)
    assert [(m.transition, m.key, m.severity) for m in started.sent] == [
        ("start", "overloaded", "warning")
    ]
    assert [(f.rule, f.key) for f in started.firing] == [("error_rate", "overloaded")]

    held = run(11, 15)
    assert held.sent == [] and len(held.firing) == 1

    escalated = run(11, 30)
    assert [(m.transition, m.severity) for m in escalated.sent] == [("escalate", "critical")]
    assert escalated.sent[0].title.startswith("Escalated to critical")

    assert run(11, 35).sent == []  # holding at critical
    assert run(11, 50).sent == []  # clear for 10 minutes only: inside the cooldown

    resolved = run(12, 0)
    assert [m.transition for m in resolved.sent] == ["resolve"]
    assert resolved.firing == []
    assert "Resolved" in resolved.sent[0].title

    assert run(12, 10).sent == []
    # Slack got exactly three valid payloads: start, escalate, resolve.
    assert slack.rejected == []
    assert [p["blocks"][0]["text"]["text"].split(":")[0] for p in slack.received] == [
        "Error rate 20%",
        "Escalated to critical",
        "Resolved",
    ]
    assert [r[2] for r in alert_rows(db)] == ["start", "escalate:2", "resolve"]
    assert {r[3] for r in alert_rows(db)} == {"sent"}


def test_dry_run_prints_and_changes_nothing(db, config, slack, sleeps) -> None:
    sink = WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps)
    before = alert_rows(db)
    dry = check_alerts(db, config, as_of=at(11, 30), dry_run=True, sender=sink)
    assert [(m.transition, m.severity) for m in dry.printed] == [("start", "critical")]
    assert [(f.rule, f.key) for f in dry.firing] == [("error_rate", "overloaded")]
    assert dry.sent == [] and slack.requests == 0
    assert alert_rows(db) == before
    # A real run afterwards still sends the start: the dry run claimed nothing.
    real = check_alerts(db, config, as_of=at(11, 30), sender=sink)
    assert [m.transition for m in real.sent] == ["start"]


def test_failed_delivery_is_retried_next_run_and_then_never_again(db, config, slack, sleeps):
    sink = WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps)
    slack.script = [(500, {}), (500, {})]  # both attempts of the first run fail
    first = check_alerts(db, config, as_of=at(11, 10), sender=sink)
    assert first.sent == [] and len(first.failed) == 1
    assert "HTTP 500" in first.failed[0][1]
    assert [(r[2], r[3], r[4]) for r in alert_rows(db)] == [("start", "failed", 1)]
    assert len(first.firing) == 1  # the incident is open even though Slack has not heard

    second = check_alerts(db, config, as_of=at(11, 15), sender=sink)
    assert [m.transition for m in second.sent] == ["start"]
    assert second.sent[0].as_of == at(11, 10)  # the stored message, word for word
    assert [(r[2], r[3], r[4]) for r in alert_rows(db)] == [("start", "sent", 2)]

    third = check_alerts(db, config, as_of=at(11, 16), sender=sink)
    assert third.sent == [] and len(slack.received) == 1


def test_a_retry_only_goes_to_the_sink_that_failed(db, config, slack, hook, sleeps) -> None:
    sinks = [
        WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps),
        WebhookSink("webhook", hook.url, policy=FAST, sleep=sleeps),
    ]
    hook.script = [(503, {}), (503, {})]
    first = check_alerts(db, config, as_of=at(11, 10), sender=sinks)
    assert len(first.failed) == 1 and len(slack.received) == 1 and hook.received == []
    assert alert_rows(db)[0][3:] == ("failed", 1, "slack")
    check_alerts(db, config, as_of=at(11, 12), sender=sinks)
    assert len(slack.received) == 1 and len(hook.received) == 1
    assert alert_rows(db)[0][3:] == ("sent", 2, "slack,webhook")


def test_no_destination_prints_instead_and_does_not_retry(db, config, monkeypatch) -> None:
    monkeypatch.delenv("CLAUDITOR_SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("CLAUDITOR_WEBHOOK_URL", raising=False)
    first = check_alerts(db, config, as_of=at(11, 10))
    assert [m.transition for m in first.printed] == ["start"] and first.sent == []
    assert alert_rows(db)[0][3] == "undelivered"
    assert check_alerts(db, config, as_of=at(11, 12)).printed == []


def test_webhook_url_never_in_output_logs_or_database(
    db, config, slack, sleeps, monkeypatch, caplog, capsys
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CLAUDITOR_SLACK_WEBHOOK_URL", slack.url)
    slack.script = [(500, {}), (429, {"Retry-After": "0"}), (500, {}), (500, {}), (500, {})]
    sinks = sinks_from_env(policy=FAST, sleep=sleeps)  # from the environment, without waiting
    results = [
        check_alerts(db, config, as_of=at(hh, mm), sender=sinks)
        for hh, mm in ((11, 10), (11, 12), (11, 30))
    ]
    assert any(r.failed for r in results) and slack.received  # both paths were taken
    secret = "s3cr3tT0kenXYZ"
    assert secret not in caplog.text
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    assert secret not in repr(results)
    con = duckdb.connect(str(db), read_only=True)
    dumped = str(con.sql("SELECT * FROM alerts").pl().rows())
    con.close()
    assert secret not in dumped
    assert secret.encode() not in db.read_bytes()


def _race_worker(db: str, url: str, barrier, results) -> None:
    config = parse_config(CONFIG)
    sink = WebhookSink("slack", url, policy=RetryPolicy(max_attempts=1), sleep=lambda s: None)
    barrier.wait()
    result = check_alerts(Path(db), config, as_of=at(11, 10), sender=sink)
    results.put(len(result.sent))


def test_two_processes_checking_at_once_send_once(db, slack) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_race_worker, args=(str(db), slack.url, barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(results.get(timeout=5) for _ in procs) == [0, 1]
    assert len(slack.received) == 1
    assert [r[2] for r in alert_rows(db)] == ["start"]


def test_racing_transactions_claim_a_transition_once(db, config) -> None:
    """Two runs that both decided "start" before either committed: the key lets one through."""
    message = AlertMessage(
        rule="error_rate",
        key="overloaded",
        incident="error_rate|overloaded|2026-10-05T11:00:00Z",
        transition="start",
        level=1,
        severity="warning",
        title="t",
        summary="s",
        started_at=at(11, 0),
        as_of=at(11, 10),
    )
    both_decided = threading.Barrier(2, timeout=10)
    claims: dict[str, int] = {}

    def decide(open_incidents):
        if not open_incidents:
            # Only the first decision of each run waits for the other's.
            with contextlib.suppress(threading.BrokenBarrierError):
                both_decided.wait()
            return [message]
        return []  # the loser, deciding again, sees the winner's incident

    def run(name: str) -> None:
        claimed = claim_transitions(db, decide, run_id=name)
        claims[name] = len(claimed.to_send)

    # Make sure the migration has run so that both threads open identical connections.
    check_alerts(db, config, as_of=at(10, 30), sender=[])
    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(claims.values()) == [0, 1]
    assert [r[2] for r in alert_rows(db)] == ["start"]
