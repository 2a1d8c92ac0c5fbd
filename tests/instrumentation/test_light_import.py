"""Instrumenting an app stays light: no DuckDB, Polars or Plotly in its process."""

from __future__ import annotations

import subprocess
import sys

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
