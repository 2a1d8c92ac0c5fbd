"""Delivery against a real local HTTP server: payload limits, retries, Retry-After, secrecy."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from clauditor.alerts.deliver import RetryPolicy, WebhookSink, parse_retry_after, sinks_from_env
from clauditor.alerts.message import AlertMessage, render_text
from clauditor.alerts.slack import LIMITS, slack_payload, webhook_payload
from clauditor.errors import DeliveryError
from tests.alerts.fakeslack import slack_problems

T0 = dt.datetime(2026, 10, 9, 14, 0, tzinfo=dt.UTC)


def message(**overrides: object) -> AlertMessage:
    data: dict[str, object] = {
        "rule": "error_rate",
        "key": "overloaded",
        "incident": "error_rate|overloaded|2026-10-09T14:00:00Z",
        "transition": "start",
        "level": 1,
        "severity": "warning",
        "title": "Error rate 34%: overloaded errors",
        "summary": "120 of 350 calls failed with overloaded errors.",
        "started_at": T0,
        "as_of": T0 + dt.timedelta(minutes=10),
        "fields": (("Failed calls", "120 of 350"), ("Peak rate", "34.0%")),
        "next_steps": ("clauditor errors --as-of 2026-10-09T14:10:00Z",),
    }
    data.update(overrides)
    return AlertMessage(**data)  # type: ignore[arg-type]


FAST = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=30.0, timeout=2.0)


def test_slack_payload_has_header_fields_next_steps_and_text_fallback() -> None:
    payload = slack_payload(message())
    assert slack_problems(payload) == []
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds[0] == "header" and "context" in kinds
    assert payload["blocks"][0]["text"]["text"] == "Error rate 34%: overloaded errors"
    fields = [b for b in payload["blocks"] if "fields" in b][0]["fields"]
    assert fields[0]["text"] == "*Failed calls*\n120 of 350"
    assert "What to look at next" in str(payload["blocks"])
    assert "Error rate 34%" in payload["text"] and "120 of 350" in payload["text"]


def test_slack_payload_stays_within_limits_whatever_the_content() -> None:
    huge = message(
        title="T" * 500,
        summary="S" * 10_000,
        fields=tuple((f"label {i}" * 30, "v&<>" * 2000) for i in range(25)),
        next_steps=tuple("step " * 200 for _ in range(30)),
    )
    payload = slack_payload(huge)
    assert slack_problems(payload) == []
    assert len(payload["blocks"][0]["text"]["text"]) == LIMITS["header_text"]
    assert len(payload["text"]) <= LIMITS["fallback_text"]
    # 25 fields -> three sections of at most 10; every field under 2000 characters.
    sections = [b for b in payload["blocks"] if "fields" in b]
    assert [len(s["fields"]) for s in sections] == [10, 10, 5]
    # Cutting never leaves half an entity behind.
    for s in sections:
        for f in s["fields"]:
            tail = f["text"][-6:]
            assert "&" not in tail or tail.endswith(("&amp;…", "&lt;…", "&gt;…")) or ";" in tail


def test_slack_payload_escapes_mentions_from_telemetry() -> None:
    payload = slack_payload(message(key="<!channel>", summary="feature <!here> & co"))
    text = str(payload["blocks"])
    assert "<!channel>" not in text and "<!here>" not in text
    assert "&lt;!here&gt; &amp; co" in text


def test_generic_webhook_payload_is_flat_json() -> None:
    doc = webhook_payload(message(transition="escalate", level=2, severity="critical"))
    assert doc["source"] == "clauditor" and doc["transition"] == "escalate"
    assert doc["fields"] == {"Failed calls": "120 of 350", "Peak rate": "34.0%"}
    assert doc["started_at"] == "2026-10-09T14:00:00+00:00"
    assert doc["text"] == render_text(message(transition="escalate", level=2, severity="critical"))


def test_message_round_trips_through_json() -> None:
    m = message()
    assert AlertMessage.from_json(m.to_json()) == m


def test_delivers_to_slack(slack, sleeps) -> None:
    WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps).send(message())
    assert len(slack.received) == 1 and slack.rejected == []
    assert sleeps == []


def test_429_retry_after_is_honoured(slack, sleeps) -> None:
    slack.script = [(429, {"Retry-After": "7"}), (429, {"Retry-After": "3"})]
    WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps).send(message())
    assert sleeps == [7.0, 3.0]  # the server's delays, not the backoff's 1 s and 2 s
    assert slack.requests == 3 and len(slack.received) == 1


def test_retry_after_as_http_date_on_503(slack, sleeps) -> None:
    now = dt.datetime(2026, 10, 9, 14, 0, tzinfo=dt.UTC)
    slack.script = [(503, {"Retry-After": "Fri, 09 Oct 2026 14:00:12 GMT"})]
    sink = WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps, now=lambda: now)
    sink.send(message())
    assert sleeps == [12.0] and len(slack.received) == 1


def test_500_retried_with_exponential_backoff(slack, sleeps) -> None:
    slack.script = [(500, {}), (500, {}), (502, {})]
    WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps).send(message())
    assert sleeps == [1.0, 2.0, 4.0] and len(slack.received) == 1


def test_gives_up_after_max_attempts_without_naming_the_url(slack, sleeps) -> None:
    slack.script = [(500, {})] * 10
    with pytest.raises(DeliveryError) as info:
        WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps).send(message())
    assert slack.requests == 4
    assert "HTTP 500" in str(info.value)
    assert slack.url not in str(info.value) and "s3cr3t" not in str(info.value)


def test_client_errors_are_not_retried(slack, sleeps) -> None:
    slack.script = [(404, {})]
    with pytest.raises(DeliveryError, match="HTTP 404"):
        WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps).send(message())
    assert slack.requests == 1 and sleeps == []


def test_a_retry_after_longer_than_allowed_is_left_for_the_next_run(slack, sleeps) -> None:
    slack.script = [(429, {"Retry-After": "3600"})]
    with pytest.raises(DeliveryError, match="next run"):
        WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps).send(message())
    assert sleeps == [] and slack.requests == 1


def test_slow_server_times_out_and_is_retried(slack, sleeps) -> None:
    slack.script = ["slow"]
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, timeout=0.2)
    WebhookSink("slack", slack.url, policy=policy, sleep=sleeps).send(message())
    assert sleeps == [1.0]
    assert len(slack.received) == 1  # the second attempt got through


def test_generic_webhook_gets_the_flat_document(hook, sleeps) -> None:
    WebhookSink("webhook", hook.url, policy=FAST, sleep=sleeps).send(message())
    assert hook.received[0]["rule"] == "error_rate"
    assert hook.received[0]["incident"] == "error_rate|overloaded|2026-10-09T14:00:00Z"


def test_url_never_reaches_logs_or_repr(slack, sleeps, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    slack.script = [(500, {}), (429, {"Retry-After": "1"})]
    sink = WebhookSink("slack", slack.url, policy=FAST, sleep=sleeps)
    sink.send(message())
    assert "s3cr3tT0kenXYZ" not in caplog.text
    assert "s3cr3t" not in repr(sink)
    assert "HTTP Request" in caplog.text  # httpx did log the request, redacted


def test_sinks_from_env_reads_both_variables_and_rejects_non_urls(slack) -> None:
    env = {"CLAUDITOR_SLACK_WEBHOOK_URL": slack.url, "CLAUDITOR_WEBHOOK_URL": ""}
    assert [s.name for s in sinks_from_env(env)] == ["slack"]
    with pytest.raises(DeliveryError, match="CLAUDITOR_WEBHOOK_URL") as info:
        sinks_from_env({"CLAUDITOR_WEBHOOK_URL": "hooks.example/secret-part"})
    assert "secret-part" not in str(info.value)


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 10, 9, 14, 0, tzinfo=dt.UTC)
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after("Fri, 09 Oct 2026 13:59:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
