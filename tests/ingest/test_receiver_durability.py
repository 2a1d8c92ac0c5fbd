"""`kill -9` of the receiver mid-stream, a restart, and a sender that retries every request it
has no answer for: every span ends up stored exactly once.

Deterministic: the test releases requests to the sender in steps and kills the receiver with
the last released one in flight or about to be sent, never after a sleep; exactly where in its
work the receiver dies varies, and any point must be safe.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from .receiver_support import proto_request, proto_span, query

REQUESTS = 40
SPANS_PER_REQUEST = 250


def _start_server(db: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "clauditor.ingest.serve", "--db", str(db)]
        + ["--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    ports = json.loads(server.stdout.readline())
    return server, f"http://127.0.0.1:{ports['http_port']}/v1/traces"


class RetryingSender(threading.Thread):
    """Sends each body until it gets a 200, following the receiver to its new address."""

    def __init__(self, bodies: list[bytes], url: str) -> None:
        super().__init__(daemon=True)
        self.bodies = bodies
        self.url = url
        self.acked = 0
        self.retries = 0
        # The test hands out requests through this gate, so that each kill is sure to fall
        # while some requests are still unsent or unanswered, however fast the machine is.
        self.gate = threading.Semaphore(0)

    def run(self) -> None:
        headers = {"Content-Type": "application/x-protobuf"}
        with httpx.Client(timeout=60) as client:
            for body in self.bodies:
                self.gate.acquire()
                while True:
                    try:
                        response = client.post(self.url, content=body, headers=headers)
                        if response.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    self.retries += 1
                    time.sleep(0.02)  # pacing only; correctness never depends on it
                self.acked += 1


def _wait_for_acks(sender: RetryingSender, at_least: int) -> None:
    deadline = time.monotonic() + 120  # a bound, not a timing assertion
    while sender.acked < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} answers after 120 s"
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_and_restart_keeps_every_span_exactly_once(db_path: Path) -> None:
    requests = [
        proto_request([proto_span() for _ in range(SPANS_PER_REQUEST)]) for _ in range(REQUESTS)
    ]
    expected = {
        span.span_id.hex() for r in requests for span in r.resource_spans[0].scope_spans[0].spans
    }
    server, url = _start_server(db_path)
    sender = RetryingSender([r.SerializeToString() for r in requests], url)
    sender.start()
    try:
        released = 0
        killed_with_acked = []
        for kill_at in (10, 25):
            sender.gate.release(kill_at - released)
            released = kill_at
            # Kill with the last released request in flight, or about to be sent.
            _wait_for_acks(sender, kill_at - 1)
            killed_with_acked.append(sender.acked)
            os.kill(server.pid, signal.SIGKILL)
            server.wait(30)
            server, sender.url = _start_server(db_path)
        sender.gate.release(REQUESTS - released)
        sender.join(180)
        assert not sender.is_alive()
    finally:
        server.send_signal(signal.SIGTERM)  # graceful: drains, then exits 0
        assert server.wait(60) == 0

    assert sender.acked == REQUESTS
    # Both kills fell mid-stream (whether a request was in flight at that instant is up to the
    # scheduler, so it is not asserted: any point must be safe).
    assert all(acked < REQUESTS for acked in killed_with_acked)
    rows = query(db_path, "SELECT span_id FROM calls")
    assert len(rows) == len(expected)  # no duplicates
    assert {row[0] for row in rows} == expected  # none lost
