"""The span as every ingest path hands it to the normalizer (its own module so that the
conventions table, which the normalizer reads, can name it without importing the normalizer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SpanRecord"]


@dataclass(slots=True)
class SpanRecord:
    """A span as every ingest path hands it over: ids as hex strings, times in Unix nanoseconds,
    attributes and resource as plain dicts (OTLP KeyValue lists already flattened)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope_name: str
    scope_version: str | None

    def otlp_dict(
        self, attributes: dict[str, Any] | None = None, resource: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The span in OTLP/JSON's shape (for quarantine payloads), with ``attributes`` and
        ``resource`` in place of its own when given (scrubbed or clipped copies, say)."""
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id,
            "name": self.name,
            "startTimeUnixNano": self.start_ns,
            "endTimeUnixNano": self.end_ns,
            "status": {"code": self.status_code, "message": self.status_message},
            "scope": {"name": self.scope_name, "version": self.scope_version},
            "attributes": self.attributes if attributes is None else attributes,
            "resource": self.resource if resource is None else resource,
        }
