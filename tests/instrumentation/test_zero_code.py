"""Zero-code: `opentelemetry-instrument python app.py` loads clauditor through its entry point."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import duckdb
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


README = Path(__file__).resolve().parents[2] / "README.md"
ZERO_CODE_MARKER = "<!-- zero-code command -->"

BAGGAGE_APP = """
import anthropic
from opentelemetry import baggage, context
context.attach(baggage.set_baggage("clauditor.feature", "from-upstream"))
client = anthropic.Anthropic(max_retries=0)  # base URL and key from the environment
for _ in range(2):
    client.messages.create(model="claude-haiku-4-5", max_tokens=8,
                           messages=[{"role": "user", "content": "hi"}])
"""


def readme_zero_code_command() -> tuple[dict[str, str], list[str]]:
    """The README's zero-code command line, exactly as written: (its variables, its argv).

    It is the line ending in ``opentelemetry-instrument python app.py`` in the first code block
    after the marker, backslash continuations joined."""
    text = README.read_text(encoding="utf-8")
    assert ZERO_CODE_MARKER in text, f"README.md lost its {ZERO_CODE_MARKER} marker"
    block = text.split(ZERO_CODE_MARKER, 1)[1].split("```", 2)[1]
    joined = block.replace("\\\n", " ")
    (line,) = (ln for ln in joined.splitlines() if "opentelemetry-instrument" in ln)
    words = shlex.split(line.split("#", 1)[0])
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


@pytest.mark.skipif(not _registered(), reason="entry point not registered (pyproject.toml)")
def test_readme_zero_code_command_records_calls_with_their_baggage_feature(
    tmp_path: Path,
) -> None:
    env_vars, argv = readme_zero_code_command()
    assert argv == ["opentelemetry-instrument", "python", "app.py"], argv
    (tmp_path / "app.py").write_text(textwrap.dedent(BAGGAGE_APP))
    db = tmp_path / "served.duckdb"
    server = subprocess.Popen(
        [sys.executable, "-m", "clauditor.cli", "serve", "--db", str(db)]
        + ["--http-port", "0", "--grpc-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    try:
        ready = server.stderr.readline()
        ports = dict(re.findall(r"OTLP/(HTTP|gRPC) \S+?:(\d+)", ready))
        assert set(ports) == {"HTTP", "gRPC"}, ready
        # The one change to the README's line: the free ports this test's receiver got instead
        # of the default 4318 / 4317.
        for name, value in env_vars.items():
            value = value.replace(":4318", f":{ports['HTTP']}")
            env_vars[name] = value.replace(":4317", f":{ports['gRPC']}")
        with FakeAnthropic() as fake:
            env = {
                **os.environ,
                **env_vars,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "ANTHROPIC_BASE_URL": fake.base_url,
                "ANTHROPIC_API_KEY": "sk-ant-x",
            }
            for name in [n for n in env if n.startswith("OTEL_") and n not in env_vars]:
                del env[name]  # only what the README sets
            done = subprocess.run(
                argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
        assert done.returncode == 0, done.stderr
        # Traces, metrics and logs all land: the exporters log no failure.
        assert "export" not in done.stderr.lower() or "failed" not in done.stderr.lower(), (
            done.stderr[-3000:]
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert db.exists(), f"the receiver stored nothing; the app said:\n{done.stderr[-3000:]}"
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("SELECT feature, input_tokens FROM calls").fetchall()
    assert rows == [("from-upstream", 12), ("from-upstream", 12)], done.stderr
