"""Helpers for the receiver tests: spans through the real OTel SDK and exporters, hand-built
OTLP requests (protobuf and JSON) for payloads no exporter would send, and DB checks."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

START_NS = 1_790_000_000_000_000_000  # 2026-09-21, a time every price entry covers
MODEL = "claude-sonnet-4-5"  # $3 / MTok input, $15 / MTok output


def send_calls(
    exporter: SpanExporter, count: int, *, feature: str = "search", batch: int = 512
) -> None:
    """Emit ``count`` chat-call spans through a real TracerProvider into ``exporter``.

    Each call: 1000 inclusive input tokens of which 200 cache reads, 100 output tokens.
    """
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "support-bot", "deployment.environment.name": "test"}
        )
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=batch))
    tracer = provider.get_tracer("test-app")
    for _ in range(count):
        with tracer.start_as_current_span("chat claude-sonnet-4-5") as span:
            span.set_attribute("gen_ai.provider.name", "anthropic")
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", MODEL)
            span.set_attribute("gen_ai.usage.input_tokens", 1000)
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", 200)
            span.set_attribute("gen_ai.usage.output_tokens", 100)
            span.set_attribute("clauditor.feature", feature)
    provider.shutdown()  # flushes: every span exported (or the export failed) when this returns


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint (the length prefix of delimited messages)."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def kv(key: str, value: Any) -> KeyValue:
    """An OTLP KeyValue from a Python value (str, bool, int, float, list)."""
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def call_attributes(**overrides: Any) -> dict[str, Any]:
    """Attributes of a good chat call (1000 inclusive input, 100 output); override any."""
    attributes: dict[str, Any] = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": MODEL,
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
        "clauditor.feature": "search",
    }
    for key, value in overrides.items():
        key = key.replace("__", ".")
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    return attributes


def proto_span(
    attributes: dict[str, Any] | None = None,
    *,
    span_id: bytes | None = None,
    trace_id: bytes | None = None,
    start_ns: int = START_NS,
) -> Span:
    """A protobuf span of a Claude call (random ids unless given)."""
    span = Span(
        trace_id=os.urandom(16) if trace_id is None else trace_id,
        span_id=os.urandom(8) if span_id is None else span_id,
        name="chat claude-sonnet-4-5",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 1_500_000_000,
    )
    span.attributes.extend(kv(k, v) for k, v in (attributes or call_attributes()).items())
    return span


def proto_request(spans: Iterable[Span]) -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest holding ``spans`` under one resource and scope."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "support-bot"))
    ss = rs.scope_spans.add()
    ss.scope.name = "test-app"
    ss.spans.extend(spans)
    return request


def json_span(attributes: dict[str, Any] | None = None, *, span_id: str | None = None) -> dict:
    """An OTLP/JSON span of a Claude call (ints as strings, as OTLP/JSON writes them)."""

    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": v}

    return {
        "traceId": os.urandom(16).hex(),
        "spanId": os.urandom(8).hex() if span_id is None else span_id,
        "name": "chat claude-sonnet-4-5",
        "kind": 3,
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(START_NS + 1_500_000_000),
        "attributes": [
            {"key": k, "value": value(v)} for k, v in (attributes or call_attributes()).items()
        ],
    }


def json_request(spans: list[dict]) -> dict:
    """An OTLP/JSON ExportTraceServiceRequest holding ``spans``."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]
                },
                "scopeSpans": [{"scope": {"name": "test-app"}, "spans": spans}],
            }
        ]
    }


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` over the database file, opened read-only for the moment of the query."""
    from clauditor.store import read_connection

    with read_connection(db) as con:
        return con.execute(sql, params or []).fetchall()


def span_count(db: Path) -> int:
    """Rows in ``calls`` (0 when the file does not exist yet)."""
    if not db.exists():
        return 0
    try:
        return int(query(db, "SELECT count(*) FROM calls")[0][0])
    except duckdb.CatalogException:
        return 0
