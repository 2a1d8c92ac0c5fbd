"""The two GenAI client metrics, with the semconv's advised bucket boundaries.

* ``gen_ai.client.token.usage`` (histogram, ``{token}``), one point per token type per call:
  ``input`` (inclusive of cache, as the semconv defines it) and ``output``.
* ``gen_ai.client.operation.duration`` (histogram, seconds), one point per call.

Both carry the operation, provider, request/response model, ``error.type`` on failure and the
clauditor feature, so dashboards can split by feature without traces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics

from clauditor import semconv

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "CallMetrics"]

TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

# The span attributes copied onto the metric points (after operation and provider), in key order.
_DIMENSIONS = (
    semconv.GEN_AI_REQUEST_MODEL,
    semconv.GEN_AI_RESPONSE_MODEL,
    semconv.ERROR_TYPE,
    semconv.FEATURE,
)
_MAX_CACHED = 4096
_MISSING = object()
# Read once per call: module constants are one lookup each, semconv.X two.
_OPERATION_NAME = semconv.GEN_AI_OPERATION_NAME
_OPERATION = semconv.OPERATION
_REQUEST_MODEL = semconv.GEN_AI_REQUEST_MODEL
_RESPONSE_MODEL = semconv.GEN_AI_RESPONSE_MODEL
_ERROR_TYPE = semconv.ERROR_TYPE
_FEATURE = semconv.FEATURE
_INPUT_TOKENS = semconv.GEN_AI_USAGE_INPUT_TOKENS
_OUTPUT_TOKENS = semconv.GEN_AI_USAGE_OUTPUT_TOKENS


class CallMetrics:
    """Records both histograms for one finished call from its span attributes."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        from clauditor import __version__

        meter = metrics.get_meter(
            semconv.CLAUDITOR_SCOPE, __version__, meter_provider=meter_provider
        )
        self._tokens = meter.create_histogram(
            semconv.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Tokens used per Claude call, by token type",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self._duration = meter.create_histogram(
            semconv.GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="Duration of each Claude call, retries and stream reading included",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._dims: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}

    def record(self, attributes: Mapping[str, Any], duration_s: float) -> None:
        """Record one call whose final span attributes are ``attributes``."""
        if getattr(self._duration, "_real_instrument", _MISSING) is None:
            # The global meter provider's stand-in before the app sets one: every point would
            # be dropped, so none is built (one set later is used from then on).
            return
        get = attributes.get
        key = (
            get(_OPERATION_NAME) or get(_OPERATION) or "chat",
            get(_REQUEST_MODEL),
            get(_RESPONSE_MODEL),
            get(_ERROR_TYPE),
            get(_FEATURE),
        )
        try:
            dims = self._dims[key]
        except KeyError:
            dims = self._dims_for(key)
        except TypeError:  # an unhashable value in a malformed span: build without the cache
            dims = self._build(key)
        self._duration.record(duration_s, dims[0])
        inclusive = get(_INPUT_TOKENS)
        if type(inclusive) is int:
            self._tokens.record(inclusive, dims[1])
        output = get(_OUTPUT_TOKENS)
        if type(output) is int:
            self._tokens.record(output, dims[2])

    def _dims_for(self, key: tuple[Any, ...]) -> tuple[dict[str, Any], ...]:
        # The metric attributes of a (operation, models, error, feature) combination, made once:
        # apps have few combinations, and the SDK only reads these dicts.
        if len(self._dims) >= _MAX_CACHED:
            self._dims.clear()  # a runaway number of features or models: start over, stay bounded
        built = self._dims[key] = self._build(key)
        return built

    @staticmethod
    def _build(key: tuple[Any, ...]) -> tuple[dict[str, Any], ...]:
        dims: dict[str, Any] = {
            semconv.GEN_AI_PROVIDER_NAME: "anthropic",
            semconv.GEN_AI_OPERATION_NAME: key[0],
        }
        for name, value in zip(_DIMENSIONS, key[1:], strict=True):
            if value is not None:
                dims[name] = value
        return (
            dims,
            {**dims, semconv.GEN_AI_TOKEN_TYPE: "input"},
            {**dims, semconv.GEN_AI_TOKEN_TYPE: "output"},
        )
