"""``clauditor serve``: the OTLP receivers (HTTP on 4318, gRPC on 4317) in front of the single
DuckDB writer, so many services can send spans to one file. Traces, logs and
metrics are all taken (see :mod:`.receiver`).

:class:`Receiver` runs both servers and the writer inside the current process (tests and
benchmarks use it directly); :func:`serve` runs one until SIGTERM or SIGINT, then shuts down
gracefully: stop accepting connections, let in-flight requests finish (each waits for its
commit), write whatever is still queued, exit. ``python -m clauditor.ingest.serve --db FILE``
does the same without the CLI and prints one JSON line with the bound ports once listening.

Being the database's writer, a running receiver also ingests the span files that apps using
the default sink write beside the database, every couple of seconds (``.span_folder``).

Binds 127.0.0.1 unless told otherwise: exposing the receiver beyond the machine is a decision
(and then set the token: ``$CLAUDITOR_RECEIVER_TOKEN``).

Slow and half-open clients cannot starve it. OTLP/HTTP is served by Hypercorn, not uvicorn:
uvicorn has no deadline for request headers, and its connection limit (``limit_concurrency``)
counts connections, so ~260 sockets that send half a request line and stop made it answer every
real exporter 503. Under Hypercorn a connection must complete its request headers within
``header_timeout_s`` of connecting or of its previous answer (``keep_alive_timeout``: one timer
for both, not reset by each byte, so trickling does not extend it), headers are capped at
:data:`MAX_HEADER_BYTES`, and there is no connection cap to exhaust: the app caps requests whose
headers have arrived (``max_requests``) and the time their body may take (``body_timeout_s``).
OTLP/gRPC applies the same two timeouts (see :mod:`.grpc_receiver`). An attacker can still
use file descriptors for ``header_timeout_s`` each; :func:`serve` raises the soft descriptor
limit to the hard one.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, cast

import hypercorn.asyncio
import hypercorn.config
from hypercorn.typing import ASGIFramework

from clauditor.config import Config
from clauditor.errors import ClauditorError
from clauditor.ingest.grpc_receiver import GrpcReceiver
from clauditor.ingest.receiver import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REQUESTS,
    ReceiverStats,
    create_app,
)
from clauditor.ingest.span_folder import SERVE_INTERVAL_S, catch_up
from clauditor.ingest.writer import WriteQueue
from clauditor.semconv import ENV_RECEIVER_TOKEN

__all__ = ["DEFAULT_QUEUE_BATCHES", "Receiver", "serve"]

_log = logging.getLogger("clauditor.ingest.serve")

DEFAULT_QUEUE_BATCHES = 64
MAX_HEADER_BYTES = 16 * 1024  # request line + headers; more is answered 400 and closed
GRACEFUL_STOP_S = 30.0


class Receiver:
    """Both OTLP receivers and the writer, running in this process.

    ``http_port`` / ``grpc_port`` of 0 pick free ports (read them back after :meth:`start`);
    ``None`` disables that receiver. ``token``: require ``Authorization: Bearer <token>``.
    ``header_timeout_s``: a connection that has not sent its request headers (or HTTP/2
    handshake) this long after connecting or after its previous answer is closed, idle ones
    included. ``body_timeout_s``: a body (gRPC: request message) that has not fully arrived
    this long after its headers is refused (408 / DEADLINE_EXCEEDED). ``max_requests``: HTTP
    requests read and decoded at once. Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(
        self,
        db: str | Path,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = 4318,
        grpc_port: int | None = 4317,
        config: Config | None = None,
        token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        queue_batches: int = DEFAULT_QUEUE_BATCHES,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        max_requests: int = DEFAULT_MAX_REQUESTS,
    ) -> None:
        self.db = Path(db)
        self.host = host
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.config = config or Config()
        self.stats = ReceiverStats()
        self.writer = WriteQueue(
            self.db,
            prices=self.config.price_table(),
            max_batches=queue_batches,
        )
        self._token = token or None
        self._max_body_bytes = max_body_bytes
        self._header_timeout_s = header_timeout_s
        self._body_timeout_s = body_timeout_s
        self._max_requests = max_requests
        self._http_config: hypercorn.config.Config | None = None
        self._http_stop: asyncio.Event | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: GrpcReceiver | None = None
        self._span_files_stop = threading.Event()
        self._span_files: threading.Thread | None = None

    @property
    def http_endpoint(self) -> str:
        """The OTLP/HTTP traces URL (``http://host:port/v1/traces``)."""
        return f"http://{_url_host(self.host)}:{self.http_port}/v1/traces"

    @property
    def grpc_endpoint(self) -> str:
        """The OTLP/gRPC target (``host:port``)."""
        return f"{_url_host(self.host)}:{self.grpc_port}"

    def start(self) -> Receiver:
        """Start the writer and the servers; returns once both are listening. The span files
        apps write beside the database are ingested every few seconds (``.span_folder``)."""
        self.writer.start()
        self._span_files_stop.clear()
        self._span_files = threading.Thread(
            target=self._ingest_span_files, name="clauditor-span-files", daemon=True
        )
        self._span_files.start()
        features = tuple(self.config.feature_attributes)
        try:
            if self.http_port is not None:
                self._start_http(features)
            if self.grpc_port is not None:
                self._grpc = GrpcReceiver(
                    self.writer,
                    host=self.host,
                    port=self.grpc_port,
                    feature_attributes=features,
                    token=self._token,
                    stats=self.stats,
                    max_message_bytes=self._max_body_bytes,
                    header_timeout_s=self._header_timeout_s,
                    body_timeout_s=self._body_timeout_s,
                    claude_code_feature=self.config.claude_code.feature_attribute,
                ).start()
                self.grpc_port = self._grpc.port
        except BaseException:
            self.stop()
            raise
        return self

    def _start_http(self, features: tuple[str, ...]) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.http_port or 0))
        except OSError as exc:
            sock.close()
            raise ClauditorError(
                f"cannot listen for OTLP/HTTP on {self.host}:{self.http_port}: "
                f"{exc.strerror or exc} (another receiver or Collector on that port?)"
            ) from None
        sock.listen(1024)
        self.http_port = sock.getsockname()[1]
        app = create_app(
            self.writer,
            feature_attributes=features,
            token=self._token,
            max_body_bytes=self._max_body_bytes,
            stats=self.stats,
            healthy=self._healthy,
            max_requests=self._max_requests,
            body_timeout_s=self._body_timeout_s,
            claude_code_feature=self.config.claude_code.feature_attribute,
        )
        config = hypercorn.config.Config()
        config.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns the listening socket now
        config.backlog = 1024
        config.keep_alive_timeout = self._header_timeout_s
        config.h11_max_incomplete_size = MAX_HEADER_BYTES
        config.graceful_timeout = GRACEFUL_STOP_S
        config.include_server_header = False
        config.accesslog = None  # also keeps request headers (the token) out of any log
        config.errorlog = logging.getLogger("hypercorn.error")
        self._http_config = config
        started = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            stop = asyncio.Event()
            self._http_stop, self._http_loop = stop, asyncio.get_running_loop()

            async def until_stopped() -> None:
                started.set()  # Hypercorn awaits this once its server accepts connections
                await stop.wait()

            asgi = cast("ASGIFramework", app)  # Starlette is one; its hints are looser
            await hypercorn.asyncio.serve(asgi, config, shutdown_trigger=until_stopped)

        def main() -> None:
            try:
                asyncio.run(run())
            except BaseException as exc:
                failure.append(exc)
                started.set()

        thread = threading.Thread(target=main, name="otlp-http", daemon=True)
        self._http_thread = thread
        thread.start()
        started.wait()
        if failure:
            raise ClauditorError(
                f"OTLP/HTTP server on {self.host}:{self.http_port} did not start: {failure[0]}"
            )

    def _ingest_span_files(self) -> None:
        """The receiver is the writer: it takes the span folder's new lines itself."""
        while True:
            try:
                catch_up(self.db, config=self.config, engine="python")
            except Exception as exc:  # the files stay; the next round takes them
                _log.warning("span files of %s not ingested yet: %s", self.db, exc)
            if self._span_files_stop.wait(SERVE_INTERVAL_S):
                return

    def _healthy(self) -> bool:
        return self.writer._thread.is_alive()

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, write everything queued, stop the writer."""
        grpc_stopped = self._grpc.stop(grace_s) if self._grpc is not None else None
        http_running = self._http_thread is not None and self._http_thread.is_alive()
        if http_running and self._http_loop is not None and self._http_stop is not None:
            if self._http_config is not None:  # Hypercorn reads it when it starts stopping
                self._http_config.graceful_timeout = grace_s
            self._http_loop.call_soon_threadsafe(self._http_stop.set)
        if self._http_thread is not None:
            self._http_thread.join(grace_s + 5)
        if grpc_stopped is not None:
            concurrent.futures.wait([grpc_stopped], grace_s + 5)
        self._span_files_stop.set()
        if self._span_files is not None:
            self._span_files.join(grace_s + 5)
            self._span_files = None
        self.writer.close()
        self._http_config = self._http_stop = self._http_loop = None
        self._http_thread = self._grpc = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(
    db: Path,
    *,
    host: str = "127.0.0.1",
    http_port: int = 4318,
    grpc_port: int = 4317,
    config: Config | None = None,
    token_env: str = ENV_RECEIVER_TOKEN,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    queue_batches: int = DEFAULT_QUEUE_BATCHES,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    ready: Any = None,
) -> None:
    """Run the receivers until SIGTERM/SIGINT, then drain and return (call from the main thread).

    The bearer token, if any, is read from the environment variable ``token_env`` (empty or
    unset: no authentication). A port of 0 picks a free one; ``ready(receiver)`` is called once
    both servers listen (the CLI prints the endpoints from it). The timeouts are those of
    :class:`Receiver`. Raises this process's soft limit of open files to the hard limit: every
    connection is one, and half-open ones are only closed after ``header_timeout_s``.
    """
    _raise_open_files_limit()
    receiver = Receiver(
        db,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        config=config,
        token=os.environ.get(token_env) or None,
        max_body_bytes=max_body_bytes,
        queue_batches=queue_batches,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        receiver.start()
        if ready is not None:
            ready(receiver)
        while not stop.wait(0.5):
            pass
        _log.info("signal received: draining the write queue")
    finally:
        receiver.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            _log.warning("cannot raise the open-files limit from %s to %s: %s", soft, hard, exc)


def main(argv: list[str] | None = None) -> int:
    """``python -m clauditor.ingest.serve``: the receivers without the CLI (tests, benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m clauditor.ingest.serve")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=4318)
    parser.add_argument("--grpc-port", type=int, default=4317)
    parser.add_argument("--queue-batches", type=int, default=DEFAULT_QUEUE_BATCHES)
    parser.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_S)
    parser.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S)
    args = parser.parse_args(argv)

    def ready(receiver: Receiver) -> None:
        line = {"http_port": receiver.http_port, "grpc_port": receiver.grpc_port}
        print(json.dumps(line), flush=True)

    serve(
        args.db,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        queue_batches=args.queue_batches,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        ready=ready,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
