"""Telemetry never changes what the app sees: broken exporters, providers and bodies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anthropic
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from clauditor.instrumentation import AnthropicInstrumentor, failure_counts
from tests import fakeanthropic as fa
from tests.instrumentation.conftest import API_KEY, SDK_HAS_SPANS

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "hi"}]


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> Any:
        raise RuntimeError("exporter is down")


class BrokenTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer is broken")

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer is broken")


class BrokenProvider(TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return BrokenTracer()


def _plain_client(base_url: str) -> anthropic.Anthropic:
    kwargs: dict[str, Any] = {"base_url": base_url, "api_key": API_KEY, "max_retries": 0}
    if SDK_HAS_SPANS:
        kwargs["open_telemetry"] = False  # clauditor makes the span itself
    return anthropic.Anthropic(**kwargs)


def _same_results(fake: fa.FakeAnthropic, reply_factory) -> None:
    """The instrumented call returns what the uninstrumented one does, stream and all."""
    client = _plain_client(fake.base_url)
    fake.enqueue(reply_factory())
    got = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    fake.enqueue(fa.stream())
    streamed = [e.type for e in client.messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, stream=True)]  # fmt: skip
    AnthropicInstrumentor().uninstrument()
    fake.enqueue(reply_factory())
    want = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    fake.enqueue(fa.stream())
    plain_stream = [e.type for e in client.messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, stream=True)]  # fmt: skip
    assert got.model_dump(exclude={"id"}) == want.model_dump(exclude={"id"})
    assert streamed == plain_stream


def test_exporter_that_raises(fake) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RaisingExporter()))
    AnthropicInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        _same_results(fake, fa.message)
    finally:
        AnthropicInstrumentor().uninstrument()


def test_broken_tracer_provider(fake) -> None:
    AnthropicInstrumentor().instrument(tracer_provider=BrokenProvider(), skip_dep_check=True)
    try:
        _same_results(fake, fa.message)
    finally:
        AnthropicInstrumentor().uninstrument()
    assert failure_counts().get("start span", 0) >= 1


def _malformed() -> fa.Reply:
    body = fa.message_body(usage_={"input_tokens": "lots", "output_tokens": None,
                                   "cache_creation": "weird"})  # fmt: skip
    return fa.Reply(body=body)


def test_malformed_usage(fake, pipeline) -> None:
    _same_results(fake, _malformed)
    spans = pipeline.call_spans()
    assert spans, "the call is still recorded"
    attrs = dict(spans[0].attributes or {})
    assert "gen_ai.usage.input_tokens" not in attrs  # not guessed
