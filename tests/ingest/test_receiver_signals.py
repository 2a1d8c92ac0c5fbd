"""`clauditor serve` takes every OTLP signal an app's default OTel setup sends: traces, metrics
and logs, over HTTP (protobuf, JSON, gzip) and gRPC, answered with a full success and counted."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetrics,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetrics,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from clauditor.ingest.serve import Receiver

from .claude_code_fixtures import collector_logs_line, collector_metrics_line
from .receiver_support import call_attributes, query


@pytest.fixture
def receiver(db_path: Path) -> Iterator[Receiver]:
    with Receiver(db_path, http_port=0, grpc_port=0) as running:
        yield running


def _app(spans: SpanExporter, metrics: MetricExporter, logs: LogRecordExporter) -> list[bool]:
    """An app with the OTel SDK's usual setup, all three exporters on: one Claude call span,
    a counter and a histogram, and an ordinary log line. Returns each flush's result."""
    resource = Resource.create({"service.name": "support-bot"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    reader = PeriodicExportingMetricReader(metrics, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))

    with tracer_provider.get_tracer("app").start_as_current_span("chat") as span:
        span.set_attributes(call_attributes())
    meter = meter_provider.get_meter("app")
    meter.create_counter("app.requests").add(3, {"route": "/chat"})
    meter.create_histogram("app.latency", unit="ms").record(12.5)
    logger_provider.get_logger("app").emit(body="user signed in", attributes={"user": "u-1"})

    flushed = [
        tracer_provider.force_flush(30_000),
        meter_provider.force_flush(30_000),
        logger_provider.force_flush(30_000),
    ]
    for provider in (tracer_provider, meter_provider, logger_provider):
        provider.shutdown()
    return flushed


def _export_problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("opentelemetry") and r.levelno >= logging.WARNING
    ]


def test_default_http_app_exports_every_signal_without_an_error(
    receiver: Receiver, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = receiver.http_endpoint.removesuffix("/v1/traces")
    caplog.set_level(logging.WARNING)
    flushed = _app(
        HttpSpans(endpoint=f"{base}/v1/traces", compression=Compression.Gzip),
        HttpMetrics(endpoint=f"{base}/v1/metrics", compression=Compression.Gzip),
        HttpLogs(endpoint=f"{base}/v1/logs", compression=Compression.Gzip),
    )
    assert _export_problems(caplog) == []
    assert flushed == [True, True, True]
    assert query(db_path, "SELECT count(*) FROM calls")[0][0] == 1  # only the call is stored
    health = httpx.get(f"{base}/healthz").json()
    # Two points per collection; the flush and the shutdown each export them (cumulative).
    assert health["metric_points_received"] in (2, 4)
    assert health["log_records_received"] == 1
    assert health["requests_refused"] == 0


def test_default_grpc_app_exports_every_signal_without_an_error(
    receiver: Receiver, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = receiver.grpc_endpoint
    caplog.set_level(logging.WARNING)
    flushed = _app(
        GrpcSpans(endpoint=target, insecure=True),
        GrpcMetrics(endpoint=target, insecure=True),
        GrpcLogs(endpoint=target, insecure=True),
    )
    assert _export_problems(caplog) == []
    assert flushed == [True, True, True]
    assert query(db_path, "SELECT count(*) FROM calls")[0][0] == 1
    health = httpx.get(receiver.http_endpoint.replace("/v1/traces", "/healthz")).json()
    assert health["metric_points_received"] in (2, 4)
    assert health["log_records_received"] == 1


@pytest.mark.parametrize(
    ("path", "line", "stored"),
    [("/v1/logs", collector_logs_line(), 3), ("/v1/metrics", collector_metrics_line(), 0)],
)
def test_json_gzip_logs_and_metrics_get_a_full_success(
    receiver: Receiver, db_path: Path, path: str, line: str, stored: int
) -> None:
    base = receiver.http_endpoint.removesuffix("/v1/traces")
    answer = httpx.post(
        base + path,
        content=gzip.compress(line.encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert (answer.status_code, answer.json()) == (200, {})  # no partialSuccess, ever
    if stored:
        assert query(db_path, "SELECT count(*) FROM calls")[0][0] == stored
    else:
        assert not db_path.exists()  # metrics alone: nothing was written, not even a file


def test_a_broken_claude_code_event_is_quarantined_not_a_partial_success(
    receiver: Receiver, db_path: Path
) -> None:
    request = json.loads(collector_logs_line())
    record = request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]
    for pair in record["attributes"]:
        if pair["key"] == "input_tokens":
            pair["value"] = {"stringValue": "a thousand"}
    base = receiver.http_endpoint.removesuffix("/v1/traces")
    answer = httpx.post(f"{base}/v1/logs", json=request)
    assert (answer.status_code, answer.json()) == (200, {})
    assert query(db_path, "SELECT count(*) FROM calls")[0][0] == 2
    (reason,) = query(db_path, "SELECT reason FROM quarantine")[0]
    assert "input_tokens" in reason


def test_undecodable_logs_and_metrics_are_refused_with_a_reason(receiver: Receiver) -> None:
    base = receiver.http_endpoint.removesuffix("/v1/traces")
    for path, expected in (("/v1/logs", "resourceLogs"), ("/v1/metrics", "resourceMetrics")):
        answer = httpx.post(base + path, json={"resourceSpans": []})
        assert answer.status_code == 400
        assert expected in answer.json()["message"]
        answer = httpx.post(
            base + path, content=b"\xff\x00", headers={"Content-Type": "application/x-protobuf"}
        )
        assert answer.status_code == 400


def test_logs_and_metrics_require_the_token_when_one_is_set(db_path: Path) -> None:
    with Receiver(db_path, http_port=0, grpc_port=None, token="s3cret-token") as running:
        base = running.http_endpoint.removesuffix("/v1/traces")
        for path in ("/v1/logs", "/v1/metrics"):
            assert httpx.post(base + path, json={}).status_code == 401
            answer = httpx.post(
                base + path, json={}, headers={"Authorization": "Bearer s3cret-token"}
            )
            assert answer.status_code == 400  # past the token: {} is not a request
