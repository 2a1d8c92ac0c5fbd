"""``clauditor serve``: the OTLP receivers (HTTP on 4318, gRPC on 4317) in front of the single
DuckDB writer, so many services can send spans to one file (DESIGN §6).

:class:`Receiver` runs both servers and the writer inside the current process (tests and
benchmarks use it directly); :func:`serve` runs one until SIGTERM or SIGINT, then shuts down
gracefully: stop accepting connections, let in-flight requests finish (each waits for its
commit), write whatever is still queued, exit. ``python -m clauditor.ingest.serve --db FILE``
does the same without the CLI and prints one JSON line with the bound ports once listening.

Binds 127.0.0.1 unless told otherwise: exposing the receiver beyond the machine is a decision
(and then set the token: ``$CLAUDITOR_RECEIVER_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from clauditor.config import Config
from clauditor.errors import ClauditorError
from clauditor.semconv import ENV_RECEIVER_TOKEN

from .grpc_receiver import start_grpc_server
from .receiver import DEFAULT_MAX_BODY_BYTES, ReceiverStats, create_app
from .writer import WriteQueue

__all__ = ["DEFAULT_QUEUE_BATCHES", "Receiver", "serve"]

_log = logging.getLogger("clauditor.ingest.serve")

DEFAULT_QUEUE_BATCHES = 64
MAX_HTTP_CONNECTIONS = 256  # beyond this uvicorn answers 503 itself


class Receiver:
    """Both OTLP receivers and the writer, running in this process.

    ``http_port`` / ``grpc_port`` of 0 pick free ports (read them back after :meth:`start`);
    ``None`` disables that receiver. ``token``: require ``Authorization: Bearer <token>``.
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
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
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: Any = None

    @property
    def http_endpoint(self) -> str:
        """The OTLP/HTTP traces URL (``http://host:port/v1/traces``)."""
        return f"http://{_url_host(self.host)}:{self.http_port}/v1/traces"

    @property
    def grpc_endpoint(self) -> str:
        """The OTLP/gRPC target (``host:port``)."""
        return f"{_url_host(self.host)}:{self.grpc_port}"

    def start(self) -> Receiver:
        """Start the writer and the servers; returns once both are listening."""
        self.writer.start()
        features = tuple(self.config.feature_attributes)
        try:
            if self.http_port is not None:
                self._start_http(features)
            if self.grpc_port is not None:
                self._grpc, self.grpc_port = start_grpc_server(
                    self.writer,
                    host=self.host,
                    port=self.grpc_port,
                    feature_attributes=features,
                    token=self._token,
                    stats=self.stats,
                    max_message_bytes=self._max_body_bytes,
                )
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
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,  # also keeps request headers (the token) out of any log
            lifespan="off",
            limit_concurrency=MAX_HTTP_CONNECTIONS,
            timeout_graceful_shutdown=30,
            server_header=False,
        )
        server = uvicorn.Server(config)
        self._http = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="otlp-http", daemon=True
        )
        self._http_thread = thread
        thread.start()
        # uvicorn sets `started` once it serves; a failure ends the thread first.
        while not server.started and thread.is_alive():
            thread.join(0.01)
        if not server.started:
            raise ClauditorError(f"OTLP/HTTP server on {self.host}:{self.http_port} did not start")

    def _healthy(self) -> bool:
        return self.writer._thread.is_alive()

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, write everything queued, stop the writer."""
        grpc_stopped = self._grpc.stop(grace_s) if self._grpc is not None else None
        if self._http is not None:
            self._http.should_exit = True
        if self._http_thread is not None:
            self._http_thread.join(grace_s + 5)
        if grpc_stopped is not None:
            grpc_stopped.wait(grace_s + 5)
        self.writer.close()
        self._http = self._http_thread = self._grpc = None

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
    ready: Any = None,
) -> None:
    """Run the receivers until SIGTERM/SIGINT, then drain and return (call from the main thread).

    The bearer token, if any, is read from the environment variable ``token_env`` (empty or
    unset: no authentication). A port of 0 picks a free one; ``ready(receiver)`` is called once
    both servers listen (the CLI prints the endpoints from it).
    """
    receiver = Receiver(
        db,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        config=config,
        token=os.environ.get(token_env) or None,
        max_body_bytes=max_body_bytes,
        queue_batches=queue_batches,
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


def main(argv: list[str] | None = None) -> int:
    """``python -m clauditor.ingest.serve``: the receivers without the CLI (tests, benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m clauditor.ingest.serve")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=4318)
    parser.add_argument("--grpc-port", type=int, default=4317)
    parser.add_argument("--queue-batches", type=int, default=DEFAULT_QUEUE_BATCHES)
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
        ready=ready,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
