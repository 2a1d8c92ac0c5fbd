"""Regenerate the span fixtures of sample_logs/conventions/ by running the real instrumentations.

Each instrumentation lives in its own virtual environment (they pin different versions of the
anthropic SDK and of OpenTelemetry, and two of them import as ``opentelemetry.instrumentation
.anthropic``), so this script is run once per instrumentation, inside that environment, from the
repository root::

    python -m venv /tmp/cv-openinference
    /tmp/cv-openinference/bin/pip install "anthropic==2.12.*" opentelemetry-sdk \\
        opentelemetry-exporter-otlp-proto-common openinference-instrumentation-anthropic==3.1.0
    PYTHONPATH=. /tmp/cv-openinference/bin/python sample_logs/conventions/generate.py openinference

Targets and what to install beside ``opentelemetry-sdk opentelemetry-exporter-otlp-proto-common``:

===================  ===========================================================================
``openllmetry-old``  ``anthropic==2.12.*`` ``opentelemetry-instrumentation-anthropic==0.52.0``
``openllmetry``      ``anthropic==2.12.*`` ``opentelemetry-instrumentation-anthropic==0.62.4``
``otel-genai``       ``anthropic==2.12.*`` ``opentelemetry-util-genai==1.3b0`` (``--pre``)
``openinference``    ``anthropic==2.12.*`` ``openinference-instrumentation-anthropic==3.1.0``
``openlit``          ``anthropic<1`` ``openlit==1.45.0`` (OpenLIT 1.45 requires anthropic < 1)
``overlap``          ``anthropic==2.12.*`` ``opentelemetry-instrumentation-anthropic==0.62.4``
===================  ===========================================================================

Every target makes the same four calls against the fake Anthropic server of
tests/fakeanthropic.py (plain; cache read + 5-minute cache write; streamed with a cache read;
a 429) and writes the finished spans as OTLP/JSON lines, encoded by OpenTelemetry's own OTLP
encoder and ``google.protobuf.json_format`` with hex ids, i.e. what the Collector's file
exporter writes. Span and trace ids come from a seeded generator, so a re-run writes the same
ids; times are real. ``overlap`` turns on the anthropic SDK's native spans AND OpenLLMetry for
the same calls (two spans per call, which ingest must count once).

The official OpenTelemetry anthropic instrumentation (opentelemetry-python-contrib,
instrumentation-genai/opentelemetry-instrumentation-anthropic) is not on PyPI: its distribution
name belongs to OpenLLMetry's package. Its spans are made by ``opentelemetry-util-genai``, which
is on PyPI; the ``otel-genai`` target drives that real package the way the official
instrumentation's source does (provider ``anthropic``, request attributes, the response's model,
id and normalized finish reason, ``input_tokens`` = uncached + cache reads + cache writes, the
cache counts as ``cache_read_input_tokens``/``cache_write_input_tokens``).

How the feature gets onto the spans, per target (see README.md): OpenLLMetry reads association
properties that traceloop-sdk's span processor copies from its context; traceloop-sdk itself
pulls in every OpenLLMetry instrumentation, so :class:`_AssociationProperties` does the same
copy here. OpenInference uses its own ``using_metadata``. OpenLIT and otel-genai get W3C
baggage copied onto the span (``app.feature``, a team's own name; ``baggage.clauditor.feature``).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import itertools
import json
import os
import random
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry import baggage, context, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

import tests.fakeanthropic as fake_module
from tests.fakeanthropic import FakeAnthropic, error, message, stream, usage

# Content capture off, as a team that cares would run them: prompts stay out of the fixtures.
os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "false")
os.environ.setdefault("OPENINFERENCE_HIDE_INPUTS", "true")
os.environ.setdefault("OPENINFERENCE_HIDE_OUTPUTS", "true")

HERE = Path(__file__).parent
API_KEY = "sk-ant-test-FIXTURE-fake"
RESOURCE = {"service.name": "support-bot", "deployment.environment.name": "prod"}

# (target, output folder, distribution whose version names the file, id seed)
TARGETS = {
    "openllmetry-old": ("openllmetry", "opentelemetry-instrumentation-anthropic", 101),
    "openllmetry": ("openllmetry", "opentelemetry-instrumentation-anthropic", 102),
    "otel-genai": ("otel-genai", "opentelemetry-util-genai", 103),
    "openinference": ("openinference", "openinference-instrumentation-anthropic", 104),
    "openlit": ("openlit", "openlit", 105),
    "overlap": ("overlap", "opentelemetry-instrumentation-anthropic", 106),
}


class _SeededIds(IdGenerator):
    """Stable ids run to run, so expected.json can name them."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64)

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128)


