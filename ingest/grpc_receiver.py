"""OTLP/gRPC trace receiver: the ``TraceService/Export`` RPC with the HTTP receiver's semantics.

* OK once the request's spans are committed; rejected spans named in ``partial_success`` and
  quarantined, good spans kept;
* UNAUTHENTICATED without the bearer token (``authorization`` metadata) when one is set;
* UNAVAILABLE when the write queue is full or the write failed (the OTel gRPC exporter retries
  it with backoff);
* RESOURCE_EXHAUSTED from gRPC itself for a message over ``max_message_bytes`` (checked after
  decompression, so a gzip bomb is refused);
* a body that is not a valid ``ExportTraceServiceRequest`` fails in gRPC's own deserializer
  before it reaches us (the client sees INTERNAL): gRPC gives servicers no hook there.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from clauditor.errors import ClauditorError

from .otlp_proto import iter_proto_spans
from .receiver import DEFAULT_MAX_BODY_BYTES, ReceiverStats, authorized
from .writer import QueueFull, WriteQueue, prepare

__all__ = ["TraceServicer", "start_grpc_server"]


class TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    """The ``TraceService`` implementation writing through a :class:`WriteQueue`."""

    def __init__(
        self,
        writer: WriteQueue,
        *,
        feature_attributes: Sequence[str],
        token: str | None,
        stats: ReceiverStats,
    ) -> None:
        self.writer = writer
        self.features = tuple(feature_attributes)
        self.token = token
        self.stats = stats

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        if not self.token:
            return True
        for key, value in context.invocation_metadata():
            if key == "authorization" and isinstance(value, str):
                return authorized(value, self.token)
        return False

    def Export(  # noqa: N802  (the generated servicer's method name)
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        """Store the request's spans; answer after the commit."""
        stats = self.stats
        stats.count(requests=1)
        if not self._authorized(context):
            stats.count(requests_refused=1)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        origin = f"otlp-grpc {context.peer()}"
        prepared = prepare(iter_proto_spans(request), origin, self.features)
        stats.counted(prepared)
        try:
            future = self.writer.submit(prepared)
        except QueueFull as exc:
            stats.count(requests_retry_later=1)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry later")
        try:
            future.result()
        except Exception as exc:
            stats.count(requests_retry_later=1)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"spans not stored, retry later: {exc}")
        response = ExportTraceServiceResponse()
        if prepared.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=prepared.rejected, error_message=prepared.error_message()
                )
            )
        return response


def start_grpc_server(
    writer: WriteQueue,
    *,
    host: str = "127.0.0.1",
    port: int = 4317,
    feature_attributes: Sequence[str],
    token: str | None = None,
    stats: ReceiverStats | None = None,
    max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_workers: int = 16,
) -> tuple[grpc.Server, int]:
    """Start an OTLP/gRPC server on ``host:port`` (0: any free port); ``(server, bound port)``.

    Stop it with ``server.stop(grace)``: in-flight exports finish within ``grace`` seconds.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
        ],
        maximum_concurrent_rpcs=max_workers * 4,
    )
    servicer = TraceServicer(
        writer,
        feature_attributes=feature_attributes,
        token=token,
        stats=stats or ReceiverStats(),
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises this when the port is taken
        raise ClauditorError(f"cannot listen for OTLP/gRPC on {address}: {exc}") from None
    if not bound:
        raise ClauditorError(f"cannot listen for OTLP/gRPC on {address}")
    server.start()
    return server, bound
