"""Claude Code's own telemetry: its OTLP log events become ``calls`` rows; its metrics are counted.

With ``CLAUDE_CODE_ENABLE_TELEMETRY=1`` (and ``OTEL_LOGS_EXPORTER=otlp``) Claude Code exports one
log record per event. What this module relies on, as Anthropic's monitoring page documents it
(https://code.claude.com/docs/en/monitoring-usage, formerly
https://docs.anthropic.com/en/docs/claude-code/monitoring-usage; read 2026-12-04, its event
and attribute tables through a public transcription of that page; not yet checked against a
capture of a real Claude Code export):

* The record's body is the event name, ``claude_code.<event>``, and its attributes hold
  ``event.name`` (``<event>``, without the prefix), ``event.timestamp`` (ISO 8601) and
  ``event.sequence``. The OTLP ``event_name`` field is not documented; it is read when set.
* ``claude_code.api_request``, one per API request: ``model``, ``cost_usd`` (Claude Code's own
  estimate), ``duration_ms``, ``input_tokens`` (uncached, as in the API's ``usage``),
  ``output_tokens``, ``cache_read_tokens``, ``cache_creation_tokens`` (no 5m/1h split),
  ``request_id``, ``speed`` (``fast`` for fast mode), ``query_source`` (main, subagent, ...).
* ``claude_code.api_error``: ``model``, ``error`` (a message), ``status_code`` (absent for a
  timeout), ``duration_ms``, ``attempt``, ``request_id``, ``speed``, ``query_source``.
* Standard attributes on every record: ``session.id``, ``prompt.id``, ``app.version``,
  ``app.entrypoint``, ``organization.id``, ``user.account_uuid``, ``user.id``, ``user.email``,
  ``terminal.type``. The resource carries ``service.name`` = ``claude-code``,
  ``service.version``, ``os.type``, ``host.arch`` and whatever ``OTEL_RESOURCE_ATTRIBUTES`` sets.
* Metrics ``claude_code.cost.usage`` and ``claude_code.token.usage`` repeat the events' numbers
  (delta sums, per model). They are accepted and counted, never stored: tokens come from the
  events only, so nothing is counted twice.
* Attribute values may arrive as strings (``"1000"``, ``"0.01"``); numbers are read from them.

The mapping (see ``_CLAUDE_CODE_KEYS`` in :mod:`.normalize`, source ``claude-code``):

* one row per ``api_request`` event; an ``api_error`` event is a failed call (status ``error``,
  ``http_status`` from ``status_code``, the API error type that status means, ``timeout`` with
  no status, ``retries`` = ``attempt`` - 1);
* ``span_id`` = the first 16 hex digits of sha256 of ``request_id`` (``api_error:`` +
  ``request_id`` for a failure), or, without one, of session id, prompt id, timestamp, model
  (and attempt) together, so a re-sent or re-ingested event is stored once; ``trace_id`` is the
  record's own when set, else derived from the session id: one session, one trace;
* end time = ``event.timestamp`` (else the record's time), start = end - ``duration_ms``;
* ``user_id`` = ``user.email``, else ``user.account_uuid``; ``conversation_id`` = ``session.id``;
  ``service`` = the resource's ``service.name``;
* ``feature`` = the attribute named by config ``[claude_code] feature_attribute`` (default
  ``feature``), looked up on the resource (``OTEL_RESOURCE_ATTRIBUTES=feature=...``) and then on
  the record; else ``claude-code``;
* tokens are priced by clauditor's rate cards like every row; Claude Code's ``cost_usd`` is kept
  in ``reported_cost_usd``. Cache writes carry no TTL split, so pricing assumes one
  (``[pricing.cache_ttl_by_service] claude-code = "1h"`` says 1h).

Only records that are Claude Code's (body or event name prefixed ``claude_code.``, Claude Code's
scope, or ``service.name`` ``claude-code``) are read; every other log record is counted and
dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from clauditor import semconv as sc
from clauditor.ingest.normalize import STATUS_CODE_ERROR, SpanRecord, SpanRejected
from clauditor.ingest.otlp_json import flatten_attributes, list_field
from clauditor.ingest.otlp_proto import flatten_key_values

__all__ = [
    "DEFAULT_FEATURE_ATTRIBUTE",
    "LogBatch",
    "count_json_metric_points",
    "count_proto_metric_points",
    "decode_logs_request",
    "decode_metrics_request",
    "is_logs_request",
    "is_metrics_request",
    "json_log_batch",
    "proto_log_batch",
]

DEFAULT_FEATURE_ATTRIBUTE = "feature"
_CALL_EVENTS = frozenset({sc.CLAUDE_CODE_API_REQUEST, sc.CLAUDE_CODE_API_ERROR})
_PREFIX = sc.CLAUDE_CODE_EVENT_PREFIX
_HEX32_ZERO = "0" * 32
_DATA_POINT_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_JSON_DATA_POINT_FIELDS = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


@dataclass
class LogBatch:
    """What one OTLP logs request holds: Claude Code's call events as span records (or
    rejections), and how many log records there were in all."""

    items: list[SpanRecord | SpanRejected]
    records: int


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def _event(body: Any, event_name: str, attributes: Mapping[str, Any]) -> tuple[str, bool]:
    """The event's name without the ``claude_code.`` prefix, and whether it carried it."""
    for name in (event_name, attributes.get(sc.EVENT_NAME), body):
        if type(name) is str and name:
            if name.startswith(_PREFIX):
                return name[len(_PREFIX) :], True
            return name, False
    return "", False


