"""Slow, silent and vanishing clients against a running receiver: real exporters' spans still
land while hundreds of hostile connections are held open, stalled connections are closed by
the server, and a client that drops mid-body is one log line and a count.

The hostile clients are raw sockets on 127.0.0.1, the same address as the real sender (so a
per-address limit would not tell them apart). Bounds are generous: the checks are "it lands"
and "it is closed eventually", never a speed.
"""

from __future__ import annotations

import logging
import resource
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import h2.config
import h2.connection
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

from clauditor.ingest.serve import Receiver

from .receiver_support import send_calls, span_count

HOSTILE = 300
EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(autouse=True)
def _enough_open_files() -> Iterator[None]:
    """Room for the hostile sockets and the server's ends of them in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * HOSTILE + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _hold(port: int, first_bytes: bytes, count: int = HOSTILE) -> list[socket.socket]:
    """``count`` connections to ``port`` that each send ``first_bytes`` and then nothing."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first_bytes:
            sock.sendall(first_bytes)
        held.append(sock)
    return held


def _release(held: list[socket.socket]) -> None:
    for sock in held:
        sock.close()


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the peer closes ``sock`` within ``within_s`` (whatever it sends first)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:  # reset: closed too
            return True
    return False


def _stalled_grpc_call() -> bytes:
    """An HTTP/2 preface, SETTINGS and the HEADERS of an Export call, whose message never
    follows."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", EXPORT_PATH),
            (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    return conn.data_to_send()


def _wait_for(condition: Callable[[], bool], what: str, within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        time.sleep(0.05)


def test_http_export_lands_while_300_half_open_requests_are_held(db_path: Path) -> None:
    # A header timeout longer than the test: the hostile connections stay open throughout.
    with Receiver(db_path, http_port=0, grpc_port=None, header_timeout_s=120) as receiver:
        assert receiver.http_port is not None
        held = _hold(receiver.http_port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        try:
            started = time.monotonic()
            send_calls(HttpExporter(endpoint=receiver.http_endpoint, timeout=10), 20)
            landed_after_s = time.monotonic() - started
            assert span_count(db_path) == 20, f"batch lost ({landed_after_s:.1f} s)"
            assert not any(_closed_by_server(sock, 0) for sock in held[:5])  # still held
        finally:
            _release(held)


@pytest.mark.parametrize(
    "first_bytes",
    [b"", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _stalled_grpc_call()],
    ids=["no-preface", "preface-then-silence", "call-without-message"],
)
def test_grpc_export_lands_while_300_stalled_connections_are_held(
    db_path: Path, first_bytes: bytes
) -> None:
    with Receiver(
        db_path, http_port=None, grpc_port=0, header_timeout_s=120, body_timeout_s=120
    ) as receiver:
        assert receiver.grpc_port is not None
        held = _hold(receiver.grpc_port, first_bytes)
        try:
            exporter = GrpcExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=10)
            send_calls(exporter, 20, feature="grpc-under-attack")
            assert span_count(db_path) == 20
        finally:
            _release(held)


def test_http_slow_headers_client_is_disconnected(db_path: Path) -> None:
    """A client trickling its headers a byte at a time is cut off at the header deadline: the
    deadline runs from the connect, each byte does not extend it."""
    with Receiver(db_path, http_port=0, grpc_port=None, header_timeout_s=1) as receiver:
        assert receiver.http_port is not None
        sock = socket.create_connection(("127.0.0.1", receiver.http_port), timeout=10)
        try:
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            closed = False
            deadline = time.monotonic() + 20
            while not closed and time.monotonic() < deadline:
                try:
                    sock.sendall(b"X")  # one byte of a header name every 0.25 s
                except OSError:
                    closed = True
                    break
                closed = _closed_by_server(sock, 0.25)
            assert closed, "the server kept a trickling client for 20 s"
        finally:
            sock.close()
        # It still serves.
        health = httpx.get(receiver.http_endpoint.replace("/v1/traces", "/healthz"))
        assert health.json()["status"] == "ok"


def test_grpc_stalled_connections_are_disconnected(db_path: Path) -> None:
    """No handshake, a preface and then silence, or a call whose message never comes: each is
    closed by the server (the call first answered DEADLINE_EXCEEDED, then the idle connection
    closed)."""
    with Receiver(
        db_path, http_port=None, grpc_port=0, header_timeout_s=1, body_timeout_s=1
    ) as receiver:
        assert receiver.grpc_port is not None
        held = [
            *_hold(receiver.grpc_port, b"", 1),
            *_hold(receiver.grpc_port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1),
            *_hold(receiver.grpc_port, _stalled_grpc_call(), 1),
        ]
        try:
            assert [_closed_by_server(sock, 20) for sock in held] == [True, True, True]
        finally:
            _release(held)
        assert receiver.stats.requests_too_slow == 1


def test_grpc_client_dropping_mid_call_is_one_log_line_and_a_count(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with Receiver(db_path, http_port=None, grpc_port=0) as receiver:
        assert receiver.grpc_port is not None
        (sock,) = _hold(receiver.grpc_port, _stalled_grpc_call(), 1)
        _wait_for(lambda: receiver.stats.requests == 1, "the call started")
        sock.close()
        _wait_for(lambda: receiver.stats.disconnected == 1, "the dropped call counted")
    assert "Traceback" not in caplog.text
    lines = [record.getMessage() for record in caplog.records if "went away" in record.message]
    assert len(lines) == 1 and "\n" not in lines[0], lines


def test_grpc_garbage_message_is_refused_with_a_reason_and_no_traceback(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with (
        Receiver(db_path, http_port=None, grpc_port=0) as receiver,
        grpc.insecure_channel(receiver.grpc_endpoint) as channel,
    ):
        export = channel.unary_unary(EXPORT_PATH)  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\x00garbage", timeout=20)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid OTLP protobuf" in (info.value.details() or "")
    assert "Traceback" not in caplog.text


def test_http_stalled_body_is_answered_408(db_path: Path) -> None:
    with Receiver(db_path, http_port=0, grpc_port=None, body_timeout_s=1) as receiver:
        assert receiver.http_port is not None
        sock = socket.create_connection(("127.0.0.1", receiver.http_port), timeout=20)
        try:
            sock.sendall(
                b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"resourceSpans"'
            )
            answer = b""
            while chunk := sock.recv(65536):  # the server closes after its answer
                answer += chunk
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"body not received within 1 s" in answer
        assert receiver.stats.requests_too_slow == 1


def test_client_dropping_mid_body_is_one_log_line_and_a_count(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with Receiver(db_path, http_port=0, grpc_port=None) as receiver:
        assert receiver.http_port is not None
        health_url = receiver.http_endpoint.replace("/v1/traces", "/healthz")
        sock = socket.create_connection(("127.0.0.1", receiver.http_port), timeout=10)
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 100000\r\n\r\n0123456789"
        )
        sock.close()
        _wait_for(
            lambda: httpx.get(health_url).json().get("disconnected") == 1,
            "the dropped client counted as disconnected",
        )
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info]
    lines = [record.getMessage() for record in caplog.records if "went away" in record.message]
    assert len(lines) == 1 and "\n" not in lines[0] and len(lines[0]) < 200, lines
    assert "after 10 body bytes" in lines[0]
    assert span_count(db_path) == 0


def test_healthz_shows_counters_only_with_the_token(db_path: Path) -> None:
    token = "s3cret-health-token"
    with Receiver(db_path, http_port=0, grpc_port=None, token=token) as receiver:
        url = receiver.http_endpoint.replace("/v1/traces", "/healthz")
        anonymous = httpx.get(url)
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "ok"}
        wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
        assert wrong.json() == {"status": "ok"}
        details = httpx.get(url, headers={"Authorization": f"Bearer {token}"}).json()
        assert details["status"] == "ok"
        assert {"requests", "spans_received", "disconnected", "queued_batches"} <= set(details)
