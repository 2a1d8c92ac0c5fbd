"""Each call once: two instrumentations seeing one call make one row, one call's dollars.

The real OpenInference instrumentor and the anthropic SDK's own spans (the SDK traces a call
when it is given a tracer provider) around the real SDK, talking HTTP to the local fake
Anthropic server; the spans go through the in-process exporter (one export per batch, or one
per span, so that the two spans of a call meet in the store) and through a real OTLP exporter
to the real receiver. OpenInference records no message id, so the two spans meet by the
in-trace rule (the SDK's span is nested in OpenInference's). Then the cases that must stay
apart: identical calls side by side, and one message id in two services.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import polars as pl
import pytest
from openinference.instrumentation import using_metadata
from openinference.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanProcessor,
)

from clauditor.ingest import ingest_paths
from clauditor.ingest.exporter import DuckDBSpanExporter
from clauditor.ingest.normalize import one_row_per_call
from clauditor.ingest.serve import Receiver
from clauditor.store import load_calls
from tests.fakeanthropic import FakeAnthropic, error, message, usage

from .otlp_fixtures import SDK_CACHED_CALL, line, span

MESSAGES = [{"role": "user", "content": "Hello"}]
# claude-haiku-4-5: $1 / MTok input, $5 output, $0.10 cache read:
# 100 uncached x 1 + 20 output x 5 + 50 cache read x 0.10 = 205 per MTok.
ONE_CALL_USD = 205 / 1e6


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def _traced(
    processor: SpanProcessor, service: str = "support-bot"
) -> tuple[TracerProvider, Callable[[FakeAnthropic], anthropic.Anthropic], AnthropicInstrumentor]:
    """A provider with both instrumentations on it: OpenInference's wrapper, and a client
    factory whose clients make the SDK's own spans."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=provider)

    def client(fake: FakeAnthropic) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key="sk-ant-test-key",
            base_url=fake.base_url,
            max_retries=0,
            open_telemetry={"tracer_provider": provider},
        )

    return provider, client, instrumentor


def _two_calls(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    """A priced call tagged with a feature, and a rate-limited call (no message id)."""
    fake.enqueue(message(model="claude-haiku-4-5", usage_=usage(100, 20, cache_read=50)))
    with using_metadata({"feature": "summarize"}):
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)
    fake.enqueue(error(429, "rate_limit_error"))
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)


def _export(exporter: SpanExporter, batched: bool, fake: FakeAnthropic) -> None:
    processor = BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
    provider, client, instrumentor = _traced(processor)
    try:
        _two_calls(client(fake), fake)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def _assert_one_row_per_call(db: Path) -> None:
    rows = load_calls(db).sort("start_time")
    assert rows.height == 2, rows.select("source", "status", "span_id")
    ok, failed = rows.to_dicts()
    # The SDK's row stays (it is the more exact one) and takes OpenInference's feature.
    assert (ok["source"], ok["status"], ok["feature"]) == ("anthropic-sdk", "ok", "summarize")
    assert ok["cost_usd"] == pytest.approx(ONE_CALL_USD, abs=1e-12)
    assert (failed["source"], failed["status"]) == ("anthropic-sdk", "error")
    assert rows["cost_usd"].sum() == pytest.approx(ONE_CALL_USD, abs=1e-12)


@pytest.mark.parametrize("batched", [True, False], ids=["one-export", "export-per-span"])
def test_openinference_and_sdk_spans_through_the_exporter_are_one_row_per_call(
    batched: bool, fake: FakeAnthropic, db_path: Path
) -> None:
    exporter = DuckDBSpanExporter(db_path, timeout_s=10.0)
    _export(exporter, batched, fake)
    assert exporter.failures == 0
    _assert_one_row_per_call(db_path)


def test_openinference_and_sdk_spans_through_the_receiver_are_one_row_per_call(
    fake: FakeAnthropic, db_path: Path
) -> None:
    with Receiver(db_path, http_port=0, grpc_port=0) as receiver:
        _export(OTLPSpanExporter(endpoint=receiver.http_endpoint), False, fake)
    _assert_one_row_per_call(db_path)


