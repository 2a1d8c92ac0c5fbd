"""A local stand-in for Slack's incoming webhooks (and any JSON webhook) on 127.0.0.1.

It validates every payload the way Slack would refuse it (structure and size limits) and
answers ``400 invalid_payload`` when it is wrong. Tests script the answers: ``server.script``
is a list consumed one per request, each ``(status, headers)`` or ``"slow"`` (hold the request
until the test ends, so the client times out); an empty script answers ``200 ok``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLACK_LIMITS = {"header": 150, "section": 3000, "fields": 10, "field": 2000, "blocks": 50}


def slack_problems(payload: Any) -> list[str]:
    """Why Slack would reject ``payload`` (empty when it is acceptable)."""
    problems = []
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]
    if not isinstance(payload.get("text"), str) or not payload["text"].strip():
        problems.append("no text fallback")
    blocks = payload.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        return [*problems, "no blocks"]
    if len(blocks) > SLACK_LIMITS["blocks"]:
        problems.append(f"{len(blocks)} blocks")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            text = block.get("text", {})
            if text.get("type") != "plain_text":
                problems.append(f"block {i}: header text must be plain_text")
            if not 0 < len(text.get("text", "")) <= SLACK_LIMITS["header"]:
                problems.append(f"block {i}: header length {len(text.get('text', ''))}")
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"block {i}: section without text or fields")
            if "text" in block:
                text = block["text"]
                if text.get("type") not in ("mrkdwn", "plain_text"):
                    problems.append(f"block {i}: bad text type")
                if not 0 < len(text.get("text", "")) <= SLACK_LIMITS["section"]:
                    problems.append(f"block {i}: section text length {len(text.get('text', ''))}")
            fields = block.get("fields", [])
            if len(fields) > SLACK_LIMITS["fields"]:
                problems.append(f"block {i}: {len(fields)} fields")
            for f in fields:
                if not 0 < len(f.get("text", "")) <= SLACK_LIMITS["field"]:
                    problems.append(f"block {i}: field length {len(f.get('text', ''))}")
        elif kind == "context":
            elements = block.get("elements", [])
            if not 0 < len(elements) <= 10:
                problems.append(f"block {i}: {len(elements)} context elements")
        elif kind != "divider":
            problems.append(f"block {i}: unexpected block type {kind!r}")
    return problems


class FakeWebhook:
    """The server; ``received`` holds every valid payload, ``requests`` every request path."""

    def __init__(self, *, slack: bool = True) -> None:
        self.slack = slack
        self.script: list[Any] = []
        self.received: list[dict[str, Any]] = []
        self.rejected: list[list[str]] = []
        self.requests = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with fake._lock:
                    fake.requests += 1
                    step = fake.script.pop(0) if fake.script else (200, {})
                if step == "slow":
                    fake.release.wait(10)
                    step = (200, {})
                status, headers = step
                if status == 200:
                    try:
                        payload = json.loads(body)
                    except ValueError:
                        payload = None
                    problems = slack_problems(payload) if fake.slack else []
                    if payload is None:
                        problems = ["not JSON"]
                    with fake._lock:
                        if problems:
                            fake.rejected.append(problems)
                        else:
                            fake.received.append(payload)
                    if problems:
                        status = 400
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                text = b"ok" if status == 200 else b"invalid_payload" if status == 400 else b"err"
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (a timeout test)
                    self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        # The path stands in for the secret part of a real webhook URL.
        self.url = f"http://127.0.0.1:{port}/services/T0FAKE/B0FAKE/s3cr3tT0kenXYZ"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
