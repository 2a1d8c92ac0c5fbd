"""Claude Code's telemetry through the real OTLP exporters into `clauditor serve`, and as a
Collector file into `clauditor ingest`: one priced claude-code row per API request, stored once
however often it is sent, and nothing from the usage metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetrics,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetrics,
)

from clauditor.config import Config, parse_config
from clauditor.ingest import ingest_paths
from clauditor.ingest.claude_code import json_log_batch
from clauditor.ingest.normalize import SpanRejected, normalize
from clauditor.ingest.serve import Receiver

from .claude_code_fixtures import (
    CALL_EVENTS,
    EVENTS,
    OPUS_CACHED_USD,
    OPUS_SIMPLE,
    OPUS_SIMPLE_USD,
    OVERLOADED,
    RESOURCE,
    collector_logs_line,
    collector_metrics_line,
    send_events,
    send_usage_metrics,
)
from .receiver_support import query

# Claude Code does not split its cache writes by TTL; this config says they are 1h.
CONFIG = parse_config({"pricing": {"cache_ttl_by_service": {"claude-code": "1h"}}})

ROWS_SQL = (
    "SELECT request_id, source, service, feature, user_id, conversation_id, request_model, "
    "input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens, "
    "cost_usd, reported_cost_usd, cache_ttl_assumed, status, http_status, error_type, retries, "
    "duration_ms FROM (SELECT *, attributes->>'$.request_id' AS request_id FROM calls) "
    "ORDER BY end_time"
)


@pytest.fixture
def receiver(db_path: Path) -> Iterator[Receiver]:
    with Receiver(db_path, http_port=0, grpc_port=0, config=CONFIG) as running:
        yield running


def _base(receiver: Receiver) -> str:
    return receiver.http_endpoint.removesuffix("/v1/traces")


def _assert_rows(db: Path) -> None:
    rows = query(db, ROWS_SQL)
    assert len(rows) == CALL_EVENTS, rows
    simple, cached, failed = rows
    assert simple[:11] == (
        "req_011CCsimple",
        "claude-code",
        "claude-code",  # service.name, as Claude Code sets it
        "code-review",  # the resource's feature attribute
        "dev@example.com",
        "sess-1",
        "claude-opus-4-8",
        1000,
        200,
        0,
        0,
    )
    assert simple[11] == pytest.approx(OPUS_SIMPLE_USD)  # = 0.01
    assert simple[12] == pytest.approx(0.0123)  # Claude Code's own figure, apart
    assert simple[14:] == ("ok", None, None, 0, 2500.0)
    assert cached[4] == "acc-2"  # no email: the account id
    assert cached[7:11] == (100, 50, 2000, 1000)
    assert cached[11] == pytest.approx(OPUS_CACHED_USD)  # = 0.01275
    assert cached[13] == "1h"  # the TTL pricing assumed, from the config
    assert failed[0] == "req_011CCfailed"
    assert failed[14:18] == ("error", 529, "overloaded_error", 2)  # attempt 3 = 2 retries


def test_http_events_become_priced_rows_once_and_metrics_add_nothing(
    receiver: Receiver, db_path: Path
) -> None:
    base = _base(receiver)
    assert send_events(HttpLogs(endpoint=f"{base}/v1/logs"))
    assert send_events(HttpLogs(endpoint=f"{base}/v1/logs"))  # re-sent: stored once
    send_usage_metrics(HttpMetrics(endpoint=f"{base}/v1/metrics"))

    _assert_rows(db_path)
    health = httpx.get(f"{base}/healthz").json()
    assert health["log_records_received"] == 2 * len(EVENTS)
    assert health["metric_points_received"] == 4  # one cost point, three token points
    assert (health["inserted"], health["duplicates"]) == (CALL_EVENTS, CALL_EVENTS)


def test_grpc_events_become_the_same_rows(receiver: Receiver, db_path: Path) -> None:
    target = receiver.grpc_endpoint
    assert send_events(GrpcLogs(endpoint=target, insecure=True))
    assert send_events(GrpcLogs(endpoint=target, insecure=True))
    send_usage_metrics(GrpcMetrics(endpoint=target, insecure=True))
    _assert_rows(db_path)


def test_collector_files_give_the_same_rows_and_a_reingest_adds_none(
    tmp_path: Path, db_path: Path
) -> None:
    export = tmp_path / "claude-code.jsonl"
    export.write_text(collector_logs_line() + "\n" + collector_metrics_line() + "\n")

    first = ingest_paths([export], db_path, config=CONFIG)
    assert (first.calls_written, first.rejected) == (CALL_EVENTS, 0)
    _assert_rows(db_path)
    again = ingest_paths([export], db_path, config=CONFIG)
    assert (again.calls_written, again.duplicates) == (0, CALL_EVENTS)


def test_an_event_sent_live_and_then_ingested_from_a_file_is_stored_once(
    receiver: Receiver, db_path: Path, tmp_path: Path
) -> None:
    assert send_events(HttpLogs(endpoint=f"{_base(receiver)}/v1/logs"))
    receiver.stop()
    export = tmp_path / "logs.jsonl"
    export.write_text(collector_logs_line() + "\n")
    summary = ingest_paths([export], db_path, config=CONFIG)
    assert (summary.calls_written, summary.duplicates) == (0, CALL_EVENTS)


def test_feature_attribute_is_configurable_and_defaults_to_claude_code(
    tmp_path: Path, db_path: Path
) -> None:
    events = [{**OPUS_SIMPLE, "team.feature": "migrations"}]
    export = tmp_path / "one.jsonl"
    export.write_text(collector_logs_line(events) + "\n")
    config = parse_config({"claude_code": {"feature_attribute": "team.feature"}})
    ingest_paths([export], db_path, config=config)
    assert query(db_path, "SELECT feature FROM calls") == [("migrations",)]

    # No such attribute anywhere: the feature is claude-code.
    other = tmp_path / "other.duckdb"
    without = {k: v for k, v in RESOURCE.items() if k != "feature"}
    export.write_text(collector_logs_line([OPUS_SIMPLE], without) + "\n")
    ingest_paths([export], other, config=Config())
    assert query(other, "SELECT feature FROM calls") == [("claude-code",)]


def test_an_app_event_named_like_claude_codes_is_not_a_call(tmp_path: Path, db_path: Path) -> None:
    """Only Claude Code's own records are read: an app's log with event.name api_request and
    no claude_code marker anywhere is counted and dropped."""
    line = collector_logs_line([OPUS_SIMPLE])
    line = line.replace("claude_code.api_request", "myapp.api_request")
    line = line.replace("com.anthropic.claude_code", "myapp").replace('"claude-code"', '"myapp"')
    export = tmp_path / "app.jsonl"
    export.write_text(line + "\n")
    summary = ingest_paths([export], db_path, config=CONFIG)
    assert (summary.calls_written, summary.rejected) == (0, 0)


def _rows(events: list[dict], resource: dict = RESOURCE) -> list:
    batch = json_log_batch(json.loads(collector_logs_line(events, resource)))
    return [item if isinstance(item, SpanRejected) else normalize(item) for item in batch.items]


def test_a_timeout_has_no_status_and_an_unreadable_cost_stays_in_the_attributes() -> None:
    timeout = {k: v for k, v in OVERLOADED.items() if k not in ("status_code", "request_id")}
    odd_cost = {**OPUS_SIMPLE, "cost_usd": "n/a"}
    failed, priced = _rows([timeout, odd_cost])
    assert (failed["status"], failed["http_status"], failed["error_type"]) == (
        "error",
        None,
        "timeout",
    )
    assert priced["reported_cost_usd"] is None
    assert '"cost_usd":"n/a"' in priced["attributes"]


def test_without_a_request_id_the_same_event_keeps_its_span_id() -> None:
    bare = {k: v for k, v in OPUS_SIMPLE.items() if k != "request_id"}
    later = {**bare, "event.timestamp": "2026-09-21T14:20:00.000Z"}
    first, again, other = _rows([bare, bare, later])
    assert first["span_id"] == again["span_id"] != other["span_id"]
    assert first["trace_id"] == other["trace_id"]  # one session, one trace


def test_an_event_with_no_time_at_all_is_rejected_by_name() -> None:
    request = json.loads(collector_logs_line([{**OPUS_SIMPLE, "event.timestamp": "soon"}]))
    record = request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    record["timeUnixNano"] = record["observedTimeUnixNano"] = "0"
    (item,) = json_log_batch(request).items
    assert "Claude Code api_request event has no time" in str(item)
