"""Spans as the Collector's ``clickhouseexporter`` writes them into ``otel_traces``.

The exporter turns every attribute value into text with pdata's ``Value.AsString``: ints as
digits, doubles in the shortest round-trip form (positional between 1e-6 and 1e21, else
``1e-7`` style), bools as ``true``/``false``, arrays and maps as compact JSON, bytes as
base64. Ids are lower-case hex, the status code its name (``Error``, or ``STATUS_CODE_ERROR``
in other exporter versions), the start time a DateTime64(9) and the duration in nanoseconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from clauditor.ingest import SpanRecord, iter_otlp_json_spans

COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
)
_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")


def go_float(value: float) -> str:
    """pdata's text of a double (ES6 number formatting, as Go's encoding/json writes it)."""
    if math.isnan(value) or math.isinf(value):
        return "json: unsupported value: " + repr(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        return np.format_float_scientific(value, trim="-", exp_digits=1)
    return np.format_float_positional(value, trim="-")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)  # Go writes 1.0 as 1
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in sorted(value.items())}
    return value


def as_string(value: Any) -> str:
    """One attribute value as the exporter stores it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(_json_value(value), separators=(",", ":"), ensure_ascii=False)


def row(record: SpanRecord, *, status_style: str = "Error") -> list[Any]:
    """The ``otel_traces`` row of one span (in :data:`COLUMNS` order)."""
    codes = {0: "Unset", 1: "Ok", 2: "Error"}
    status = codes.get(record.status_code, "Unset")
    if status_style == "STATUS_CODE_ERROR":
        status = "STATUS_CODE_" + status.upper()
    timestamp = record.start_ns  # DateTime64(9) ticks: nanoseconds, kept exactly
    resource = {k: as_string(v) for k, v in record.resource.items()}
    return [
        timestamp,
        record.trace_id.lower(),
        record.span_id.lower(),
        (record.parent_span_id or "").lower(),
        "",
        record.name,
        _KINDS[record.kind] if 0 <= record.kind < len(_KINDS) else "Unspecified",
        resource.get("service.name", ""),
        resource,
        record.scope_name or "",
        record.scope_version or "",
        {k: as_string(v) for k, v in record.attributes.items()},
        record.end_ns - record.start_ns,
        status,
        record.status_message or "",
    ]


def records(paths: Iterable[Path]) -> list[SpanRecord]:
    """Every span of OTLP/JSON-lines files."""
    out = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                out += [
                    s for s in iter_otlp_json_spans(json.loads(line)) if isinstance(s, SpanRecord)
                ]
    return out
