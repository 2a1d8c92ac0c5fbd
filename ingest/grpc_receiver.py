"""OTLP/gRPC receiver: ``TraceService/Export``, ``LogsService/Export`` and
``MetricsService/Export`` with the HTTP receiver's semantics (logs and metrics: see
:mod:`.receiver`; they are always answered OK without ``partial_success``).

* OK once the request's spans are committed; rejected spans named in ``partial_success`` and
  quarantined, good spans kept;
* UNAUTHENTICATED without the bearer token (``authorization`` metadata) when one is set,
  answered before the request message is read;
* DEADLINE_EXCEEDED when the request message has not arrived ``body_timeout_s`` after the call
  started (a stalled client);
* UNAVAILABLE when the write queue is full or the write failed (the OTel gRPC exporter retries
  it with backoff);
* RESOURCE_EXHAUSTED from gRPC itself for a message over ``max_message_bytes`` (checked after
  decompression, so a gzip bomb is refused);
* INVALID_ARGUMENT with the reason for a message that is not an ``ExportTraceServiceRequest``
  (it is parsed here, not by gRPC, whose deserializer would log a traceback per bad message).

Hostile clients. The server is grpcio's asyncio server on a thread of its own, so a call that
waits for its message holds a coroutine, not one of a few worker threads: a synchronous grpcio
server with 16 workers and ``maximum_concurrent_rpcs`` is starved by a few dozen HTTP/2 streams
that send their headers and then nothing, and answers every real exporter RESOURCE_EXHAUSTED.
Export is registered as a client-streaming method (the wire format of a unary call is the same)
so that the handler runs when the call starts: it checks the token first and then waits for the
one message with a deadline. There is deliberately no concurrent-RPC cap for stalled calls to
fill; work is bounded by the write queue (UNAVAILABLE when full). Connections are bounded by
gRPC core's own options (see :func:`_server_options`): the HTTP/2 handshake must finish within
``header_timeout_s``, a connection with no call open is closed after ``header_timeout_s``, every
connection is recycled after :data:`MAX_CONNECTION_AGE_S` (calls in flight get
``body_timeout_s`` more), dead peers are found by keepalive pings, and clients pinging too
often are cut off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from clauditor.errors import ClauditorError
from clauditor.ingest.claude_code import DEFAULT_FEATURE_ATTRIBUTE
from clauditor.ingest.receiver import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    PROTOBUF,
    BadRequest,
    ReceiverStats,
    authorized,
    decode_body,
)
from clauditor.ingest.writer import Prepared, QueueFull, WriteQueue

__all__ = ["MAX_CONNECTION_AGE_S", "GrpcReceiver"]

_log = logging.getLogger("clauditor.ingest.grpc_receiver")

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
# signal -> (gRPC service, response message)
SERVICES: dict[str, tuple[str, type[Message]]] = {
    "traces": (SERVICE, ExportTraceServiceResponse),
    "logs": ("opentelemetry.proto.collector.logs.v1.LogsService", ExportLogsServiceResponse),
    "metrics": (
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        ExportMetricsServiceResponse,
    ),
}
MAX_CONNECTION_AGE_S = 300  # then GOAWAY: the exporter reconnects, nothing is lost
MAX_STREAMS_PER_CONNECTION = 100


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _server_options(
    max_message_bytes: int, header_timeout_s: float, body_timeout_s: float
) -> list[tuple[str, Any]]:
    """gRPC core's channel arguments that keep idle, half-open and stalled peers from piling
    up (names as in grpc/impl/channel_arg_names.h)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
        # A TCP connection that never completes the HTTP/2 preface and SETTINGS is dropped.
        ("grpc.server_handshake_timeout_ms", _ms(header_timeout_s)),
        # One that completed it but has no call open (preface and then silence, or an idle
        # exporter between batches) gets GOAWAY; an exporter simply reconnects.
        ("grpc.max_connection_idle_ms", _ms(header_timeout_s)),
        ("grpc.max_connection_age_ms", _ms(MAX_CONNECTION_AGE_S)),
        ("grpc.max_connection_age_grace_ms", _ms(body_timeout_s)),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        # Ping the peer of an open call every minute; no answer in 20 s: it is gone.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # Clients may ping at most every 10 s; the third ping sooner than that closes them.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.max_pings_without_data", 2),
    ]


