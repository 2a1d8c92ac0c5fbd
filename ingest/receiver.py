"""OTLP/HTTP trace receiver: ``POST /v1/traces`` (protobuf or JSON, plain, gzip or deflate) and
``GET /healthz``, as a Starlette app served by uvicorn (see :mod:`clauditor.ingest.serve`).

Answers, following the OTLP/HTTP specification:

* 200 once every span of the request is committed to DuckDB (see :mod:`.writer` for why the
  answer waits for the commit); spans that could not be stored are named in ``partial_success``
  (``rejected_spans`` + ``error_message``) and kept in the ``quarantine`` table, while the good
  spans of the same request are stored;
* 400 with a message when the body cannot be decoded at all (not protobuf / not JSON / not
  UTF-8 / nested too deeply / not an ``ExportTraceServiceRequest``);
* 401 when a token is configured and the request lacks ``Authorization: Bearer <token>``;
* 413 when the body, or what it decompresses to, is over ``max_body_bytes`` (decompression
  stops at the limit: a gzip bomb is refused, never expanded);
* 415 for a content type other than ``application/x-protobuf`` / ``application/json``;
* 503 with ``Retry-After`` when the write queue is full or the database write failed: nothing
  of that request was stored, and the OTel exporters retry it.

Error bodies are a ``google.rpc.Status`` in the request's encoding. The token is compared in
constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .normalize import SpanRecord, SpanRejected
from .otlp_json import iter_otlp_json_spans
from .otlp_proto import decode_export_request, iter_proto_spans
from .writer import Prepared, QueueFull, WriteQueue, prepare

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "BadRequest",
    "RETRY_AFTER_S",
    "ReceiverStats",
    "authorized",
    "create_app",
    "decode_body",
]

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024  # the Collector's own OTLP/HTTP default
RETRY_AFTER_S = 1
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code values for the error bodies.
_RPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14, 500: 13}


class BadRequest(Exception):
    """The request cannot be taken at all; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ReceiverStats:
    """Request and span counters since start, shared by the HTTP and gRPC receivers."""

    requests: int = 0
    requests_refused: int = 0  # 4xx: undecodable, too large, unauthorized
    requests_retry_later: int = 0  # 503 / UNAVAILABLE: queue full or write failed
    spans_received: int = 0
    spans_rejected: int = 0
    spans_ignored: int = 0
    spans_truncated: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, **deltas: int) -> None:
        """Add ``deltas`` to the named counters (thread-safe)."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def counted(self, prepared: Prepared) -> None:
        """Add one decoded request's span counts."""
        self.count(
            spans_received=prepared.spans,
            spans_rejected=prepared.rejected,
            spans_ignored=prepared.ignored,
            spans_truncated=prepared.truncated,
        )

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict."""
        with self._lock:
            return asdict(self)


# --- decoding ------------------------------------------------------------------------------------


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded per Content-Encoding, refusing to produce more than ``limit`` bytes."""
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = 32 + zlib.MAX_WBITS  # zlib-wrapped as HTTP says, or gzip: auto-detected
    else:
        raise BadRequest(415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    out = bytearray()
    data = body
    try:
        while data:
            decoder = zlib.decompressobj(wbits)
            while data:
                out += decoder.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    raise BadRequest(
                        413, f"body decompresses to more than the {limit:,}-byte limit"
                    )
                data = decoder.unconsumed_tail
                if decoder.eof:
                    break
            if not decoder.eof:
                raise BadRequest(400, f"{encoding} body is truncated")
            data = decoder.unused_data  # a further gzip member, if any
    except zlib.error as exc:
        raise BadRequest(400, f"{encoding} body cannot be decompressed: {exc}") from None
    return bytes(out)


def _json_items(request: Any) -> list[SpanRecord | SpanRejected]:
    """The spans of a parsed OTLP/JSON request; a span whose attributes nest too deeply to
    flatten is rejected alone, its neighbours kept."""
    try:
        return list(iter_otlp_json_spans(request))
    except RecursionError:
        pass
    items: list[SpanRecord | SpanRejected] = []
    for rs in request.get("resourceSpans") or []:
        for ss in rs.get("scopeSpans") or []:
            for span in ss.get("spans") or []:
                one = {
                    "resourceSpans": [
                        {
                            "resource": rs.get("resource"),
                            "scopeSpans": [{"scope": ss.get("scope"), "spans": [span]}],
                        }
                    ]
                }
                try:
                    items.extend(iter_otlp_json_spans(one))
                except RecursionError:
                    items.append(SpanRejected("attribute values nested too deeply to read"))
    return items


def decode_body(
    body: bytes, content_type: str, origin: str, feature_attributes: Sequence[str]
) -> Prepared:
    """Decode an (already decompressed) OTLP trace body into a :class:`Prepared` batch.

    Raises :class:`BadRequest` (400) when the body as a whole cannot be read.
    """
    try:
        if content_type == PROTOBUF:
            items: Any = iter_proto_spans(decode_export_request(body))
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest(
                    400, f"JSON body is not valid UTF-8 (byte {exc.start}: {exc.reason})"
                ) from None
            try:
                request = json.loads(text)
            except RecursionError:
                raise BadRequest(400, "JSON body is nested too deeply") from None
            except ValueError as exc:
                raise BadRequest(400, f"body is not valid JSON: {exc}") from None
            items = _json_items(request)
        return prepare(items, origin, feature_attributes)
    except SpanRejected as exc:
        raise BadRequest(400, exc.reason) from None


# --- responses -----------------------------------------------------------------------------------


def _success(prepared: Prepared, content_type: str) -> Response:
    if content_type == PROTOBUF:
        message = ExportTraceServiceResponse()
        if prepared.rejected:
            message.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=prepared.rejected, error_message=prepared.error_message()
                )
            )
        return Response(message.SerializeToString(), media_type=PROTOBUF)
    payload: dict[str, Any] = {}
    if prepared.rejected:
        payload["partialSuccess"] = {
            "rejectedSpans": str(prepared.rejected),  # int64 is a string in OTLP/JSON
            "errorMessage": prepared.error_message(),
        }
    return JSONResponse(payload)