def test_identical_calls_side_by_side_in_one_trace_stay_apart(
    fake: FakeAnthropic, db_path: Path
) -> None:
    # Two rate-limited calls at once under one request span: same trace, same model, same
    # (no) tokens, overlapping in time, no message ids. Each SDK span is nested in its own
    # OpenInference span: two calls, two rows.
    exporter = DuckDBSpanExporter(db_path, timeout_s=10.0)
    provider, client, instrumentor = _traced(BatchSpanProcessor(exporter))
    sdk = client(fake)
    fake.enqueue(error(429, "rate_limit_error"), error(429, "rate_limit_error"))
    barrier = threading.Barrier(2)

    def call() -> None:
        barrier.wait(timeout=10)
        with pytest.raises(anthropic.RateLimitError):
            sdk.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)

    try:
        with provider.get_tracer("app").start_as_current_span("request"):
            from opentelemetry import context

            ctx = context.get_current()
            threads = [
                threading.Thread(target=lambda: (context.attach(ctx), call())) for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    rows = load_calls(db_path)
    assert rows.height == 2
    assert rows["source"].to_list() == ["anthropic-sdk", "anthropic-sdk"]
    assert rows["trace_id"].n_unique() == 1


def _row(span_id: str, source: str, start: int, end: int, parent: str | None) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "trace_id": "t1",
        "parent_span_id": parent,
        "source": source,
        "service": "svc",
        "request_model": "claude-haiku-4-5",
        "status": "error",
        "input_tokens": None,
        "output_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
        "start_time": start,
        "end_time": end,
        "attributes": "{}",
        "response_id": None,
        "feature": None,
        "user_id": None,
        "conversation_id": None,
    }


def test_ambiguous_spans_are_never_folded() -> None:
    # Two identical failed calls, each seen by two instrumentations, all four spans open at
    # once and none nested in another: which span goes with which is unknown, so none is
    # folded (four rows rather than a wrong pair); nested, they pair up (two rows).
    loose = [
        _row("oi1", "openinference", 0, 100, None),
        _row("oi2", "openinference", 1, 101, None),
        _row("sdk1", "anthropic-sdk", 2, 98, None),
        _row("sdk2", "anthropic-sdk", 3, 99, None),
    ]
    frame = pl.DataFrame(loose).with_columns(pl.col("start_time", "end_time").cast(pl.Datetime))
    assert one_row_per_call(frame).height == 4
    nested = frame.with_columns(
        pl.Series("parent_span_id", [None, None, "oi1", "oi2"], dtype=pl.String)
    )
    assert sorted(one_row_per_call(nested)["span_id"]) == ["sdk1", "sdk2"]
    # Two spans of one instrumentation never go into one row, whatever else matches.
    same_source = nested.with_columns(pl.lit("anthropic-sdk").alias("source"))
    assert one_row_per_call(same_source).height == 4


@pytest.mark.parametrize("split", [False, True], ids=["one-file", "two-files"])
def test_one_message_id_in_two_services_is_two_calls(tmp_path: Path, split: bool) -> None:
    # A proxy or a test server answering two services with the same message id: the SDK's
    # span in one service, ours in the other, in two traces. Two calls, two rows, whether the
    # spans meet in one batch or in the store.
    sdk = span("00f067aa0ba90401", SDK_CACHED_CALL, trace_id="1" * 32)
    ours = span(
        "00f067aa0ba90402",
        {**SDK_CACHED_CALL, "clauditor.feature": "search"},
        trace_id="2" * 32,
    )
    lines = [
        line(sdk, resource={"service.name": "billing"}),
        line(ours, scope="clauditor", resource={"service.name": "search"}),
    ]
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"] if split else [tmp_path / "a.jsonl"]
    if split:
        for path, text in zip(paths, lines, strict=True):
            path.write_text(text)
        for path in paths:
            ingest_paths([path], tmp_path / "c.duckdb")
    else:
        paths[0].write_text("".join(lines))
        ingest_paths(paths, tmp_path / "c.duckdb")
    rows = load_calls(tmp_path / "c.duckdb").sort("service")
    assert rows.select("service", "source").rows() == [
        ("billing", "anthropic-sdk"),
        ("search", "clauditor"),
    ]
