"""clauditor.instrumentation: every Claude call becomes one attributed, priced span.

::

    import clauditor
    clauditor.instrument(service="support-bot", environment="prod")
    with clauditor.feature("summarization", user_id="u-42"):
        client.messages.create(...)

Imports only OpenTelemetry, the anthropic SDK (lazily, when wrapping) and clauditor core; the
DuckDB exporter is imported inside ``instrument()`` only when that sink is chosen.
"""

from __future__ import annotations

from ._capture import CapturePolicy
from ._context import FeatureContext, current_feature, feature
from ._instrumentor import AnthropicInstrumentor, Handle, instrument, uninstrument
from ._metrics import DURATION_BUCKETS, TOKEN_BUCKETS
from ._safety import failure_counts

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
