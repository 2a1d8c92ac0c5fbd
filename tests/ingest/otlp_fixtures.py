"""Hand-written OTLP/JSON builders for the ingest tests: the wire form the Collector's file
exporter writes (ids in hex, 64-bit integers as strings)."""

from __future__ import annotations

import json
from typing import Any

# 2025-11-03T09:30:00Z, a Monday; Sonnet 4.5's price entry starts 2025-09-29.
START_NS = 1_762_162_200 * 1_000_000_000
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def kv(key: str, value: Any) -> dict[str, Any]:
    """One OTLP KeyValue, typed the way the JSON encoding types it."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def span(
    span_id: str = "00f067aa0ba902b7",
    attributes: dict[str, Any] | None = None,
    *,
    name: str = "anthropic.messages.create",
    trace_id: str = TRACE_ID,
    start_ns: int = START_NS,
    duration_ns: int = 1_500_000_000,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One OTLP span object."""
    out: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": "",
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + duration_ns),
        "attributes": [kv(k, v) for k, v in (attributes or {}).items()],
    }
    if status is not None:
        out["status"] = status
    return out


def request(
    *spans: dict[str, Any],
    scope: str = "com.anthropic.sdk.python",
    resource: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ExportTraceServiceRequest holding ``spans``."""
    res = (
        resource
        if resource is not None
        else {
            "service.name": "support-bot",
            "deployment.environment.name": "prod",
        }
    )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv(k, v) for k, v in res.items()]},
                "scopeSpans": [
                    {"scope": {"name": scope, "version": "2.12.0"}, "spans": list(spans)}
                ],
            }
        ]
    }


def line(*spans: dict[str, Any], **kwargs: Any) -> str:
    """A file-exporter line: one request, compact JSON, newline-terminated."""
    return json.dumps(request(*spans, **kwargs), separators=(",", ":")) + "\n"


# A cached chat call as the anthropic SDK's own tracing reports it: gen_ai.usage.input_tokens is
# INCLUSIVE (1000 uncached + 3000 cache read + 1000 cache write, split 600 5m / 400 1h).
SDK_CACHED_CALL: dict[str, Any] = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.request.max_tokens": 1024,
    "gen_ai.request.stream": False,
    "gen_ai.response.id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "gen_ai.usage.input_tokens": 5000,
    "gen_ai.usage.output_tokens": 500,
    "gen_ai.usage.cache_read.input_tokens": 3000,
    "gen_ai.usage.cache_write.input_tokens": 1000,
    "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 600,
    "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 400,
    "anthropic.response.service_tier": "standard",
    "anthropic.message.stop_reason": "end_turn",
    "http.response.status_code": 200,
}