def _end_ns(attributes: Mapping[str, Any], time_ns: int, observed_ns: int) -> int:
    stamp = attributes.get(sc.EVENT_TIMESTAMP)
    if type(stamp) is str:
        try:
            when = dt.datetime.fromisoformat(stamp)
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    return time_ns or observed_ns


def _duration_ns(value: Any) -> int:
    try:
        ms = float(value)
    except (TypeError, ValueError):
        return 0
    return int(ms * 1e6) if 0 <= ms < 1e10 else 0


def _record(
    *,
    body: Any,
    event_name: str,
    attributes: dict[str, Any],
    resource: dict[str, Any],
    scope_name: str,
    time_ns: int,
    observed_ns: int,
    trace_id: str,
    feature_attribute: str,
) -> SpanRecord | SpanRejected | None:
    """The span record for one log record, or None when it is not a Claude Code call event."""
    event, prefixed = _event(body, event_name, attributes)
    if event not in _CALL_EVENTS:
        return None
    ours = (
        prefixed
        or scope_name == sc.CLAUDE_CODE_SCOPE
        or resource.get(sc.SERVICE_NAME) == sc.CLAUDE_CODE_SERVICE
    )
    if not ours:
        return None
    end_ns = _end_ns(attributes, time_ns, observed_ns)
    if end_ns <= 0:
        return SpanRejected(f"Claude Code {event} event has no time", attributes)
    duration_ns = _duration_ns(attributes.get(sc.CC_DURATION_MS))
    start_ns = max(end_ns - duration_ns, 1)
    failed = event == sc.CLAUDE_CODE_API_ERROR
    request_id = attributes.get(sc.CC_REQUEST_ID)
    session = attributes.get(sc.SESSION_ID)
    if request_id not in (None, ""):
        key = f"{'api_error:' if failed else ''}{request_id}"
    else:
        parts = (
            event,
            session,
            attributes.get(sc.PROMPT_ID),
            attributes.get(sc.EVENT_TIMESTAMP) or end_ns,
            attributes.get(sc.CC_MODEL),
            attributes.get(sc.CC_ATTEMPT),
        )
        key = "\x1f".join("" if p is None else str(p) for p in parts)
    span_id = _digest(key, 16)
    if len(trace_id) != 32 or trace_id == _HEX32_ZERO:
        trace_id = _digest(f"claude-code session {session if session else key}", 32)
    # What became the row's times is not repeated in its attributes.
    dropped = (sc.EVENT_NAME, sc.EVENT_TIMESTAMP, sc.CC_DURATION_MS if duration_ns else "")
    own = {k: v for k, v in attributes.items() if k not in dropped}
    feature = resource.get(feature_attribute)
    if feature is None:
        feature = attributes.get(feature_attribute)
    own.pop(feature_attribute, None)
    if feature is not None:
        own[sc.FEATURE] = feature
    message = attributes.get(sc.CC_ERROR) if failed else None
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=None,
        name=_PREFIX + event,
        kind=0,
        start_ns=start_ns,
        end_ns=end_ns,
        status_code=STATUS_CODE_ERROR if failed else 0,
        status_message=message if type(message) is str else None,
        attributes=own,
        resource=resource,
        scope_name=sc.CLAUDE_CODE_RECORD_SCOPE,
        scope_version=None,
    )


# --- protobuf ----------------------------------------------------------------------------------


def decode_logs_request(body: bytes) -> ExportLogsServiceRequest:
    """Parse an ``ExportLogsServiceRequest``; :class:`SpanRejected` when the bytes are not one."""
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise SpanRejected(f"not a valid OTLP protobuf ExportLogsServiceRequest: {exc}") from None
    return request


def decode_metrics_request(body: bytes) -> ExportMetricsServiceRequest:
    """Parse an ``ExportMetricsServiceRequest``; :class:`SpanRejected` when it is not one."""
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise SpanRejected(
            f"not a valid OTLP protobuf ExportMetricsServiceRequest: {exc}"
        ) from None
    return request


