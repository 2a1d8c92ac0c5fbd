"""`clauditor serve` receivers, exercised with the real OTel exporters against a real Receiver
on 127.0.0.1 (random free ports), checked in the DuckDB file."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from clauditor.ingest.serve import Receiver

from .receiver_support import (
    call_attributes,
    json_request,
    json_span,
    proto_request,
    proto_span,
    query,
    send_calls,
    span_count,
)

# Per call (claude-sonnet-4-5: $3 input, $15 output, cache read 0.1 x $3 = $0.30 per MTok):
# uncached input = 1000 inclusive - 200 cache read = 800 -> 800 * 3 / 1e6     = 0.0024
# cache read     = 200 * 0.30 / 1e6                                          = 0.00006
# output         = 100 * 15 / 1e6                                            = 0.0015
COST_PER_CALL = 0.0024 + 0.00006 + 0.0015  # = 0.00396


@pytest.fixture
def receiver(db_path: Path) -> Iterator[Receiver]:
    with Receiver(db_path, http_port=0, grpc_port=0) as running:
        yield running


def test_http_exporter_protobuf_gzip_spans_land_priced_exactly_once(
    receiver: Receiver, db_path: Path
) -> None:
    exporter = HttpExporter(endpoint=receiver.http_endpoint, compression=Compression.Gzip)
    send_calls(exporter, 300, batch=128)

    rows = query(
        db_path,
        "SELECT count(*), count(DISTINCT span_id), sum(input_tokens), "
        "sum(cache_read_input_tokens), sum(output_tokens), sum(cost_usd), "
        "min(feature), min(service), min(source) FROM calls",
    )
    count, distinct, input_tokens, cache_read, output, cost, feature, service, source = rows[0]
    assert (count, distinct) == (300, 300)
    assert (input_tokens, cache_read, output) == (300 * 800, 300 * 200, 300 * 100)
    assert cost == pytest.approx(300 * COST_PER_CALL)  # = 1.188
    assert (feature, service, source) == ("search", "support-bot", "clauditor")
    assert query(db_path, "SELECT count(*) FROM quarantine")[0][0] == 0


def test_grpc_exporter_gzip_spans_land(receiver: Receiver, db_path: Path) -> None:
    exporter = GrpcExporter(
        endpoint=receiver.grpc_endpoint, insecure=True, compression=grpc.Compression.Gzip
    )
    send_calls(exporter, 200, feature="grpc-feature")

    count, cost = query(
        db_path, "SELECT count(*), sum(cost_usd) FROM calls WHERE feature = 'grpc-feature'"
    )[0]
    assert count == 200
    assert cost == pytest.approx(200 * COST_PER_CALL)  # = 0.792


def test_http_partial_success_keeps_good_spans_and_quarantines_bad(
    receiver: Receiver, db_path: Path
) -> None:
    good = [proto_span() for _ in range(3)]
    bad = proto_span(call_attributes(gen_ai__usage__output_tokens=-5))
    body = proto_request([*good, bad]).SerializeToString()

    response = httpx.post(
        receiver.http_endpoint,
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
    )

    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "gen_ai.usage.output_tokens is negative" in answer.partial_success.error_message
    stored = {row[0] for row in query(db_path, "SELECT span_id FROM calls")}
    assert stored == {span.span_id.hex() for span in good}
    origin, reason = query(db_path, "SELECT origin, reason FROM quarantine")[0]
    assert bad.span_id.hex() in origin and "negative" in reason


def test_http_json_body_with_partial_success(receiver: Receiver, db_path: Path) -> None:
    good = json_span()
    bad = json_span(span_id="xyz")
    response = httpx.post(
        receiver.http_endpoint,
        content=json.dumps(json_request([good, bad])),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "span_id is not 16 hex" in partial["errorMessage"]
    assert query(db_path, "SELECT span_id FROM calls") == [(good["spanId"],)]


def test_resent_request_is_stored_once(receiver: Receiver, db_path: Path) -> None:
    body = gzip.compress(proto_request([proto_span() for _ in range(5)]).SerializeToString())
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    for _ in range(3):  # a sender that never saw the answer retries
        assert httpx.post(receiver.http_endpoint, content=body, headers=headers).status_code == 200
    assert span_count(db_path) == 5


def test_undecodable_and_oversized_bodies_get_clear_errors(receiver: Receiver) -> None:
    url = receiver.http_endpoint
    garbage = httpx.post(
        url, content=b"\xff\x00garbage", headers={"Content-Type": "application/x-protobuf"}
    )
    assert garbage.status_code == 400
    assert "not a valid OTLP protobuf" in Status.FromString(garbage.content).message

    not_json = httpx.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["message"]

    wrong_type = httpx.post(url, content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415

    big = b"\x00" * (20 * 1024 * 1024 + 1)
    too_big = httpx.post(url, content=big, headers={"Content-Type": "application/x-protobuf"})
    assert too_big.status_code == 413

    assert httpx.get(url.replace("/v1/traces", "/healthz")).json()["status"] == "ok"


def test_token_required_when_configured(db_path: Path) -> None:
    token = "s3cret-receiver-token"
    with Receiver(db_path, http_port=0, grpc_port=0, token=token) as receiver:
        body = proto_request([proto_span()]).SerializeToString()
        headers = {"Content-Type": "application/x-protobuf"}
        refused = httpx.post(receiver.http_endpoint, content=body, headers=headers)
        assert refused.status_code == 401
        assert token not in refused.text

        with grpc.insecure_channel(receiver.grpc_endpoint) as channel:
            with pytest.raises(grpc.RpcError) as info:
                TraceServiceStub(channel).Export(proto_request([proto_span()]))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

        authorized = {"Authorization": f"Bearer {token}"}
        send_calls(HttpExporter(endpoint=receiver.http_endpoint, headers=authorized), 10)
        send_calls(
            GrpcExporter(
                endpoint=receiver.grpc_endpoint,
                insecure=True,
                headers={"authorization": f"Bearer {token}"},
            ),
            10,
        )
        assert span_count(db_path) == 20
    assert token not in Path(db_path).read_bytes().decode("latin-1")


def _hold_write_lock(db: Path) -> subprocess.Popen[str]:
    """Another process holding the database open read-write (as a stray writer would)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "sys.stdin.readline()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _wait_until(condition: object, what: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_full_queue_answers_503_retry_after_and_shutdown_drains(db_path: Path) -> None:
    """With the file held by another process the writer waits; one batch in the writer, one
    queued (queue_batches=1), the next request is refused with 503 + Retry-After. Stopping the
    receiver then writes both accepted batches once the file is free."""
    from clauditor.schema import empty_calls
    from clauditor.store import write_calls

    write_calls(db_path, empty_calls())  # create and migrate the file first
    receiver = Receiver(db_path, http_port=0, grpc_port=None, queue_batches=1).start()
    holder = _hold_write_lock(db_path)
    headers = {"Content-Type": "application/x-protobuf"}
    bodies = [proto_request([proto_span() for _ in range(4)]).SerializeToString() for _ in range(2)]
    answers: list[int] = []

    def post(body: bytes) -> None:
        answers.append(
            httpx.post(
                receiver.http_endpoint, content=body, headers=headers, timeout=60
            ).status_code
        )

    first = threading.Thread(target=post, args=(bodies[0],))
    first.start()
    _wait_until(
        lambda: receiver.stats.spans_received == 4 and receiver.writer.depth == 0, "writer busy"
    )
    second = threading.Thread(target=post, args=(bodies[1],))
    second.start()
    _wait_until(lambda: receiver.writer.depth == 1, "second batch queued")

    refused = httpx.post(
        receiver.http_endpoint,
        content=proto_request([proto_span()]).SerializeToString(),
        headers=headers,
    )
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert "queue full" in Status.FromString(refused.content).message

    stopper = threading.Thread(target=receiver.stop)
    stopper.start()
    holder.communicate("\n", timeout=30)  # free the file: the queued writes go through
    for thread in (first, second, stopper):
        thread.join(60)
    assert answers == [200, 200]
    assert span_count(db_path) == 8


