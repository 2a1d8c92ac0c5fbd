"""clauditor.instrumentation: every Claude call becomes one attributed, priced span.

::

    import clauditor
    clauditor.instrument(service="support-bot", environment="prod")
    with clauditor.feature("summarization", user_id="u-42"):
        client.messages.create(...)

Imports only OpenTelemetry, the anthropic SDK (lazily, when wrapping) and light clauditor core
modules: the default sink appends JSON lines to a span file (``._span_file``), never duckdb or
polars.
"""

from __future__ import annotations

from clauditor.instrumentation._capture import CapturePolicy
from clauditor.instrumentation._context import FeatureContext, current_feature, feature
from clauditor.instrumentation._instrumentor import (
    AnthropicInstrumentor,
    Handle,
    instrument,
    uninstrument,
)
from clauditor.instrumentation._metrics import DURATION_BUCKETS, TOKEN_BUCKETS
from clauditor.instrumentation._safety import failure_counts

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "AnthropicInstrumentor",
    "CapturePolicy",
    "FeatureContext",
    "Handle",
    "current_feature",
    "failure_counts",
    "feature",
    "instrument",
    "uninstrument",
]
