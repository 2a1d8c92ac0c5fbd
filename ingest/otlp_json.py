"""Spans out of an OTLP/JSON ``ExportTraceServiceRequest`` (the Collector file exporter's lines,
the OTLP/HTTP JSON body).

OTLP/JSON differs from plain proto3 JSON in ways that matter here: ids are hex strings, 64-bit
integers (``intValue``, the ``*TimeUnixNano`` fields) are decimal strings, and enums may come as
numbers or names. Field names are lowerCamelCase, but the snake_case spelling that some
converters write (``resource_spans``, ``start_time_unix_nano``, ``string_value``) is accepted
too, as is the pre-1.0 ``instrumentationLibrarySpans``.

Attribute lists are flattened into plain dicts: ``arrayValue`` -> list, ``kvlistValue`` -> dict,
``intValue`` -> int, ``doubleValue`` -> float, ``bytesValue`` stays its base64 text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from clauditor.ingest.normalize import SpanRecord, SpanRejected
from clauditor.redact import clip

__all__ = ["flatten_attributes", "iter_otlp_json_spans", "list_field", "span_record"]

_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}


def _int_value(raw: Any) -> Any:
    # A string that is not a number is kept as is: if it feeds a token column, normalization
    # rejects the span naming the attribute, which says more than failing here would.
    if type(raw) is str:
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _double_value(raw: Any) -> Any:
    if type(raw) is str:  # "NaN", "Infinity" in proto3 JSON
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def _array_value(raw: Any) -> list[Any]:
    values = raw.get("values") if type(raw) is dict else None
    return [_any_value(v) for v in values] if type(values) is list else []


def _kvlist_value(raw: Any) -> dict[str, Any]:
    values = raw.get("values") if type(raw) is dict else None
    return flatten_attributes(values) if type(values) is list else {}


def _identity(raw: Any) -> Any:
    return raw


_DECODERS = {
    "stringValue": _identity,
    "boolValue": _identity,
    "intValue": _int_value,
    "doubleValue": _double_value,
    "arrayValue": _array_value,
    "kvlistValue": _kvlist_value,
    "bytesValue": _identity,
    "string_value": _identity,
    "bool_value": _identity,
    "int_value": _int_value,
    "double_value": _double_value,
    "array_value": _array_value,
    "kvlist_value": _kvlist_value,
    "bytes_value": _identity,
}


def _any_value(value: Any) -> Any:
    if type(value) is not dict:
        return None
    text = value.get("stringValue")
    if text is not None:  # by far the most common kind: skip the dispatch
        return text
    for kind, raw in value.items():  # an AnyValue holds one kind; an empty one is None
        decode = _DECODERS.get(kind)
        if decode is not None:
            return decode(raw)
    return None


def flatten_attributes(key_values: Any) -> dict[str, Any]:
    """A plain dict from an OTLP ``KeyValue`` list; later duplicates of a key win.

    Raises :class:`SpanRejected` when ``key_values`` is not a list of ``{"key", "value"}``
    objects. ``None`` gives an empty dict. A key that is not a string is kept as it is (JSON
    allows it; normalization copes), never crashing the reader.
    """
    if not key_values:
        return {}
    try:
        # The hot path of file ingest: one comprehension, strings and ints decoded inline.
        # Anything unusual (a missing value, a non-numeric intValue) raises and takes the
        # careful path below.
        return {
            kv["key"]: (
                value["stringValue"]
                if "stringValue" in value
                else int(value["intValue"])
                if "intValue" in value
                else _any_value(value)
            )
            for kv in key_values
            for value in [kv["value"]]
        }
    except (TypeError, KeyError, AttributeError, ValueError):
        return _flatten_checked(key_values)


def _flatten_checked(key_values: Any) -> dict[str, Any]:
    """:func:`flatten_attributes` one entry at a time, to say what is wrong (or to accept an
    entry without ``value``, which OTLP allows for an empty value)."""
    if type(key_values) is not list:
        raise SpanRejected("attributes is not a list of key/value pairs")
    out: dict[str, Any] = {}
    for kv in key_values:
        if type(kv) is not dict or "key" not in kv:
            raise SpanRejected(f"attribute entry is not a key/value pair: {clip(repr(kv), 80)}")
        key = kv["key"]
        try:
            out[key] = _any_value(kv.get("value"))
        except TypeError:  # an unhashable key (a list, an object)
            raise SpanRejected(f"attribute key is not a string: {clip(repr(key), 80)}") from None
    return out


def _nanos(span: dict[str, Any], camel: str, snake: str) -> int:
    raw = span.get(camel)
    if raw is None:
        raw = span.get(snake)
    if raw is None:
        return 0
    if type(raw) is int:
        return raw
    try:
        if type(raw) is str:
            return int(raw)
        if type(raw) is float and raw.is_integer():
            return int(raw)
    except ValueError:
        pass
    raise SpanRejected(f"{camel} is not an integer: {clip(repr(raw), 40)}")


def _field(span: dict[str, Any], camel: str, snake: str) -> Any:
    value = span.get(camel)
    return span.get(snake) if value is None else value


def span_record(
    span: Any, resource: dict[str, Any], scope_name: str, scope_version: str | None
) -> SpanRecord:
    """The :class:`SpanRecord` of one OTLP/JSON span object (camelCase or snake_case fields,
    enums as numbers or names); :class:`SpanRejected` when it cannot be read at all.

    ``resource`` is the flattened resource of its ``resourceSpans`` entry, ``scope_name`` and
    ``scope_version`` its scope's. The file-ingest fast path (:mod:`.fastpath`) reads the
    exporters' shape without this; this is the one reader of spans for everything else.
    """
    if type(span) is not dict:
        raise SpanRejected("span is not a JSON object")
    status = span.get("status")
    status_code = 0
    status_message = None
    if type(status) is dict:
        code = status.get("code", 0)
        status_code = _STATUS_CODES.get(code, 0) if type(code) is str else code
        if type(status_code) is not int:
            status_code = 0
        status_message = status.get("message") or None
    kind = span.get("kind", 0)
    if type(kind) is str:
        kind = _SPAN_KINDS.get(kind, 0)
    parent = _field(span, "parentSpanId", "parent_span_id")
    return SpanRecord(
        trace_id=_field(span, "traceId", "trace_id") or "",
        span_id=_field(span, "spanId", "span_id") or "",
        parent_span_id=parent or None,
        name=str(span.get("name") or ""),
        kind=kind if type(kind) is int else 0,
        start_ns=_nanos(span, "startTimeUnixNano", "start_time_unix_nano"),
        end_ns=_nanos(span, "endTimeUnixNano", "end_time_unix_nano"),
        status_code=status_code,
        status_message=status_message,
        attributes=flatten_attributes(span.get("attributes")),
        resource=resource,
        scope_name=scope_name,
        scope_version=scope_version,
    )


def list_field(obj: Mapping[str, Any], *names: str) -> list[Any] | None:
    """The first of ``names`` present in ``obj``; None when absent; rejected when not a list."""
    for name in names:
        value = obj.get(name)
        if value is not None:
            if type(value) is not list:
                raise SpanRejected(f"{name} is not a list")
            return value
    return None


def iter_otlp_json_spans(request: Mapping[str, Any]) -> Iterator[SpanRecord | SpanRejected]:
    """Every span of one parsed ``ExportTraceServiceRequest``, as a record or a rejection.

    A span that cannot even be read (not an object, times that are not integers, attributes
    that are not key/value pairs) is yielded as a :class:`SpanRejected` carrying the raw span as
    its ``payload``. A request that is not that shape at all (no ``resourceSpans``, lists that
    are not lists) RAISES :class:`SpanRejected` while iterating, possibly after some spans were
    yielded: a caller that wants all-or-nothing per request collects the spans first.

    Spans of one resource share one resource dict; do not mutate it.
    """
    if not isinstance(request, Mapping):
        raise SpanRejected("not an OTLP ExportTraceServiceRequest: not a JSON object")
    resource_spans = list_field(request, "resourceSpans", "resource_spans")
    if resource_spans is None:
        raise SpanRejected("not an OTLP ExportTraceServiceRequest: no resourceSpans")
    for rs in resource_spans:
        if type(rs) is not dict:
            raise SpanRejected("resourceSpans entry is not a JSON object")
        raw_resource = rs.get("resource")
        try:
            resource = (
                flatten_attributes(raw_resource.get("attributes"))
                if type(raw_resource) is dict
                else {}
            )
        except SpanRejected as exc:
            raise SpanRejected(f"resource {exc.reason}") from None
        scope_spans = list_field(rs, "scopeSpans", "scope_spans", "instrumentationLibrarySpans")
        for ss in scope_spans or ():
            if type(ss) is not dict:
                raise SpanRejected("scopeSpans entry is not a JSON object")
            scope = ss.get("scope") or ss.get("instrumentationLibrary")
            scope_name = ""
            scope_version = None
            if type(scope) is dict:
                scope_name = str(scope.get("name") or "")
                scope_version = scope.get("version") or None
            spans = list_field(ss, "spans")
            for span in spans or ():
                try:
                    yield span_record(span, resource, scope_name, scope_version)
                except SpanRejected as exc:
                    exc.payload = span
                    yield exc
