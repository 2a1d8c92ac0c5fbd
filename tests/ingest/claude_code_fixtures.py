"""Claude Code telemetry built from the documented event shape (see clauditor.ingest.claude_code):
log records whose body is ``claude_code.<event>`` with ``event.name``, ``event.timestamp`` and the
standard attributes, sent through the real OTel SDK (``LoggerProvider`` + an OTLP log exporter),
or written as the Collector file exporter's ``resourceLogs`` line; and the two usage metrics
Claude Code exports beside them, through a real ``MeterProvider``."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from .receiver_support import START_NS

SCOPE = "com.anthropic.claude_code"
RESOURCE = {
    "service.name": "claude-code",
    "service.version": "2.1.295",
    "os.type": "linux",
    "host.arch": "amd64",
    "feature": "code-review",  # as OTEL_RESOURCE_ATTRIBUTES=feature=code-review sets it
}
STANDARD = {
    "session.id": "sess-1",
    "prompt.id": "prompt-1",
    "app.version": "2.1.295",
    "app.entrypoint": "cli",
    "organization.id": "org-1",
    "terminal.type": "xterm-256color",
}
# One API request priced by hand. claude-opus-4-8 is $5 / MTok input, $25 / MTok output:
# 1,000 x $5/MTok + 200 x $25/MTok = $0.005 + $0.005 = $0.01. Values as strings, as they may come.
OPUS_SIMPLE = {
    "event.name": "api_request",
    "event.timestamp": "2026-09-21T14:13:20.000Z",
    "event.sequence": 3,
    **STANDARD,
    "user.email": "dev@example.com",
    "user.account_uuid": "acc-1",
    "model": "claude-opus-4-8",
    "cost_usd": "0.0123",  # Claude Code's own figure, kept beside clauditor's
    "duration_ms": "2500",
    "input_tokens": "1000",
    "output_tokens": "200",
    "cache_read_tokens": "0",
    "cache_creation_tokens": "0",
    "request_id": "req_011CCsimple",
    "speed": "normal",
    "query_source": "main",
}
OPUS_SIMPLE_USD = 1_000 * 5 / 1e6 + 200 * 25 / 1e6  # = 0.01
# With cache: 100 x $5 + 50 x $25 + 2,000 cache reads x $0.50 + 1,000 cache writes x $10 (the
# 1h rate: config says Claude Code's writes are 1h) = 500 + 1,250 + 1,000 + 10,000 = 12,750
# $/MTok-tokens = $0.01275. Numbers as numbers here; no email, so the account id is the user.
OPUS_CACHED = {
    "event.name": "api_request",
    "event.timestamp": "2026-09-21T14:14:00.000Z",
    "event.sequence": 7,
    **STANDARD,
    "user.account_uuid": "acc-2",
    "model": "claude-opus-4-8",
    "cost_usd": 0.02,
    "duration_ms": 1200,
    "input_tokens": 100,
    "output_tokens": 50,
    "cache_read_tokens": 2000,
    "cache_creation_tokens": 1000,
    "request_id": "req_011CCcached",
    "query_source": "subagent",
}
OPUS_CACHED_USD = (100 * 5 + 50 * 25 + 2_000 * 0.5 + 1_000 * 10) / 1e6  # = 0.01275
OVERLOADED = {
    "event.name": "api_error",
    "event.timestamp": "2026-09-21T14:15:00.000Z",
    "event.sequence": 9,
    **STANDARD,
    "user.email": "dev@example.com",
    "model": "claude-opus-4-8",
    "error": "Overloaded",
    "status_code": "529",
    "attempt": "3",
    "duration_ms": "800",
    "request_id": "req_011CCfailed",
}
# Events that are not API requests: counted, not stored.
USER_PROMPT = {
    "event.name": "user_prompt",
    "event.timestamp": "2026-09-21T14:13:00.000Z",
    **STANDARD,
    "prompt_length": "42",
    "prompt": "<REDACTED>",
}
TOOL_RESULT = {
    "event.name": "tool_result",
    "event.timestamp": "2026-09-21T14:13:30.000Z",
    **STANDARD,
    "tool_name": "Read",
    "success": "true",
    "duration_ms": "12",
}
EVENTS = [USER_PROMPT, OPUS_SIMPLE, TOOL_RESULT, OPUS_CACHED, OVERLOADED]
CALL_EVENTS = 3


def send_events(
    exporter: LogRecordExporter,
    events: list[dict[str, Any]] = EVENTS,
    resource: dict[str, Any] = RESOURCE,
) -> bool:
    """Emit ``events`` as Claude Code does, through a real LoggerProvider into ``exporter``;
    whether the final flush succeeded."""
    provider = LoggerProvider(resource=Resource.create(resource))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = provider.get_logger(SCOPE, "2.1.295")
    for offset, attributes in enumerate(events):
        logger.emit(
            timestamp=START_NS + offset * 1_000_000_000,
            observed_timestamp=START_NS + offset * 1_000_000_000,
            body="claude_code." + attributes["event.name"],
            attributes=attributes,
        )
    flushed = provider.force_flush(30_000)
    provider.shutdown()
    return bool(flushed)


def send_usage_metrics(exporter: MetricExporter) -> None:
    """Claude Code's ``claude_code.cost.usage`` and ``claude_code.token.usage`` for the same
    requests, through a real MeterProvider: tokens that must NOT be counted a second time."""
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])
    meter = provider.get_meter(SCOPE, "2.1.295")
    cost = meter.create_counter("claude_code.cost.usage", unit="USD")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
    model = {"model": "claude-opus-4-8", **STANDARD}
    cost.add(0.0323, model)
    for kind, count in (("input", 1100), ("output", 250), ("cacheRead", 2000)):
        tokens.add(count, {**model, "type": kind})
    provider.shutdown()  # exports once


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _json_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_value(v)} for k, v in attributes.items()]


def collector_logs_line(
    events: list[dict[str, Any]] = EVENTS, resource: dict[str, Any] = RESOURCE
) -> str:
    """``events`` as one line of the Collector file exporter's log output (``resourceLogs``)."""
    records = [
        {
            "timeUnixNano": str(START_NS + offset * 1_000_000_000),
            "observedTimeUnixNano": str(START_NS + offset * 1_000_000_000),
            "body": {"stringValue": "claude_code." + attributes["event.name"]},
            "attributes": _json_attributes(attributes),
            "traceId": "",
            "spanId": "",
        }
        for offset, attributes in enumerate(events)
    ]
    request = {
        "resourceLogs": [
            {
                "resource": {"attributes": _json_attributes(resource)},
                "scopeLogs": [
                    {"scope": {"name": SCOPE, "version": "2.1.295"}, "logRecords": records}
                ],
            }
        ]
    }
    return json.dumps(request)


def collector_metrics_line() -> str:
    """Claude Code's usage metrics as one line of the Collector file exporter's output."""
    point = {
        "attributes": _json_attributes({"model": "claude-opus-4-8", "type": "input"}),
        "startTimeUnixNano": str(START_NS),
        "timeUnixNano": str(START_NS + 60_000_000_000),
        "asDouble": 1100,
    }
    request = {
        "resourceMetrics": [
            {
                "resource": {"attributes": _json_attributes(RESOURCE)},
                "scopeMetrics": [
                    {
                        "scope": {"name": SCOPE},
                        "metrics": [
                            {
                                "name": "claude_code.token.usage",
                                "unit": "tokens",
                                "sum": {
                                    "dataPoints": [point],
                                    "aggregationTemporality": 1,
                                    "isMonotonic": True,
                                },
                            }
                        ],
                    }
                ],
            }
        ]
    }
    return json.dumps(request)
