"""One OTLP/JSON line in: rows, rejections and counts out. Shared by every file-ingest engine.

:func:`read_line` is the Python engine's whole per-line work (parse, read the spans, normalize:
the common span by :mod:`.fastpath`, anything else by :mod:`.normalize`);
the in-process loop in ``.files`` and the worker processes of ``.parallel`` both call it, so
the two give the same verdict on every line by construction.

Parsing uses orjson, about twice as fast as the standard library on these lines, with the
standard library as the referee wherever the two could disagree: a line orjson refuses is
parsed again by :func:`json.loads` (which accepts ``NaN``/``Infinity``, a UTF-8 BOM and lone
surrogate escapes, and otherwise raises with the message the rejection has always carried), and
a line that may hold an integer literal beyond 64 bits (orjson reads those as floats) goes
straight to :func:`json.loads`.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
import polars as pl

from clauditor import redact
from clauditor.ingest.claude_code import (
    DEFAULT_FEATURE_ATTRIBUTE,
    count_json_metric_points,
    is_logs_request,
    is_metrics_request,
    json_log_batch,
)
from clauditor.ingest.fastpath import GENERIC, request_spans, span_row
from clauditor.ingest.normalize import ROW_COLUMNS, SpanRecord, SpanRejected, record_row
from clauditor.ingest.otlp_json import iter_otlp_json_spans, span_record
from clauditor.schema import CALLS_SCHEMA

__all__ = ["BUILD_DTYPES", "LineSink", "build_frame", "load_line", "read_line", "safe_payload"]

MAX_PAYLOAD_CHARS = 2000  # of a quarantined span or line, as stored

# Digits folded to "0" so that a run of digits can be found with plain substring search. An
# integer literal orjson cannot hold exactly has at least 20 digits, or 19 after a minus sign;
# the 19-digit timestamps of OTLP are strings and match neither.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_DIGITS = b"0" * 20
_MINUS_NINETEEN_DIGITS = b"-" + b"0" * 19


def load_line(line: bytes) -> Any:
    """``json.loads(line)``, computed faster: the same value or the same exception, except
    that JSON nested too deeply to read raises ValueError (json's RecursionError would end the
    whole ingest instead of rejecting one line)."""
    folded = line.translate(_DIGITS_TO_ZERO)
    if _TWENTY_DIGITS in folded or _MINUS_NINETEEN_DIGITS in folded:
        return _referee(line)
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return _referee(line)  # accepts what it always accepted, or raises


def _referee(text: bytes | str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


# --- payloads for the quarantine ----------------------------------------------------------------


def safe_payload(value: Any) -> str:
    """A scrubbed text of at most :data:`MAX_PAYLOAD_CHARS` characters of a rejected span or
    line, fit for the quarantine table (:func:`clauditor.redact.safe_payload`: every path's
    payloads, the receiver's included, are made by that one function, scrubbed before cut)."""
    return redact.safe_payload(value, MAX_PAYLOAD_CHARS)


# --- frames ------------------------------------------------------------------------------------

# Built with Int64 where the table has INTEGER (conform() casts down on write, overflow -> NULL)
# and with the times as Int64 microseconds, cast to Datetime once per frame.
BUILD_DTYPES = {
    name: pl.Int64 if dtype == pl.Int32 or name in ("start_time", "end_time") else dtype
    for name, dtype in CALLS_SCHEMA.items()
    if name in ROW_COLUMNS
}


if tuple(BUILD_DTYPES) != ROW_COLUMNS:  # pragma: no cover - rows are tuples in this order
    raise RuntimeError("BUILD_DTYPES must list the row columns in ROW_COLUMNS order")

# A normalize.record_row dict as the tuple the sinks hold (ROW_COLUMNS order).
row_tuple = operator.itemgetter(*ROW_COLUMNS)


def build_frame(rows: Iterable[tuple[Any, ...]]) -> pl.DataFrame:
    """A ``calls`` frame (no costs) from row tuples in ``ROW_COLUMNS`` order (what
    :func:`read_line` collects; times in Unix microseconds)."""
    rows = rows if isinstance(rows, list) else list(rows)
    return pl.DataFrame(rows, schema=BUILD_DTYPES, orient="row").with_columns(
        pl.col("start_time").cast(pl.Datetime("us", "UTC")),
        pl.col("end_time").cast(pl.Datetime("us", "UTC")),
    )


# --- one line ----------------------------------------------------------------------------------


class _Counts(Protocol):
    spans_read: int
    ignored: int


class LineSink(Protocol):
    """Where :func:`read_line` puts its results (the batcher, or a worker's chunk collector)."""

    rows: list[tuple[Any, ...]]  # in ROW_COLUMNS order

    @property
    def summary(self) -> _Counts:
        """The counters of spans read and ignored."""

    def reject(self, origin: str, reason: str, payload: Any) -> None:
        """Record one rejected line or span."""


def read_line(
    name: str,
    number: int,
    line: bytes,
    sink: LineSink,
    feature_attributes: tuple[str, ...],
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> bool:
    """One line the Python way: rows to ``sink.rows``, rejections to ``sink.reject``.

    Returns whether the line was a request (only then may the caller flush, as it always did).

    The Collector's file exporter writes metrics and logs as lines too (``resourceMetrics``,
    ``resourceLogs``): a metrics line is a request with nothing to store; of a logs line, only
    Claude Code's call events are read (see :mod:`.claude_code`; ``claude_code_feature`` is
    config ``[claude_code] feature_attribute``), each counted as a span.
    """
    summary = sink.summary
    try:
        request = load_line(line)
    except ValueError as exc:  # UnicodeDecodeError included
        sink.reject(f"{name}:{number}", f"not valid JSON: {exc}", line)
        return False
    spans = request_spans(request)
    if spans is None and (is_logs_request(request) or is_metrics_request(request)):
        try:
            if is_metrics_request(request):
                count_json_metric_points(request)  # checks the shape; nothing is stored
                return True
            batch = json_log_batch(request, claude_code_feature)
        except SpanRejected as exc:
            sink.reject(f"{name}:{number}", exc.reason, line)
            return False
        except RecursionError:
            sink.reject(f"{name}:{number}", "attribute values nested too deeply to read", line)
            return False
        for item in batch.items:
            read_span(f"{name}:{number}", item, sink, feature_attributes)
        return True
    if spans is None:  # not the exporters' shape: the general reader, with its messages
        try:
            items = list(iter_otlp_json_spans(request))
        except SpanRejected as exc:
            sink.reject(f"{name}:{number}", exc.reason, line)
            return False
        for item in items:
            read_span(f"{name}:{number}", item, sink, feature_attributes)
        return True
    rows = sink.rows
    for span, resource, scope_name, scope_version in spans:
        # read_span, inlined, with the fast path first: this loop runs for every span
        summary.spans_read += 1
        row = span_row(span, resource, scope_name, feature_attributes)
        if row is GENERIC:
            try:
                record = span_record(span, resource, scope_name, scope_version)
            except SpanRejected as exc:
                sink.reject(f"{name}:{number}", exc.reason, span)
                continue
            try:
                found = record_row(record, feature_attributes)
            except SpanRejected as exc:
                sink.reject(f"{name}:{number}", exc.reason, record)
                continue
            row = None if found is None else row_tuple(found)
        if row is None:
            summary.ignored += 1
        else:
            rows.append(row)
    return True


def read_span(
    origin: str,
    item: SpanRecord | SpanRejected,
    sink: LineSink,
    feature_attributes: tuple[str, ...],
) -> None:
    """One span (or a span rejected while reading it): counted, normalized, kept or rejected."""
    summary = sink.summary
    summary.spans_read += 1
    if type(item) is SpanRejected:
        sink.reject(origin, item.reason, item.payload)
        return
    try:
        row = record_row(item, feature_attributes)  # type: ignore[arg-type]
    except SpanRejected as exc:
        sink.reject(origin, exc.reason, item)
        return
    if row is None:
        summary.ignored += 1
    else:
        sink.rows.append(row_tuple(row))
