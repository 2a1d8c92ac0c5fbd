"""clauditor's spans go through the OpenTelemetry API's public methods, so the app's own
pipeline (a sampler, a span processor's ``on_start``) sees them as it sees any other span."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anthropic
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

import clauditor
from clauditor import semconv
from clauditor.instrumentation import AnthropicInstrumentor
from tests.fakeanthropic import FakeAnthropic
from tests.instrumentation.conftest import API_KEY, SDK_HAS_SPANS


class KeepFeature(Sampler):
    """Samples only the calls of one feature, deciding on the attributes given at start."""

    def __init__(self, feature: str) -> None:
        self.feature = feature

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        keep = (attributes or {}).get(semconv.FEATURE) == self.feature
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes)

    def get_description(self) -> str:
        return f"KeepFeature({self.feature})"


class SeenAtStart(SpanProcessor):
    """Records each span's attributes as its ``on_start`` sees them."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.seen.append(dict(span.attributes or {}))


def _own_client(base_url: str) -> anthropic.Anthropic:
    """A client whose calls clauditor traces with its own span (SDK spans off)."""
    kwargs: dict[str, Any] = {"base_url": base_url, "api_key": API_KEY, "max_retries": 0}
    if SDK_HAS_SPANS:
        kwargs["open_telemetry"] = False
    return anthropic.Anthropic(**kwargs)


def _call(client: anthropic.Anthropic, feature: str) -> None:
    with clauditor.feature(feature):
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )


def test_a_sampler_decides_on_the_calls_attributes(fake: FakeAnthropic) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=KeepFeature("checkout"))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    AnthropicInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        client = _own_client(fake.base_url)
        for feature in ("search", "checkout", "search"):
            _call(client, feature)
    finally:
        AnthropicInstrumentor().uninstrument()
        provider.shutdown()
    kept = [dict(span.attributes or {}) for span in exporter.get_finished_spans()]
    assert [attrs.get(semconv.FEATURE) for attrs in kept] == ["checkout"]
    assert kept[0][semconv.GEN_AI_REQUEST_MODEL] == "claude-haiku-4-5"


def test_a_span_processor_sees_the_call_when_its_span_starts(fake: FakeAnthropic) -> None:
    at_start = SeenAtStart()
    provider = TracerProvider()
    provider.add_span_processor(at_start)
    AnthropicInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        _call(_own_client(fake.base_url), "search")
    finally:
        AnthropicInstrumentor().uninstrument()
        provider.shutdown()
    (seen,) = at_start.seen
    assert seen[semconv.FEATURE] == "search"
    assert seen[semconv.OPERATION] == "chat"
    assert seen[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] > 0  # the span starts when the call ends
