"""A local fake of the Anthropic API, for tests that drive the real SDK over real HTTP.

The server listens on 127.0.0.1 (a random port) and speaks the wire format the SDK parses:

* ``POST /v1/messages`` -> a Message JSON body, or (``"stream": true``) Server-Sent Events with the
  real event names and usage placement: ``message_start`` carries the input counts and a
  placeholder ``output_tokens``; ``message_delta.usage`` carries the cumulative, final counts.
* Vertex AI's ``POST /projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict``
  (``:streamRawPredict``) answer as ``/v1/messages`` does, for ``anthropic.AnthropicVertex``.
* ``POST /v1/messages/count_tokens`` -> ``{"input_tokens": N}``
* ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}`` and the ``results_url`` JSONL.
* every response has a ``request-id`` header; errors have the real envelope
  ``{"type": "error", "error": {"type": ..., "message": ...}}`` and may carry ``retry-after``.

Tests script it with a queue of :class:`Reply` objects (``server.enqueue(...)``); when the queue
is empty a plain successful reply is given. Every request is recorded in ``server.requests``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeAnthropic",
    "RecordedRequest",
    "Reply",
    "batch_results",
    "container",
    "error",
    "message",
    "message_body",
    "server_tool_use_block",
    "stream",
    "stream_events",
    "usage",
]

_ids = itertools.count(1)


def usage(
    input_tokens: int = 12,
    output_tokens: int = 34,
    *,
    cache_read: int = 0,
    cache_5m: int = 0,
    cache_1h: int = 0,
    service_tier: str | None = "standard",
    **extra: Any,
) -> dict[str, Any]:
    """A ``usage`` object in Anthropic's meaning (``input_tokens`` excludes the cache counts)."""
    body: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_5m + cache_1h,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_5m,
            "ephemeral_1h_input_tokens": cache_1h,
        },
    }
    if service_tier is not None:
        body["service_tier"] = service_tier
    body.update(extra)
    return body


def container(container_id: str = "container_fake01") -> dict[str, Any]:
    """A Message's ``container`` (present when the code execution tool ran)."""
    return {"id": container_id, "expires_at": "2026-01-01T01:00:00Z"}


def server_tool_use_block(name: str) -> dict[str, Any]:
    """A ``server_tool_use`` content block (``web_search``, ``code_execution``, ...)."""
    return {"type": "server_tool_use", "id": f"srvtoolu_fake{next(_ids):06d}", "name": name,
            "input": {}}  # fmt: skip