def proto_log_batch(
    request: ExportLogsServiceRequest, feature_attribute: str = DEFAULT_FEATURE_ATTRIBUTE
) -> LogBatch:
    """Claude Code's call events in a parsed logs request, and the count of all records."""
    items: list[SpanRecord | SpanRejected] = []
    records = 0
    for rl in request.resource_logs:
        resource = flatten_key_values(rl.resource.attributes)
        for sl in rl.scope_logs:
            for log in sl.log_records:
                records += 1
                body = log.body.string_value if log.body.WhichOneof("value") else None
                item = _record(
                    body=body,
                    event_name=getattr(log, "event_name", ""),
                    attributes=flatten_key_values(log.attributes),
                    resource=resource,
                    scope_name=sl.scope.name,
                    time_ns=log.time_unix_nano,
                    observed_ns=log.observed_time_unix_nano,
                    trace_id=log.trace_id.hex(),
                    feature_attribute=feature_attribute,
                )
                if item is not None:
                    items.append(item)
    return LogBatch(items, records)


def count_proto_metric_points(request: ExportMetricsServiceRequest) -> int:
    """The number of data points in a parsed metrics request."""
    points = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind in _DATA_POINT_FIELDS:
                    points += len(getattr(metric, kind).data_points)
    return points


# --- OTLP/JSON ---------------------------------------------------------------------------------


def _list(obj: Any, *names: str) -> list[Any]:
    if type(obj) is not dict:
        raise SpanRejected("an entry of the request is not a JSON object")
    return list_field(obj, *names) or []


def _nanos(obj: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = obj.get(name)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                raise SpanRejected(f"{name} is not an integer: {str(value)[:40]!r}") from None
    return 0


def is_logs_request(request: Any) -> bool:
    """Whether a parsed JSON value is an OTLP logs request (``resourceLogs``)."""
    return isinstance(request, Mapping) and (
        "resourceLogs" in request or "resource_logs" in request
    )


def is_metrics_request(request: Any) -> bool:
    """Whether a parsed JSON value is an OTLP metrics request (``resourceMetrics``)."""
    return isinstance(request, Mapping) and (
        "resourceMetrics" in request or "resource_metrics" in request
    )


def json_log_batch(
    request: Mapping[str, Any], feature_attribute: str = DEFAULT_FEATURE_ATTRIBUTE
) -> LogBatch:
    """Claude Code's call events in a parsed OTLP/JSON logs request (the Collector file
    exporter's ``resourceLogs`` lines, an OTLP/HTTP JSON body), and the count of all records.

    A record that cannot be read is a rejection; a request that is not that shape at all
    raises :class:`SpanRejected`.
    """
    if not is_logs_request(request):
        raise SpanRejected("not an OTLP ExportLogsServiceRequest: no resourceLogs")
    items: list[SpanRecord | SpanRejected] = []
    records = 0
    for rl in _list(request, "resourceLogs", "resource_logs"):
        raw_resource = rl.get("resource") if type(rl) is dict else None
        resource = (
            flatten_attributes(raw_resource.get("attributes")) if type(raw_resource) is dict else {}
        )
        for sl in _list(rl, "scopeLogs", "scope_logs"):
            scope = sl.get("scope") if type(sl) is dict else None
            scope_name = str(scope.get("name") or "") if type(scope) is dict else ""
            for log in _list(sl, "logRecords", "log_records"):
                records += 1
                try:
                    if type(log) is not dict:
                        raise SpanRejected("log record is not a JSON object")
                    body = flatten_attributes([{"key": "body", "value": log.get("body")}])
                    trace_id = log.get("traceId") or log.get("trace_id") or ""
                    item = _record(
                        body=body.get("body"),
                        event_name=str(log.get("eventName") or log.get("event_name") or ""),
                        attributes=flatten_attributes(log.get("attributes")),
                        resource=resource,
                        scope_name=scope_name,
                        time_ns=_nanos(log, "timeUnixNano", "time_unix_nano"),
                        observed_ns=_nanos(log, "observedTimeUnixNano", "observed_time_unix_nano"),
                        trace_id=str(trace_id).lower(),
                        feature_attribute=feature_attribute,
                    )
                except SpanRejected as exc:
                    exc.payload = log
                    items.append(exc)
                    continue
                if item is not None:
                    items.append(item)
    return LogBatch(items, records)


def count_json_metric_points(request: Mapping[str, Any]) -> int:
    """The number of data points in a parsed OTLP/JSON metrics request (``resourceMetrics``);
    :class:`SpanRejected` when it is not one."""
    if not is_metrics_request(request):
        raise SpanRejected("not an OTLP ExportMetricsServiceRequest: no resourceMetrics")
    points = 0
    for rm in _list(request, "resourceMetrics", "resource_metrics"):
        for sm in _list(rm, "scopeMetrics", "scope_metrics"):
            for metric in _list(sm, "metrics"):
                if type(metric) is not dict:
                    continue
                for kind in (*_JSON_DATA_POINT_FIELDS, "exponential_histogram"):
                    data = metric.get(kind)
                    if type(data) is dict:
                        found = data.get("dataPoints") or data.get("data_points") or []
                        points += len(found) if type(found) is list else 0
    return points