def test_healthz_reports_counts(receiver: Receiver) -> None:
    url = receiver.http_endpoint.replace("/v1/traces", "/healthz")
    body = proto_request([proto_span(), proto_span(call_attributes(gen_ai__request__model=5))])
    httpx.post(
        receiver.http_endpoint,
        content=body.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    health = httpx.get(url).json()
    assert health["status"] == "ok"
    assert (health["spans_received"], health["spans_rejected"], health["inserted"]) == (2, 1, 1)


def test_grpc_refuses_oversized_and_compressed_bombs_and_stays_up(db_path: Path) -> None:
    limit = 1024 * 1024
    with Receiver(db_path, http_port=None, grpc_port=0, max_body_bytes=limit) as receiver:
        # 8 MiB of one repeated letter: a few KiB on the wire with gzip, over the limit inflated.
        bomb = proto_request([proto_span(call_attributes(note="A" * (8 * 1024 * 1024)))])
        good = proto_request([proto_span()])
        with grpc.insecure_channel(
            receiver.grpc_endpoint, compression=grpc.Compression.Gzip
        ) as channel:
            stub = TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(bomb)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            answer = stub.Export(good)
        assert answer.partial_success.rejected_spans == 0
        assert span_count(db_path) == 1


def test_taken_port_is_a_clear_error(receiver: Receiver, tmp_path: Path) -> None:
    from clauditor.errors import ClauditorError

    second = Receiver(tmp_path / "other.duckdb", http_port=receiver.http_port, grpc_port=None)
    with pytest.raises(ClauditorError, match="cannot listen for OTLP/HTTP"):
        second.start()
    third = Receiver(tmp_path / "other.duckdb", http_port=None, grpc_port=receiver.grpc_port)
    with pytest.raises(ClauditorError, match="cannot listen for OTLP/gRPC"):
        third.start()
