"""Instrumenting an app stays light: no DuckDB, Polars or Plotly in its process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fakeanthropic import FakeAnthropic

CODE = """
import sys
import clauditor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
handle = clauditor.instrument(service="light", exporter=InMemorySpanExporter())
with clauditor.feature("f"):
    pass
heavy = sorted(m for m in ("duckdb", "polars", "plotly", "pyarrow") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_instrumenting_loads_no_analytics_stack() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "none", f"instrumentation imported {out}"


DEFAULT_SINK_APP = """
import sys
import anthropic
import clauditor
handle = clauditor.instrument(service="light", db=sys.argv[2])
client = anthropic.Anthropic(api_key="sk-ant-test-x", base_url=sys.argv[1], max_retries=0)
with clauditor.feature("f"):
    client.messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
handle.flush()
heavy = sorted(m for m in ("duckdb", "polars", "plotly", "pyarrow") if m in sys.modules)
print(",".join(heavy) or "none")
print(handle.target)
"""


def test_the_default_sink_loads_no_analytics_stack(tmp_path: Path) -> None:
    """The default sink, a real call exported through it: still no duckdb or polars."""
    db = tmp_path / "app.duckdb"
    with FakeAnthropic() as fake:
        out = subprocess.run(
            [sys.executable, "-c", DEFAULT_SINK_APP, fake.base_url, str(db)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
    assert out[0] == "none", f"the default sink imported {out[0]}"
    assert not db.exists()  # the app never opened the database
    files = list((tmp_path / "app.duckdb.spans").glob("spans-*.jsonl*"))
    assert len(files) == 1
    assert b'"gen_ai.' in files[0].read_bytes()  # the call's span was written
