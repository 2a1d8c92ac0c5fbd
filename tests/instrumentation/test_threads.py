"""No thread, no event loop and no database I/O per call: the export runs on the SDK's worker."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import duckdb
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from clauditor.ingest.exporter import DuckDBSpanExporter
from clauditor.instrumentation import AnthropicInstrumentor
from tests.instrumentation.conftest import API_KEY, SDK_HAS_SPANS

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "hi"}]
N = 40


class ThreadNotingExporter(DuckDBSpanExporter):
    """The real DuckDB exporter, noting which thread each export (and so each write) runs on."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, service="svc")
        self.threads: set[int] = set()

    def export(self, spans: Any) -> Any:
        self.threads.add(threading.get_ident())
        return super().export(spans)


def _setup(tmp_path: Path) -> tuple[TracerProvider, ThreadNotingExporter]:
    provider = TracerProvider()
    exporter = ThreadNotingExporter(tmp_path / "calls.duckdb")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=20))
    AnthropicInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    return provider, exporter


def _client(fake: Any, mode: str, provider: TracerProvider) -> anthropic.Anthropic:
    kw: dict[str, Any] = {"base_url": fake.base_url, "api_key": API_KEY, "max_retries": 0}
    if SDK_HAS_SPANS:
        kw["open_telemetry"] = {"tracer_provider": provider} if mode == "native" else False
    return anthropic.Anthropic(**kw)


def _calls(client: anthropic.Anthropic, n: int) -> None:
    for _ in range(n):
        client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        for _event in client.messages.create(
            model=MODEL, max_tokens=8, messages=MESSAGES, stream=True
        ):
            pass


def test_calls_start_no_thread_and_no_event_loop(fake, mode, tmp_path, monkeypatch) -> None:
    provider, _ = _setup(tmp_path)
    try:
        client = _client(fake, mode, provider)
        _calls(client, 1)  # warm up: the worker thread and the connection exist from here on
        caller = threading.current_thread()
        started: list[str] = []
        loops: list[str] = []
        real_start = threading.Thread.start

        def noting_start(thread: threading.Thread) -> None:
            if threading.current_thread() is caller:
                started.append(thread.name)
            real_start(thread)

        monkeypatch.setattr(threading.Thread, "start", noting_start)
        monkeypatch.setattr(asyncio, "run", lambda *a, **k: loops.append("run"))
        monkeypatch.setattr(asyncio, "new_event_loop", lambda *a, **k: loops.append("loop"))
        before = {t.ident for t in threading.enumerate()}
        _calls(client, N)
        after = threading.enumerate()
    finally:
        monkeypatch.undo()
        AnthropicInstrumentor().uninstrument()
        provider.shutdown()
    assert started == [] and loops == []
    # Threads that appeared meanwhile are the fake server's handlers, never the app's own.
    new = [t.name for t in after if t.ident not in before]
    assert all("process_request" in name for name in new), new


def test_database_writes_happen_on_the_worker_thread(fake, mode, tmp_path) -> None:
    provider, exporter = _setup(tmp_path)
    try:
        _calls(_client(fake, mode, provider), N // 4)
        deadline = time.monotonic() + 20
        while exporter.written < 2 * (N // 4) and time.monotonic() < deadline:
            time.sleep(0.02)  # the worker exports on its schedule; no flush from this thread
        assert exporter.written == 2 * (N // 4)
        assert exporter.threads and threading.get_ident() not in exporter.threads
    finally:
        AnthropicInstrumentor().uninstrument()
        provider.shutdown()
    con = duckdb.connect(str(tmp_path / "calls.duckdb"), read_only=True)
    (count,) = con.execute("SELECT count(*) FROM calls").fetchall()[0]
    con.close()
    assert count == 2 * (N // 4)