def message_body(
    *,
    model: str = "claude-haiku-4-5-20251001",
    text: str = "Hello from the fake.",
    stop_reason: str = "end_turn",
    usage_: dict[str, Any] | None = None,
    msg_id: str | None = None,
    tool_uses: tuple[str, ...] = (),
    container_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete Message JSON body; ``tool_uses`` names server tool use blocks put before the
    text, ``container_`` is the code execution container (see :func:`container`)."""
    body = {
        "id": msg_id or f"msg_fake{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            *(server_tool_use_block(name) for name in tool_uses),
            {"type": "text", "text": text},
        ],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_ if usage_ is not None else usage(),
    }
    if container_ is not None:
        body["container"] = container_
    return body


@dataclass
class Reply:
    """One scripted response.

    ``kind`` is ``json`` (``body`` is JSON-encoded), ``sse`` (``events`` is a list of
    ``(event_name, data)`` pairs; ``data`` None writes an event with no data line) or ``raw``.
    ``delay_s`` sleeps before answering (timeouts); ``event_delay_s`` sleeps between SSE events.
    ``drop_after`` closes the connection after that many SSE events (a cut stream).
    """

    status: int = 200
    kind: str = "json"
    body: Any = None
    events: list[tuple[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    event_delay_s: float = 0.0
    drop_after: int | None = None


def message(**kwargs: Any) -> Reply:
    """A 200 Message reply; keyword arguments as :func:`message_body` (``usage_`` for usage)."""
    return Reply(body=message_body(**kwargs))


def error(
    status: int, error_type: str, text: str = "fake error", *, retry_after: float | None = None
) -> Reply:
    """An error reply with the real envelope, optionally with a ``retry-after`` header (seconds)."""
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    body = {"type": "error", "error": {"type": error_type, "message": text}}
    return Reply(status=status, body=body, headers=headers)


def stream_events(
    *,
    model: str = "claude-haiku-4-5-20251001",
    chunks: tuple[str, ...] = ("Hel", "lo", "!"),
    start_usage: dict[str, Any] | None = None,
    final_usage: dict[str, Any] | None = None,
    stop_reason: str = "end_turn",
    ping: bool = True,
    tool_uses: tuple[str, ...] = (),
    container_: dict[str, Any] | None = None,
) -> list[tuple[str, Any]]:
    """The SSE event sequence of one streamed Message.

    ``start_usage`` is what ``message_start`` says (its ``output_tokens`` a placeholder, 1 by
    default); ``final_usage`` is the cumulative usage ``message_delta`` carries (with the final
    ``server_tool_use`` when the call used server tools). ``tool_uses`` are server tool use
    blocks streamed after the text; ``container_`` comes in ``message_delta``'s delta, as the
    API sends it.
    """
    start = start_usage if start_usage is not None else usage(output_tokens=1)
    final = final_usage if final_usage is not None else {"output_tokens": 201}
    body = message_body(model=model, usage_=start)
    body.update(content=[], stop_reason=None)
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": body})]
    events.append(
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
    )
    if ping:
        events.append(("ping", {"type": "ping"}))
    for chunk in chunks:
        delta = {"type": "text_delta", "text": chunk}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    for index, name in enumerate(tool_uses, 1):
        block = {"type": "content_block_start", "index": index,
                 "content_block": server_tool_use_block(name)}  # fmt: skip
        events.append(("content_block_start", block))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta: dict[str, Any] = {"stop_reason": stop_reason, "stop_sequence": None}
    if container_ is not None:
        delta["container"] = container_
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": final}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def stream(**kwargs: Any) -> Reply:
    """A 200 SSE reply; keyword arguments as :func:`stream_events`."""
    return Reply(kind="sse", events=stream_events(**kwargs))


def batch_results(results: list[dict[str, Any]]) -> Reply:
    """The JSONL body of a batch's results; each item ``{"custom_id":..., "result": {...}}``."""
    text = "".join(json.dumps(r) + "\n" for r in results)
    return Reply(kind="raw", body=text.encode(), headers={"content-type": "application/binary"})


@dataclass
class RecordedRequest:
    """A request the fake received: method, path, lower-cased headers and the decoded JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


class FakeAnthropic:
    """The fake API server. Use as a context manager or call :meth:`close`.

    ``base_url`` is what to give ``anthropic.Anthropic(base_url=...)``.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._batch_results: dict[str, Reply] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms per call

            def log_message(self, format: str, *args: Any) -> None:  # silence the test output
                pass

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_GET(self) -> None:
                fake._handle(self, "GET")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next /v1/messages (or count_tokens) requests with ``replies``, in order."""
        with self._lock:
            self._queue.extend(replies)

    def add_batch(self, batch_id: str, results: list[dict[str, Any]]) -> None:
        """Make ``batch_id`` an ended batch whose results are ``results``."""
        self._batch_results[batch_id] = batch_results(results)

    def close(self) -> None:
        """Stop the server."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- request handling -------------------------------------------------------------------

    def _next(self, default: Reply) -> Reply:
        with self._lock:
            return self._queue.popleft() if self._queue else default

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = handler.path.split("?")[0]
        self.requests.append(RecordedRequest(method, path, headers, body))

        vertex = path.startswith("/projects/") and path.endswith(("rawPredict", "RawPredict"))
        if method == "POST" and (path == "/v1/messages" or vertex):
            wants_stream = isinstance(body, dict) and body.get("stream") is True
            reply = self._next(stream() if wants_stream else message())
        elif method == "POST" and path == "/v1/messages/count_tokens":
            reply = self._next(Reply(body={"input_tokens": 42}))
        elif method == "POST" and path == "/v1/messages/batches":
            reply = Reply(body=self._batch_body("msgbatch_fake_created", ended=False))
        elif method == "GET" and path.startswith("/v1/messages/batches/"):
            rest = path.removeprefix("/v1/messages/batches/")
            batch_id, _, tail = rest.partition("/")
            if tail == "results" and batch_id in self._batch_results:
                reply = self._batch_results[batch_id]
            elif not tail and batch_id in self._batch_results:
                reply = Reply(body=self._batch_body(batch_id, ended=True))
            else:
                reply = error(404, "not_found_error", f"no batch {batch_id}")
        else:
            reply = error(404, "not_found_error", f"no route {method} {path}")
        self._send(handler, reply)

    def _batch_body(self, batch_id: str, *, ended: bool) -> dict[str, Any]:
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0,
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "ended_at": "2026-01-01T00:10:00Z" if ended else None,
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-02T00:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch_id}/results"
            if ended
            else None,
        }

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay_s:
            time.sleep(reply.delay_s)
        try:
            handler.send_response(reply.status)
            handler.send_header("request-id", f"req_fake{next(_ids):06d}")
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            if reply.kind == "sse":
                handler.send_header("content-type", "text/event-stream")
                handler.send_header("connection", "close")
                handler.end_headers()
                for n, (name, data) in enumerate(reply.events):
                    if reply.drop_after is not None and n >= reply.drop_after:
                        break
                    chunk = f"event: {name}\n"
                    if data is not None:
                        chunk += f"data: {json.dumps(data)}\n"
                    handler.wfile.write((chunk + "\n").encode())
                    handler.wfile.flush()
                    if reply.event_delay_s:
                        time.sleep(reply.event_delay_s)
                handler.close_connection = True
                return
            if reply.kind == "raw":
                payload = reply.body if isinstance(reply.body, bytes) else str(reply.body).encode()
                if "content-type" not in reply.headers:
                    handler.send_header("content-type", "text/plain")
            else:
                payload = json.dumps(reply.body).encode()
                handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer
