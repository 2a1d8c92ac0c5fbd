"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/logs`` and ``/v1/metrics`` (protobuf or JSON,
plain, gzip or deflate) and ``GET /healthz``, as a Starlette app served by Hypercorn (see
:mod:`clauditor.ingest.serve`).

Every signal an app's default OTel setup sends is taken. Traces become ``calls`` rows. Of logs,
only Claude Code's call events are stored (see :mod:`.claude_code`); every other log record and
every metric data point is accepted and counted (``log_records_received``,
``metric_points_received`` in ``/healthz``), never stored. Logs and metrics are always answered
with a full success: an exporter warns about a partial success on every export, forever, so a
Claude Code event that cannot be stored is quarantined and counted (``spans_rejected``) instead.
The rest of this docstring holds for all three paths.

Answers, following the OTLP/HTTP specification:

* 200 once every span of the request is committed to DuckDB (see :mod:`.writer` for why the
  answer waits for the commit); spans that could not be stored are named in ``partial_success``
  (``rejected_spans`` + ``error_message``) and kept in the ``quarantine`` table, while the good
  spans of the same request are stored;
* 400 with a message when the body cannot be decoded at all (not protobuf / not JSON / not
  UTF-8 / nested too deeply / not an ``ExportTraceServiceRequest``);
* 401 when a token is configured and the request lacks ``Authorization: Bearer <token>``;
* 408 when the body has not arrived ``body_timeout_s`` after the headers (a stalled client);
* 413 when the body, or what it decompresses to, is over ``max_body_bytes`` (decompression
  stops at the limit: a gzip bomb is refused, never expanded);
* 415 for a content type other than ``application/x-protobuf`` / ``application/json``;
* 503 with ``Retry-After`` when the write queue is full or the database write failed, or when
  ``max_requests`` bodies are already being read or decoded: nothing of that request was
  stored, and the OTel exporters retry it.

The token is checked before the body is read. ``max_requests`` counts requests whose headers
have arrived, never connections, so clients that open connections and send half a request hold
no slot (the server closes those after its header timeout). A client that goes away before its
body is complete is counted (``disconnected``) and logged in one line, never a traceback.

``GET /healthz`` answers ``{"status": "ok"}`` (503 ``{"status": "unhealthy"}`` when the writer
has stopped) to anyone; with a token configured, the counters come only with the token. With
no token they always come along.

Error bodies are a ``google.rpc.Status`` in the request's encoding. The token is compared in
constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clauditor.ingest.claude_code import (
    DEFAULT_FEATURE_ATTRIBUTE,
    count_json_metric_points,
    count_proto_metric_points,
    decode_logs_request,
    decode_metrics_request,
    json_log_batch,
    proto_log_batch,
)
from clauditor.ingest.normalize import SpanRecord, SpanRejected
from clauditor.ingest.otlp_json import iter_otlp_json_spans
from clauditor.ingest.otlp_proto import decode_export_request, iter_proto_spans
from clauditor.ingest.writer import Prepared, QueueFull, WriteQueue, prepare

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_REQUESTS",
    "RETRY_AFTER_S",
    "SIGNALS",
    "BadRequest",
    "ReceiverStats",
    "authorized",
    "create_app",
    "decode_body",
]

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024  # the Collector's own OTLP/HTTP default
# A connection must send its request headers (HTTP) or HTTP/2 handshake (gRPC) within this many
# seconds of connecting or of its previous answer, else it is closed: so are idle connections.
DEFAULT_HEADER_TIMEOUT_S = 10.0
# The whole body (HTTP) or request message (gRPC) must arrive within this many seconds of the
# headers: 20 MiB at ~350 KB/s.
DEFAULT_BODY_TIMEOUT_S = 60.0
# HTTP requests whose body is being read or decoded at once; beyond: 503 + Retry-After.
DEFAULT_MAX_REQUESTS = 256
RETRY_AFTER_S = 1
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SIGNALS = ("traces", "logs", "metrics")

# google.rpc.Code values for the error bodies.
_RPC_CODE = {400: 3, 401: 16, 408: 4, 413: 8, 415: 3, 503: 14, 500: 13}

_log = logging.getLogger("clauditor.ingest.receiver")


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
    disconnected: int = 0  # the client went away before its body was complete
    requests_too_slow: int = 0  # 408 / DEADLINE_EXCEEDED: the body did not arrive in time
    log_records_received: int = 0  # every log record; Claude Code's call events also count as spans
    metric_points_received: int = 0  # accepted and counted, never stored

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
            log_records_received=prepared.log_records,
            metric_points_received=prepared.metric_points,
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


def _parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            400, f"JSON body is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequest(400, "JSON body is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None


def decode_body(
    body: bytes,
    content_type: str,
    origin: str,
    feature_attributes: Sequence[str],
    signal: str = "traces",
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> Prepared:
    """Decode an (already decompressed) OTLP body of ``signal`` (``traces``, ``logs`` or
    ``metrics``) into a :class:`Prepared` batch.

    ``claude_code_feature`` is the attribute naming a Claude Code call's feature (config
    ``[claude_code] feature_attribute``). Raises :class:`BadRequest` (400) when the body as a
    whole cannot be read.
    """
    try:
        if signal == "metrics":
            if content_type == PROTOBUF:
                points = count_proto_metric_points(decode_metrics_request(body))
            else:
                points = count_json_metric_points(_parse_json(body))
            return Prepared(metric_points=points)
        if signal == "logs":
            try:
                batch = (
                    proto_log_batch(decode_logs_request(body), claude_code_feature)
                    if content_type == PROTOBUF
                    else json_log_batch(_parse_json(body), claude_code_feature)
                )
            except RecursionError:
                raise BadRequest(400, "attribute values nested too deeply to read") from None
            prepared = prepare(batch.items, origin, feature_attributes)
            prepared.log_records = batch.records
            return prepared
        if content_type == PROTOBUF:
            items: Any = iter_proto_spans(decode_export_request(body))
        else:
            items = _json_items(_parse_json(body))
        return prepare(items, origin, feature_attributes)
    except SpanRejected as exc:
        raise BadRequest(400, exc.reason) from None


# --- responses -----------------------------------------------------------------------------------


def _success(prepared: Prepared, content_type: str, signal: str = "traces") -> Response:
    if signal != "traces":  # always a full success: see the module docstring
        if content_type == PROTOBUF:
            empty = (
                ExportLogsServiceResponse() if signal == "logs" else ExportMetricsServiceResponse()
            )
            return Response(empty.SerializeToString(), media_type=PROTOBUF)
        return JSONResponse({})
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


class _Disconnected(Exception):
    """The client went away after ``received`` bytes of its body."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"body of {int(declared):,} bytes is over the {limit:,}-byte limit")
    chunks = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                chunks += chunk
                if len(chunks) > limit:
                    raise BadRequest(413, f"body is over the {limit:,}-byte limit")
    except TimeoutError:
        raise BadRequest(
            408, f"body not received within {timeout_s:g} s ({len(chunks):,} bytes arrived)"
        ) from None
    except ClientDisconnect:
        raise _Disconnected(len(chunks)) from None
    return bytes(chunks)


def create_app(
    writer: WriteQueue,
    *,
    feature_attributes: Sequence[str],
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    stats: ReceiverStats | None = None,
    healthy: Callable[[], bool] | None = None,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> Starlette:
    """The OTLP/HTTP receiver app writing through ``writer``.

    ``claude_code_feature``: the attribute naming a Claude Code call's feature (config
    ``[claude_code] feature_attribute``). ``token``: when set, ``/v1/traces``, ``/v1/logs``
    and ``/v1/metrics`` require ``Authorization: Bearer <token>``, and
    ``/healthz`` shows its counters only with it. ``healthy`` (optional) adds a liveness
    condition for ``/healthz``. ``max_requests``: requests read and decoded at once
    (beyond: 503 with ``Retry-After``). ``body_timeout_s``: how long a body may take to
    arrive (then 408).
    """
    stats = stats or ReceiverStats()
    features = tuple(feature_attributes)
    in_flight = 0  # only touched on the event loop

    async def export(request: Request, signal: str) -> Response:
        nonlocal in_flight
        stats.count(requests=1)
        raw_type = request.headers.get("content-type", "")
        content_type = raw_type.split(";", 1)[0].strip().lower()
        reply_type = PROTOBUF if content_type == PROTOBUF else JSON
        client = request.client
        peer = f"{client.host}:{client.port}" if client else "unknown"
        if in_flight >= max_requests:
            stats.count(requests_retry_later=1)
            return _error(503, f"{max_requests} requests in progress; retry later", reply_type)
        in_flight += 1
        try:
            if not authorized(request.headers.get("authorization"), token):
                raise BadRequest(401, "missing or wrong bearer token")
            if content_type not in (PROTOBUF, JSON):
                raise BadRequest(
                    415, f"unsupported Content-Type {raw_type!r:.60}; use {PROTOBUF} or {JSON}"
                )
            body = await _read_body(request, max_body_bytes, body_timeout_s)
            encoding = request.headers.get("content-encoding", "").strip().lower()
            origin = f"otlp-http {peer}" if client else "otlp-http"
            prepared = await run_in_threadpool(
                _decode,
                body,
                encoding,
                max_body_bytes,
                content_type,
                origin,
                features,
                signal,
                claude_code_feature,
            )
        except BadRequest as exc:
            stats.count(requests_refused=1, requests_too_slow=int(exc.status == 408))
            return _error(exc.status, exc.message, reply_type)
        except _Disconnected as exc:
            stats.count(disconnected=1)
            _log.warning(
                "OTLP/HTTP client %s went away after %d body bytes; nothing stored",
                peer,
                exc.received,
            )
            return Response(status_code=400)  # nobody is there to read it
        finally:
            in_flight -= 1
        stats.counted(prepared)
        if signal != "traces" and not prepared.rows and not prepared.quarantine:
            return _success(prepared, reply_type, signal)  # nothing to store
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
        return _success(prepared, reply_type, signal)

    async def traces(request: Request) -> Response:
        return await export(request, "traces")

    async def logs(request: Request) -> Response:
        return await export(request, "logs")

    async def metrics(request: Request) -> Response:
        return await export(request, "metrics")

    async def healthz(request: Request) -> Response:
        ok = healthy() if healthy is not None else True
        body: dict[str, Any] = {"status": "ok" if ok else "unhealthy"}
        if authorized(request.headers.get("authorization"), token):
            body["queued_batches"] = writer.depth
            body.update(stats.snapshot())
            body.update(asdict(writer.stats))
        return JSONResponse(body, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/v1/logs", logs, methods=["POST"]),
            Route("/v1/metrics", metrics, methods=["POST"]),
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
    signal: str,
    claude_code_feature: str,
) -> Prepared:
    return decode_body(
        _decompress(body, encoding, limit),
        content_type,
        origin,
        features,
        signal,
        claude_code_feature,
    )
