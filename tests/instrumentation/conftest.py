"""Fixtures: the fake Anthropic server, an in-memory span pipeline, instrumented clients.

``mode`` runs a test twice where the installed SDK can make its own spans (anthropic >= 1.17):
``native`` (the SDK's span, enriched by clauditor) and ``own`` (SDK spans off, clauditor's span).
On 0.x only ``own`` exists. Either way a test sees exactly the spans the app's pipeline gets.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clauditor.instrumentation import AnthropicInstrumentor
from tests.fakeanthropic import FakeAnthropic

SDK_HAS_SPANS = "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters
MODES = ["native", "own"] if SDK_HAS_SPANS else ["own"]
API_KEY = "sk-ant-test-NEVERSTORED"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """A fresh fake Anthropic API on 127.0.0.1."""
    with FakeAnthropic() as server:
        yield server


class Pipeline:
    """A tracer and meter provider with in-memory exporters, instrumented by clauditor."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        """Finished call spans (the SDK's batch-results GET span excluded)."""
        return list(self.exporter.get_finished_spans())

    def call_spans(self) -> list[ReadableSpan]:
        """Spans that carry a call (one per SDK method invocation / batch result)."""
        return [s for s in self.spans() if (s.attributes or {}).get("clauditor.operation")]

    def one(self) -> dict[str, Any]:
        """The attributes of the one call span; fails unless there is exactly one."""
        spans = self.call_spans()
        assert len(spans) == 1, [(s.name, s.instrumentation_scope) for s in self.spans()]
        return dict(spans[0].attributes or {})


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    """clauditor instrumented onto a private provider; uninstrumented afterwards."""
    pipe = Pipeline()
    AnthropicInstrumentor().instrument(
        tracer_provider=pipe.provider, meter_provider=pipe.meter_provider, skip_dep_check=True
    )
    try:
        yield pipe
    finally:
        AnthropicInstrumentor().uninstrument()
        pipe.provider.shutdown()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """``native`` (SDK span enriched) or ``own`` (clauditor's span)."""
    return str(request.param)


def _client_kwargs(base_url: str, mode: str, provider: TracerProvider, **kw: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"base_url": base_url, "api_key": API_KEY, "max_retries": 2, **kw}
    if SDK_HAS_SPANS:
        kwargs["open_telemetry"] = {"tracer_provider": provider} if mode == "native" else False
    return kwargs


@pytest.fixture
def make_client(
    fake: FakeAnthropic, pipeline: Pipeline, mode: str
) -> Callable[..., anthropic.Anthropic]:
    """Build a sync client talking to the fake, in the test's mode."""

    def build(base_url: str | None = None, **kw: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            **_client_kwargs(base_url or fake.base_url, mode, pipeline.provider, **kw)
        )

    return build


@pytest.fixture
def make_async_client(
    fake: FakeAnthropic, pipeline: Pipeline, mode: str
) -> Callable[..., anthropic.AsyncAnthropic]:
    """Build an async client talking to the fake, in the test's mode."""

    def build(base_url: str | None = None, **kw: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            **_client_kwargs(base_url or fake.base_url, mode, pipeline.provider, **kw)
        )

    return build