_association: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "association", default=None
)


class _AssociationProperties(SpanProcessor):
    """What traceloop-sdk's span processor does: association properties onto every span."""

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        for key, value in (_association.get() or {}).items():
            span.set_attribute(f"traceloop.association.properties.{key}", value)


class _BaggageToAttributes(SpanProcessor):
    """Copy W3C baggage entries onto every span, under ``prefix + key``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        for key, value in baggage.get_all(parent_context).items():
            span.set_attribute(self.prefix + key, str(value))


# --- the calls -----------------------------------------------------------------------------------

PLAIN = dict(model="claude-haiku-4-5-20251001", usage_=usage(120, 45))
CACHED = dict(
    model="claude-sonnet-4-5-20250929", usage_=usage(50, 80, cache_read=2000, cache_5m=300)
)
STREAM_START = usage(40, 1, cache_read=1000)


def _calls(client: Any, fake: FakeAnthropic, tag: Any) -> None:
    """The four calls every target makes; ``tag(feature)`` is a context manager."""
    import anthropic

    messages = [{"role": "user", "content": "Hello"}]
    fake.enqueue(message(**PLAIN))
    with tag("summarize"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=256, messages=messages)
    fake.enqueue(message(**CACHED))
    with tag("support-chat"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=messages)
    fake.enqueue(
        stream(
            model="claude-haiku-4-5-20251001",
            start_usage=STREAM_START,
            final_usage={"output_tokens": 60},
        )
    )
    with tag("search-answer"):
        events = client.messages.create(
            model="claude-haiku-4-5", max_tokens=512, messages=messages, stream=True
        )
        for _ in events:
            pass
    fake.enqueue(error(429, "rate_limit_error", "slow down"))
    with tag("summarize"), contextlib.suppress(anthropic.RateLimitError):
        client.messages.create(model="claude-haiku-4-5", max_tokens=256, messages=messages)


@contextlib.contextmanager
def _with_association(feature: str) -> Iterator[None]:
    token = _association.set({"feature": feature})
    try:
        yield
    finally:
        _association.reset(token)


def _with_baggage(key: str) -> Any:
    @contextlib.contextmanager
    def tag(feature: str) -> Iterator[None]:
        token = context.attach(baggage.set_baggage(key, feature))
        try:
            yield
        finally:
            context.detach(token)

    return tag


def _client(fake: FakeAnthropic, **options: Any) -> Any:
    import anthropic

    return anthropic.Anthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=0, **options)


def _run_openllmetry(provider: TracerProvider, fake: FakeAnthropic, *, native: bool) -> None:
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

    provider.add_span_processor(_AssociationProperties())
    AnthropicInstrumentor().instrument(tracer_provider=provider)
    options = {"open_telemetry": {"tracer_provider": provider}} if native else {}
    _calls(_client(fake, **options), fake, _with_association)


def _run_openinference(provider: TracerProvider, fake: FakeAnthropic) -> None:
    from openinference.instrumentation import using_metadata
    from openinference.instrumentation.anthropic import AnthropicInstrumentor

    AnthropicInstrumentor().instrument(tracer_provider=provider)

    def tag(feature: str) -> Any:
        return using_metadata({"feature": feature})

    _calls(_client(fake), fake, tag)


def _run_openlit(provider: TracerProvider, fake: FakeAnthropic) -> None:
    import openlit

    provider.add_span_processor(_BaggageToAttributes(""))
    trace.set_tracer_provider(provider)  # OpenLIT reuses an SDK provider that is already set
    openlit.init(
        application_name="support-bot",
        environment="prod",
        capture_message_content=False,
        disable_metrics=True,
        disable_events=True,
    )
    _calls(_client(fake), fake, _with_baggage("app.feature"))


_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def _run_otel_genai(provider: TracerProvider, fake: FakeAnthropic) -> None:
    """The official instrumentation's span lifecycle, around the real SDK (see the docstring)."""
    from opentelemetry.util.genai.handler import TelemetryHandler

    provider.add_span_processor(_BaggageToAttributes("baggage."))
    handler = TelemetryHandler(tracer_provider=provider)
    client = _client(fake)
    create = client.messages.create

    def record(invocation: Any, usage_: Any) -> None:
        read = usage_.cache_read_input_tokens
        write = usage_.cache_creation_input_tokens
        invocation.input_tokens = (usage_.input_tokens or 0) + (read or 0) + (write or 0)
        invocation.output_tokens = usage_.output_tokens
        invocation.cache_read_input_tokens = read
        invocation.cache_write_input_tokens = write

    def traced(**kwargs: Any) -> Any:
        invocation = handler.inference(
            "anthropic",
            request_model=kwargs["model"],
            server_address=client.base_url.host,
            server_port=client.base_url.port,
        )
        invocation.max_tokens = kwargs.get("max_tokens")
        invocation.request_stream = bool(kwargs.get("stream"))
        try:
            result = create(**kwargs)
        except Exception as exc:
            invocation.fail(exc)
            raise
        if not kwargs.get("stream"):
            invocation.response_model_name = result.model
            invocation.response_id = result.id
            invocation.finish_reasons = [_FINISH.get(result.stop_reason, result.stop_reason)]
            record(invocation, result.usage)
            invocation.stop()
            return result
        return _traced_stream(result, invocation, record)

    client.messages.create = traced
    _calls(client, fake, _with_baggage("clauditor.feature"))


