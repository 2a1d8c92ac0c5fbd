"""Zero-code: `opentelemetry-instrument python app.py` loads clauditor through its entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from clauditor.instrumentation import AnthropicInstrumentor
from tests.fakeanthropic import FakeAnthropic


def _registered() -> bool:
    return any(
        ep.value == "clauditor.instrumentation:AnthropicInstrumentor"
        for ep in entry_points(group="opentelemetry_instrumentor")
    )


def test_instrumentor_declares_the_instrumented_library() -> None:
    assert any("anthropic" in dep for dep in AnthropicInstrumentor().instrumentation_dependencies())


@pytest.mark.skipif(not _registered(), reason="entry point not registered (pyproject.toml)")
def test_unchanged_app_is_traced_with_feature_from_baggage(tmp_path: Path) -> None:
    cli = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("opentelemetry-instrument is not installed")
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import sys, anthropic
        from opentelemetry import baggage, context
        context.attach(baggage.set_baggage("clauditor.feature", "from-upstream"))
        client = anthropic.Anthropic(base_url=sys.argv[1], api_key="sk-ant-x", max_retries=0)
        client.messages.create(model="claude-haiku-4-5", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    """)
    )
    with FakeAnthropic() as fake:
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
               "OTEL_LOGS_EXPORTER": "none", "OTEL_SERVICE_NAME": "zero-code"}  # fmt: skip
        done = subprocess.run([cli, sys.executable, str(app), fake.base_url], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"clauditor.feature": "from-upstream"' in done.stdout
    assert '"clauditor.usage.input_tokens": 12' in done.stdout


GLOBAL_APP = """
import sys
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # what opentelemetry-instrument's configurator does
from clauditor.instrumentation import AnthropicInstrumentor
AnthropicInstrumentor().instrument()  # what the entry point does, with no arguments
import anthropic
context.attach(baggage.set_baggage("clauditor.feature", "from-upstream"))
client = anthropic.Anthropic(base_url=sys.argv[1], api_key="sk-ant-x", max_retries=0)
client.messages.create(model="claude-haiku-4-5", max_tokens=8,
                       messages=[{"role": "user", "content": "hi"}])
spans = [s for s in exporter.get_finished_spans() if "gen_ai.usage.output_tokens" in s.attributes]
assert len(spans) == 1, spans
print(spans[0].attributes["clauditor.feature"], spans[0].attributes["clauditor.usage.input_tokens"])
"""


def test_global_provider_and_baggage_feature() -> None:
    root = Path(__file__).resolve().parents[2]
    with FakeAnthropic() as fake:
        done = subprocess.run(
            [sys.executable, "-c", GLOBAL_APP, fake.base_url],
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["from-upstream", "12"]