async def _refuse(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


class _ExportService:
    """``<signal>Service/Export`` writing through a :class:`WriteQueue`."""

    def __init__(
        self,
        writer: WriteQueue,
        *,
        signal: str,
        feature_attributes: Sequence[str],
        token: str | None,
        stats: ReceiverStats,
        body_timeout_s: float,
        claude_code_feature: str,
    ) -> None:
        self.signal = signal
        self.service, self.response = SERVICES[signal]
        self.claude_code_feature = claude_code_feature
        self.writer = writer
        self.features = tuple(feature_attributes)
        self.token = token
        self.stats = stats
        self.body_timeout_s = body_timeout_s

    def handler(self) -> grpc.GenericRpcHandler:
        export = grpc.stream_unary_rpc_method_handler(
            self.export,
            request_deserializer=None,  # bytes: parsed in _decode, with a clear refusal
            response_serializer=self.response.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(self.service, {"Export": export})

    def _authorized(self, context: grpc.aio.ServicerContext) -> bool:
        if not self.token:
            return True
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                return authorized(value, self.token)
        return False

    def _decode(self, body: bytes, origin: str) -> Prepared:
        return decode_body(
            body, PROTOBUF, origin, self.features, self.signal, self.claude_code_feature
        )

    def _went_away(self, peer: str) -> None:
        self.stats.count(disconnected=1)
        _log.warning("OTLP/gRPC client %s went away before its message; nothing stored", peer)

    async def export(
        self,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext,
    ) -> Message:
        """Store the request's spans (or log events); answer after the commit."""
        stats = self.stats
        stats.count(requests=1)
        if not self._authorized(context):
            stats.count(requests_refused=1)
            await _refuse(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        peer = context.peer()
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await anext(aiter(requests), None)
        except asyncio.CancelledError:  # the client went away: gRPC cancels the handler
            self._went_away(peer)
            raise
        except TimeoutError:
            stats.count(requests_too_slow=1)
            await _refuse(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"request message not received within {self.body_timeout_s:g} s",
            )
        if body is None:  # the stream ended first: a real exporter never does that
            self._went_away(peer)
            await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        origin = f"otlp-grpc {peer}"
        try:
            prepared = await asyncio.to_thread(self._decode, body, origin)
        except BadRequest as exc:
            stats.count(requests_refused=1)
            await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        stats.counted(prepared)
        if self.signal != "traces" and not prepared.rows and not prepared.quarantine:
            return self.response()  # nothing to store
        try:
            future = self.writer.submit(prepared)
        except QueueFull as exc:
            stats.count(requests_retry_later=1)
            await _refuse(context, grpc.StatusCode.UNAVAILABLE, f"{exc}; retry later")
        failure: Exception | None = None
        try:
            # Shielded: a client that goes away must not cancel the write under the writer.
            await asyncio.shield(asyncio.wrap_future(future))
        except Exception as exc:
            failure = exc
        if failure is not None:
            stats.count(requests_retry_later=1)
            await _refuse(
                context, grpc.StatusCode.UNAVAILABLE, f"spans not stored, retry later: {failure}"
            )
        if self.signal != "traces":
            return self.response()  # always a full success (see .receiver)
        response = ExportTraceServiceResponse()
        if prepared.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=prepared.rejected, error_message=prepared.error_message()
                )
            )
        return response


class GrpcReceiver:
    """The OTLP/gRPC server, on an event loop in a thread of its own.

    :meth:`start` returns once it listens (``port`` is then the bound port; 0 asks for a free
    one) or raises :class:`ClauditorError`; :meth:`stop` lets calls in flight finish.
    """

    def __init__(
        self,
        writer: WriteQueue,
        *,
        host: str = "127.0.0.1",
        port: int = 4317,
        feature_attributes: Sequence[str],
        token: str | None = None,
        stats: ReceiverStats | None = None,
        max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
    ) -> None:
        self.host = host
        self.port = port
        shared = stats or ReceiverStats()
        self._services = [
            _ExportService(
                writer,
                signal=signal,
                feature_attributes=feature_attributes,
                token=token,
                stats=shared,
                body_timeout_s=body_timeout_s,
                claude_code_feature=claude_code_feature,
            )
            for signal in SERVICES
        ]
        self._options = _server_options(max_message_bytes, header_timeout_s, body_timeout_s)
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Future[float] | None = None
        self._thread = threading.Thread(target=self._run, name="otlp-grpc", daemon=True)

    def start(self) -> GrpcReceiver:
        """Start listening; returns once the server accepts calls."""
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure
        return self

    def stop(self, grace_s: float = 30.0) -> concurrent.futures.Future[None]:
        """Stop accepting calls; those in flight get ``grace_s`` seconds to finish. Returns at
        once: the future is done when the server has stopped."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop, stopping = self._loop, self._stopping
        if loop is None or stopping is None or not self._thread.is_alive():
            done.set_result(None)
            return done

        def begin() -> None:
            if not stopping.done():
                stopping.set_result(grace_s)

        loop.call_soon_threadsafe(begin)

        def wait() -> None:
            self._thread.join()
            done.set_result(None)

        threading.Thread(target=wait, name="otlp-grpc-stop", daemon=True).start()
        return done

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            server = grpc.aio.server(options=self._options)
            server.add_generic_rpc_handlers(tuple(s.handler() for s in self._services))
            try:
                bound = server.add_insecure_port(address)
            except RuntimeError as exc:  # grpcio raises this when the port is taken
                raise ClauditorError(f"cannot listen for OTLP/gRPC on {address}: {exc}") from None
            if not bound:
                raise ClauditorError(f"cannot listen for OTLP/gRPC on {address}")
            await server.start()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            return
        self.port = bound
        self._loop = asyncio.get_running_loop()
        self._stopping = self._loop.create_future()
        self._ready.set()
        grace_s = await self._stopping
        await server.stop(grace_s)