def _traced_stream(events: Any, invocation: Any, record: Any) -> Iterator[Any]:
    start_usage = None
    for event in events:
        if event.type == "message_start":
            invocation.response_model_name = event.message.model
            invocation.response_id = event.message.id
            start_usage = event.message.usage
        elif event.type == "message_delta":
            # message_delta's usage is cumulative: its output count is the final one.
            start_usage.output_tokens = event.usage.output_tokens
            reason = event.delta.stop_reason
            invocation.finish_reasons = [_FINISH.get(reason, reason)]
        yield event
    record(invocation, start_usage)
    invocation.stop()


# --- writing ----------------------------------------------------------------------------------


def _hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _otlp_json_lines(spans: list[ReadableSpan]) -> str:
    """One ExportTraceServiceRequest per span, as the Collector's file exporter writes them."""
    lines = []
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        request = MessageToDict(encode_spans([span]), use_integers_for_enums=True)
        for resource_spans in request["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                for item in scope_spans["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = _hex(item[key])
        lines.append(json.dumps(request, separators=(",", ":"), sort_keys=True))
    return "\n".join(lines) + "\n"


def main(target: str) -> Path:
    """Run ``target``'s instrumentation and write its fixture; returns the file written."""
    folder, distribution, seed = TARGETS[target]
    # Message ids unique across fixtures (msg_fake101001...), as real ids are.
    fake_module._ids = itertools.count(seed * 1000 + 1)
    exporter = InMemorySpanExporter()
    resource = Resource.create(RESOURCE)
    provider = TracerProvider(resource=resource, id_generator=_SeededIds(seed))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with FakeAnthropic() as fake:
        if target.startswith("openllmetry") or target == "overlap":
            _run_openllmetry(provider, fake, native=target == "overlap")
        elif target == "openinference":
            _run_openinference(provider, fake)
        elif target == "openlit":
            _run_openlit(provider, fake)
        elif target == "otel-genai":
            _run_otel_genai(provider, fake)
        else:
            raise SystemExit(f"unknown target {target!r}; one of {sorted(TARGETS)}")
    provider.force_flush()
    spans = list(exporter.get_finished_spans())
    version = metadata.version(distribution)
    out = HERE / folder / f"{distribution}-{version}.jsonl"
    out.parent.mkdir(exist_ok=True)
    text = _otlp_json_lines(spans)
    if API_KEY in text:
        raise SystemExit("the API key leaked into a span; refusing to write it")
    out.write_text(text)
    return out


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(TARGETS):
        print(main(name))
