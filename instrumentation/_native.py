"""Enrich the anthropic SDK's own call spans (anthropic >= 1.17) instead of adding a second one.

The SDK makes one ``CLIENT`` span per API call (scope ``com.anthropic.sdk.python``) when a
tracer provider exists, and records most of the usage on it. clauditor adds what it lacks, so
the one span carries the whole convention:

* on start (in the app's thread, inside the call): feature, user, tags, code location and
  ``clauditor.operation``;
* from the response: ``clauditor.usage.input_tokens`` (uncached), ``inference_geo`` and
  ``speed`` - by adding three entries to the SDK's own table of response attributes, so they
  cost nothing extra and work for streamed and raw responses alike;
* while ending (``_on_ending``, where the span is still writable): whichever of the inclusive
  and uncached input counts is missing, ``clauditor.ttft_ms``, the stream outcome, and the
  metrics.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from clauditor import semconv

from ._attributes import context_attributes
from ._capture import PENDING_CAPTURE
from ._safety import report_failure

__all__ = [
    "NativeSpanEnricher",
    "add_sdk_response_attributes",
    "raw_attributes",
    "record_response_hook",
    "remove_sdk_response_attributes",
]

_OPERATIONS = {
    semconv.ANTHROPIC_SPAN_MESSAGES_CREATE: "chat",
    semconv.ANTHROPIC_SPAN_COUNT_TOKENS: "count_tokens",
}
_SDK_TTFT = "gen_ai.response.time_to_first_chunk"  # seconds, set by the SDK on streams

# Response fields the SDK does not record, added to its table (same shape as its entries).
_EXTRA_RESPONSE = {
    semconv.INPUT_TOKENS_UNCACHED: (("usage", "input_tokens"), "integer"),
    semconv.INFERENCE_GEO: (("usage", "inference_geo"), "string"),
    semconv.SPEED: (("usage", "speed"), "string"),
}


def _sdk_response_table() -> dict[str, Any] | None:
    try:
        from anthropic import _tracing
    except ImportError:
        return None
    table = getattr(_tracing, "SPAN_ATTRIBUTES", {}).get(semconv.ANTHROPIC_SPAN_MESSAGES_CREATE)
    response = table.get("response") if isinstance(table, dict) else None
    return response if isinstance(response, dict) else None


def add_sdk_response_attributes() -> None:
    """Teach the SDK's span recorder the three response fields clauditor needs."""
    response = _sdk_response_table()
    if response is not None:
        for key, spec in _EXTRA_RESPONSE.items():
            response.setdefault(key, spec)


def remove_sdk_response_attributes() -> None:
    """Undo :func:`add_sdk_response_attributes`."""
    response = _sdk_response_table()
    if response is not None:
        for key, spec in _EXTRA_RESPONSE.items():
            if response.get(key) == spec:
                del response[key]


def record_response_hook(original: Any) -> Any:
    """Wrap the SDK function that records a call's result on its span, to add captured content.

    That is ``_tracing.record_response(span, result)`` in anthropic 2.x and
    ``lib._tracing._api_call.record_api_call(client, span, result)`` in 1.x: both run while the
    span is still open, in the app's call, with the parsed response or the error - the one place
    that sees both. The span and the result are the last two arguments in each.
    """

    def hooked(*args: Any, **kwargs: Any) -> Any:
        done = original(*args, **kwargs)
        capture = PENDING_CAPTURE.get()
        if capture is None or len(args) < 2 or capture.span is not args[-2]:
            return done
        span, result = args[-2], args[-1]
        try:
            error = getattr(result, "error", None)
            if error is not None:
                attrs = capture.error_attributes(error)
            else:
                data = getattr(result, "data", None)
                raw = getattr(data, "http_response", None)
                if raw is not None and getattr(raw, "is_closed", False):
                    data = (
                        data.parse()
                    )  # with_raw_response: parse() is cached, the app pays nothing
                kind = getattr(data, "type", None)
                attrs = capture.output_attributes(data) if kind == "message" else {}
            if attrs and span.is_recording():
                span.set_attributes(attrs)
        except Exception as exc:
            report_failure("capture", exc)
        return done

    return hooked


def _is_sdk_call_span(span: ReadableSpan) -> str | None:
    operation = _OPERATIONS.get(span.name)
    if operation is None:
        return None
    scope = span.instrumentation_scope
    if scope is None or not scope.name.startswith(semconv.ANTHROPIC_SCOPE):
        return None
    return operation


