"""Spans out of OTLP protobuf: an ``ExportTraceServiceRequest`` body (OTLP/HTTP and OTLP/gRPC),
and files of such messages as the OpenTelemetry Collector's file exporter writes them with
``format: proto``.

The file exporter writes each message preceded by its size as a 4-byte big-endian unsigned
integer; the OTel specification's file format instead uses protobuf's own varint size prefix
("delimited" messages). :func:`iter_proto_file_requests` accepts both and tells them apart from
the first message. The ``zstd`` compression option of the file exporter is not read (no zstd
decoder ships with Python 3.11): such files raise :class:`~clauditor.errors.IngestError` saying
so.

Records come out in the same shape as :mod:`clauditor.ingest.otlp_json` gives them: ids as
lowercase hex, ``intValue`` as int, ``bytesValue`` as base64 text, arrays as lists and kvlists
as dicts, so both paths normalize identically.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from clauditor.errors import IngestError
from clauditor.ingest.normalize import SpanRecord, SpanRejected

__all__ = [
    "decode_export_request",
    "flatten_key_values",
    "is_proto_file",
    "iter_proto_file_requests",
    "iter_proto_file_spans",
    "iter_proto_spans",
]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a length prefix above this is corruption, not data
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_UTF8_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"


def decode_export_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP ``ExportTraceServiceRequest`` from protobuf bytes.

    Raises :class:`SpanRejected` (the whole message) when the bytes are not that message:
    truncated, not protobuf at all, nested deeper than protobuf allows, or holding a string
    field that is not valid UTF-8 (proto3 forbids it, so the parser refuses the message).
    """
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        detail = str(exc) or type(exc).__name__
        raise SpanRejected(
            f"not a valid OTLP protobuf ExportTraceServiceRequest: {detail}"
        ) from None
    return request


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _flatten(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _flatten(key_values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in key_values:
        value = kv.value
        # The common kinds first, without the generic dispatch: this loop runs per attribute.
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        else:
            out[kv.key] = _any_value(value)
    return out


def flatten_key_values(key_values: Any) -> dict[str, Any]:
    """A protobuf ``KeyValue`` list (attributes of a span, log record or resource) as a dict."""
    return _flatten(key_values)


def iter_proto_spans(request: ExportTraceServiceRequest) -> Iterator[SpanRecord]:
    """Every span of a parsed request as a :class:`SpanRecord` (ids as lowercase hex).

    A parsed protobuf message is always structurally sound, so nothing is rejected here; bad
    ids, times or token counts are for :func:`~clauditor.ingest.normalize` to reject.
    Spans of one resource share one resource dict; do not mutate it.
    """
    for rs in request.resource_spans:
        resource = _flatten(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope_name = ss.scope.name
            scope_version = ss.scope.version or None
            for span in ss.spans:
                status = span.status
                parent = span.parent_span_id
                yield SpanRecord(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=parent.hex() if parent else None,
                    name=span.name,
                    kind=span.kind,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    status_code=status.code,
                    status_message=status.message or None,
                    attributes=_flatten(span.attributes),
                    resource=resource,
                    scope_name=scope_name,
                    scope_version=scope_version,
                )


# --- files ---------------------------------------------------------------------------------------


def _read_varint(stream: IO[bytes]) -> int | None:
    """A protobuf varint from ``stream``; None at a clean end of file."""
    shift = 0
    result = 0
    for i in range(10):
        byte = stream.read(1)
        if not byte:
            if i == 0:
                return None
            raise SpanRejected("file ends inside a message length prefix")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
    raise SpanRejected("message length prefix is not a valid varint")


def _read_fixed32(stream: IO[bytes]) -> int | None:
    prefix = stream.read(4)
    if not prefix:
        return None
    if len(prefix) < 4:
        raise SpanRejected("file ends inside a message length prefix")
    return int(struct.unpack(">I", prefix)[0])


def _framing(head: bytes, size: int) -> str:
    """``"fixed32"`` (Collector file exporter) or ``"varint"`` (delimited protobuf), judged
    from the first bytes of a file of ``size`` bytes."""
    if len(head) >= 4:
        length = int(struct.unpack(">I", head[:4])[0])
        # A 4-byte big-endian prefix of a real message: the first bytes are zero for any
        # message under 16 MiB, and the message tag after it is field 1 (resource_spans).
        if length + 4 <= size and (len(head) < 5 or head[4] == 0x0A):
            return "fixed32"
    return "varint"


def iter_proto_file_requests(
    stream: IO[bytes], size: int
) -> Iterator[tuple[int, ExportTraceServiceRequest | SpanRejected]]:
    """``(message number from 1, request or rejection)`` for each message of a protobuf file.

    ``size`` is the file's size in bytes (used to tell the two framings apart). A message that
    does not parse is yielded as a :class:`SpanRejected`; a corrupt length prefix ends the file
    with one final rejection, since nothing after it can be framed reliably.
    """
    head = stream.peek(5)[:5] if hasattr(stream, "peek") else b""
    read_length = _read_fixed32 if _framing(head, size) == "fixed32" else _read_varint
    number = 0
    while True:
        number += 1
        try:
            length = read_length(stream)
        except SpanRejected as exc:
            yield number, exc
            return
        if length is None:
            return
        if length > MAX_MESSAGE_BYTES:
            yield (
                number,
                SpanRejected(
                    f"message length prefix {length:,} is beyond any real message: "
                    "file corrupt here"
                ),
            )
            return
        body = stream.read(length)
        if len(body) < length:
            yield (
                number,
                SpanRejected(f"file ends inside a message ({len(body):,} of {length:,} bytes)"),
            )
            return
        try:
            yield number, decode_export_request(body)
        except SpanRejected as exc:
            yield number, exc


def is_proto_file(path: str | Path) -> bool:
    """Whether ``path`` looks like an OTLP protobuf file rather than OTLP/JSON lines.

    JSON lines start with ``{`` or ``[`` (after an optional UTF-8 byte-order mark and
    whitespace; a line that is an array is then rejected as JSON that is not a request, in
    JSON's words, not as broken protobuf) and gzip with its magic bytes; anything else (a
    binary length prefix, whose first byte is 0 for any message under 16 MB) is taken as
    protobuf. Intended for explicitly named files and for ``*.pb``/``*.proto``/``*.binpb``
    names found in folders.
    """
    with open(path, "rb") as raw:
        head = raw.read(64)
    stripped = head.removeprefix(_UTF8_BOM).lstrip()
    if not stripped:
        return False
    return not (stripped.startswith((b"{", b"[")) or head.startswith(_GZIP_MAGIC))


def iter_proto_file_spans(path: str | Path) -> Iterator[tuple[int, SpanRecord | SpanRejected]]:
    """``(message number, record or rejection)`` for every span of a protobuf OTLP file.

    A message that cannot be parsed is one :class:`SpanRejected` (its ``payload`` is empty:
    binary garbage is not worth quarantining). Raises :class:`IngestError` when the file
    cannot be opened or is zstd-compressed.
    """
    path = Path(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115  (closed in finally)
    except OSError as exc:
        raise IngestError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        if raw.peek(4)[:4] == _ZSTD_MAGIC:
            raise IngestError(
                f"{path}: zstd-compressed; decompress it first (`zstd -d`) or configure the "
                "Collector file exporter without compression"
            )
        size = path.stat().st_size
        for number, item in iter_proto_file_requests(raw, size):
            if isinstance(item, SpanRejected):
                yield number, item
                continue
            for record in iter_proto_spans(item):
                yield number, record
    finally:
        raw.close()
