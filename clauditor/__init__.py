"""clauditor: see, explain and control what your Claude API usage costs.

The public Python surface is the instrumentation::

    import clauditor
    clauditor.instrument(service="support-bot", environment="prod")
    with clauditor.feature("summarization", user_id="u-42"):
        client.messages.create(...)

Everything else (ingest, analytics, reports, alerts) is reached through the ``clauditor`` CLI or
the stage subpackages ``clauditor.ingest``, ``clauditor.analytics``, ``clauditor.dashboards`` and
``clauditor.alerts``. The instrumentation is imported lazily so that ``import clauditor`` stays
cheap and never pulls in DuckDB, Polars or Plotly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CapturePolicy", "__version__", "feature", "instrument", "uninstrument"]

if TYPE_CHECKING:  # pragma: no cover
    from clauditor.instrumentation import CapturePolicy, feature, instrument, uninstrument


def __getattr__(name: str) -> Any:
    if name in ("instrument", "uninstrument", "feature", "CapturePolicy"):
        from clauditor import instrumentation

        return getattr(instrumentation, name)
    raise AttributeError(f"module 'clauditor' has no attribute {name!r}")