def raw_attributes(span: Span, adding: int) -> dict[str, Any] | None:
    """The span's own attribute dict, when ``adding`` clauditor values may go straight into it.

    The SDK validates each value it is given (type, length limit) under a lock; clauditor's
    values are plain str/int/float/bool it made itself, so when the span has no value-length
    limit and room for them, writing them into the dict is the same result for a fraction of the
    cost. ``None`` (use ``set_attributes``) whenever the SDK's layout is not the one expected.
    """
    bounded = getattr(span, "_attributes", None)
    raw = getattr(bounded, "_dict", None)
    if type(raw) is not dict or getattr(bounded, "max_value_len", 0) is not None:
        return None
    maxlen = getattr(bounded, "maxlen", 0)
    if maxlen is not None and len(raw) + adding > maxlen:
        return None
    return raw


def _set_while_ending(span: Span, extra: dict[str, Any]) -> None:
    # The SDK calls _on_ending after freezing the attributes (the spec says the span is still
    # writable there), so write through the frozen mapping for this one moment.
    raw = raw_attributes(span, len(extra))
    if raw is not None:
        raw.update(extra)
        return
    if span.is_recording():
        span.set_attributes(extra)
        return
    bounded = span._attributes  # noqa: SLF001
    frozen = bounded._immutable  # type: ignore[union-attr]
    bounded._immutable = False  # type: ignore[union-attr]
    try:
        for key, value in extra.items():
            bounded[key] = value  # type: ignore[index]
    finally:
        bounded._immutable = frozen  # type: ignore[union-attr]


class NativeSpanEnricher(SpanProcessor):
    """A span processor that completes the SDK's call spans with clauditor's attributes.

    Add it to the tracer provider the SDK's clients use (``instrument()`` does). It touches
    only spans from the anthropic SDK's scope; every failure is reported, never raised.
    """

    def __init__(self, metrics: Any = None) -> None:
        self.metrics = metrics
        self.enabled = (
            True  # processors cannot be removed from a provider; uninstrument clears this
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            operation = _is_sdk_call_span(span)
            if operation is None:
                return
            attrs = context_attributes(operation)
            current = getattr(getattr(span, "_attributes", None), "_dict", None)
            if current is None:
                current = span.attributes or {}
            if operation == "chat" and semconv.GEN_AI_REQUEST_STREAM not in current:
                attrs[semconv.GEN_AI_REQUEST_STREAM] = False
            capture = PENDING_CAPTURE.get() if operation == "chat" else None
            if capture is not None and capture.span is None:
                capture.span = span
                if capture.full:
                    attrs.update(capture.input_attributes())
            raw = raw_attributes(span, len(attrs)) if capture is None else None
            if raw is not None:
                raw.update(attrs)
            else:
                span.set_attributes(attrs)
        except Exception as exc:
            report_failure("enrich SDK span", exc)

    def _on_ending(self, span: Span) -> None:
        if not self.enabled:
            return
        try:
            if _is_sdk_call_span(span) is None:
                return
            attrs = getattr(getattr(span, "_attributes", None), "_dict", None)
            if type(attrs) is not dict:
                attrs = span.attributes or {}
            extra: dict[str, Any] = {}
            inclusive = attrs.get(semconv.GEN_AI_USAGE_INPUT_TOKENS)
            uncached = attrs.get(semconv.INPUT_TOKENS_UNCACHED)
            cached = int(attrs.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) or 0) + int(
                attrs.get(semconv.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS) or 0
            )
            if uncached is None and isinstance(inclusive, int):
                extra[semconv.INPUT_TOKENS_UNCACHED] = max(inclusive - cached, 0)
            elif inclusive is None and isinstance(uncached, int):
                extra[semconv.GEN_AI_USAGE_INPUT_TOKENS] = uncached + cached
            ttft = attrs.get(_SDK_TTFT)
            if isinstance(ttft, int | float) and semconv.TTFT_MS not in attrs:
                extra[semconv.TTFT_MS] = float(ttft) * 1000.0
            if attrs.get(semconv.GEN_AI_REQUEST_STREAM) is True:
                code = span.status.status_code
                extra[semconv.STREAM_OUTCOME] = (
                    "completed"
                    if code is StatusCode.OK
                    else "error"
                    if code is StatusCode.ERROR
                    else "abandoned"
                )
            if extra:
                _set_while_ending(span, extra)
            if self.metrics is not None:
                start = span.start_time or time.time_ns()
                final = attrs if extra.items() <= attrs.items() else {**attrs, **extra}
                self.metrics.record(final, (time.time_ns() - start) / 1e9)
        except Exception as exc:
            report_failure("finish SDK span", exc)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