def _error(status: int, message: str, content_type: str) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    code = _RPC_CODE.get(status, 2)
    if content_type == PROTOBUF:
        body = Status(code=code, message=message).SerializeToString()
        return Response(body, status_code=status, media_type=PROTOBUF, headers=headers)
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` (always, with no token)."""
    if not token:
        return True
    if not header or header[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


# --- the app -------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"body of {int(declared):,} bytes is over the {limit:,}-byte limit")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise BadRequest(413, f"body is over the {limit:,}-byte limit")
    return bytes(chunks)


def create_app(
    writer: WriteQueue,
    *,
    feature_attributes: Sequence[str],
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    stats: ReceiverStats | None = None,
    healthy: Callable[[], bool] | None = None,
) -> Starlette:
    """The OTLP/HTTP receiver app writing through ``writer``.

    ``token``: when set, ``/v1/traces`` requires ``Authorization: Bearer <token>``.
    ``healthy`` (optional) adds a liveness condition for ``/healthz``.
    """
    stats = stats or ReceiverStats()
    features = tuple(feature_attributes)

    async def traces(request: Request) -> Response:
        stats.count(requests=1)
        raw_type = request.headers.get("content-type", "")
        content_type = raw_type.split(";", 1)[0].strip().lower()
        reply_type = PROTOBUF if content_type == PROTOBUF else JSON
        try:
            if not authorized(request.headers.get("authorization"), token):
                raise BadRequest(401, "missing or wrong bearer token")
            if content_type not in (PROTOBUF, JSON):
                raise BadRequest(
                    415, f"unsupported Content-Type {raw_type!r:.60}; use {PROTOBUF} or {JSON}"
                )
            body = await _read_body(request, max_body_bytes)
            encoding = request.headers.get("content-encoding", "").strip().lower()
            client = request.client
            origin = f"otlp-http {client.host}:{client.port}" if client else "otlp-http"
            prepared = await run_in_threadpool(
                _decode, body, encoding, max_body_bytes, content_type, origin, features
            )
        except BadRequest as exc:
            stats.count(requests_refused=1)
            return _error(exc.status, exc.message, reply_type)
        stats.counted(prepared)
        try:
            future = writer.submit(prepared)
        except QueueFull as exc:
            stats.count(requests_retry_later=1)
            return _error(503, f"{exc}; retry later", reply_type)
        try:
            # Shielded: a client that disconnects must not cancel the write under the writer.
            await asyncio.shield(asyncio.wrap_future(future))
        except Exception as exc:
            stats.count(requests_retry_later=1)
            return _error(503, f"spans not stored, retry later: {exc}", reply_type)
        return _success(prepared, reply_type)

    async def healthz(request: Request) -> Response:
        ok = healthy() if healthy is not None else True
        body = {"status": "ok" if ok else "unhealthy", "queued_batches": writer.depth}
        body.update(stats.snapshot())
        body.update(asdict(writer.stats))
        return JSONResponse(body, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _decode(
    body: bytes,
    encoding: str,
    limit: int,
    content_type: str,
    origin: str,
    features: tuple[str, ...],
) -> Prepared:
    return decode_body(_decompress(body, encoding, limit), content_type, origin, features)
