"""Enrich the anthropic SDK's own call spans (anthropic >= 1.17) instead of adding a second one.

The SDK makes one ``CLIENT`` span per API call (scope ``com.anthropic.sdk.python``) when a
tracer provider exists, and records most of the usage on it. clauditor adds what it lacks, so
the one span carries the whole convention:

* on start (in the app's thread, inside the call): feature, user, tags, code location and
  ``clauditor.operation``;
* from the response: ``inference_geo``, ``speed``, the server tool counts and the code
  execution container, read where the SDK records the response on its span
  (:func:`usage_extras_hook`), for streamed (the SDK's accumulated Message) and raw responses
  alike;
* the cloud region of a Bedrock or Vertex client, which the wrapper found on the client and
  handed over with the code location (:data:`CALL_SITE`), else the region of the span's
  ``server.address``;
* as it ends (just before the SDK's ``end()``, while the span is still writable): whichever of
  the inclusive and uncached input counts is missing (the SDK records the inclusive one),
  ``clauditor.ttft_ms``, the stream outcome, and the metrics.

Only the OpenTelemetry API's public span methods are used (``attributes``, ``set_attributes``,
``status``, ``end``): the SDK validates each value under the span's lock, as for any other
instrumentation.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from clauditor import semconv
from clauditor.cloud import region_from_host
from clauditor.instrumentation._attributes import (
    add_context_attributes,
    add_server_tool_attributes,
    fields_of,
)
from clauditor.instrumentation._capture import PENDING_CAPTURE
from clauditor.instrumentation._safety import report_failure

__all__ = [
    "CALL_SITE",
    "NativeSpanEnricher",
    "record_response_hook",
    "usage_extras_hook",
]

_OPERATIONS = {
    semconv.ANTHROPIC_SPAN_MESSAGES_CREATE: "chat",
    semconv.ANTHROPIC_SPAN_COUNT_TOKENS: "count_tokens",
}
_SDK_TTFT = "gen_ai.response.time_to_first_chunk"  # seconds, set by the SDK on streams

# The app's code location of the native call in flight in this thread / task: the wrapper finds
# it a frame or two up, far cheaper than walking up from inside the SDK's span start. A Bedrock
# or Vertex client's call sets (location, region) instead.
CALL_SITE: contextvars.ContextVar[str | tuple[str | None, str] | None] = contextvars.ContextVar(
    "clauditor_call_site", default=None
)

# Usage fields the SDK does not record on its span, copied from the response it records.
_USAGE_EXTRAS = (("inference_geo", semconv.INFERENCE_GEO), ("speed", semconv.SPEED))


def _usage_extras(span: Any, data: Any) -> None:
    # fields_of reads a model's declared fields and the extras (fields an older SDK does not
    # declare) from its field dicts.
    if type(data) is not dict and not hasattr(data, "__pydantic_extra__"):
        return  # a stream or an unread raw response: nothing recorded here, as the SDK does
    get = fields_of(data)
    usage = get("usage")
    if usage is None:
        return
    usage_get = fields_of(usage)
    extra: dict[str, Any] = {}
    for field, key in _USAGE_EXTRAS:
        value = usage_get(field)
        if isinstance(value, str):
            extra[key] = value
    tools = usage_get("server_tool_use")
    container = get("container")
    if tools is not None or container is not None:
        add_server_tool_attributes(extra, tools, container, get("content"))
    if extra and span.is_recording():
        span.set_attributes(extra)


def usage_extras_hook(span_at: int, data_at: int, name_at: int | None = None) -> Any:
    """Wrap an SDK function that records a response on its span, to add what it leaves out.

    That is ``inference_geo``, ``speed``, ``usage.server_tool_use`` and the container.

    That is ``_tracing.set_response_attributes(span, span_name, data)`` in anthropic 2.x and
    ``lib._tracing._response.set_response(span, message, complete=...)`` in 1.x, for whole and
    streamed responses alike; ``*_at`` are the positions of the span, the response and (2.x) the
    span name among the arguments.
    """

    def factory(original: Any) -> Any:
        def hooked(*args: Any, **kwargs: Any) -> Any:
            done = original(*args, **kwargs)
            if len(args) > data_at and (
                name_at is None or args[name_at] == semconv.ANTHROPIC_SPAN_MESSAGES_CREATE
            ):
                try:
                    _usage_extras(args[span_at], args[data_at])
                except Exception as exc:
                    report_failure("SDK response", exc)
            return done

        return hooked

    return factory


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
                data: Any = getattr(result, "data", None)
                raw = getattr(data, "http_response", None)
                if raw is not None and getattr(raw, "is_closed", False):
                    # with_raw_response: parse() is cached, the app pays nothing.
                    data = data.parse()
                kind = getattr(data, "type", None)
                attrs = capture.output_attributes(data) if kind == "message" else {}
            if attrs and span.is_recording():
                span.set_attributes(attrs)
        except Exception as exc:
            report_failure("capture", exc)
        return done

    return hooked


def _is_sdk_call_span(span: ReadableSpan) -> str | None:
    # Runs for every span the app's provider starts: the operation of an SDK call span, else None.
    operation = _OPERATIONS.get(span.name)
    if operation is None:
        return None
    scope = span.instrumentation_scope
    scope_name = None if scope is None else scope.name
    if type(scope_name) is not str or not scope_name.startswith(semconv.ANTHROPIC_SCOPE):
        return None
    return operation


def _ending_attributes(attrs: Mapping[str, Any], code: StatusCode) -> dict[str, Any]:
    """What clauditor adds to an SDK call span as it ends, from what the span holds by then."""
    extra: dict[str, Any] = {}
    get = attrs.get
    inclusive = get(semconv.GEN_AI_USAGE_INPUT_TOKENS)
    uncached = get(semconv.INPUT_TOKENS_UNCACHED)
    cached = _count(get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)) + _count(
        get(semconv.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS)
    )
    if uncached is None and isinstance(inclusive, int):
        extra[semconv.INPUT_TOKENS_UNCACHED] = max(inclusive - cached, 0)
    elif inclusive is None and isinstance(uncached, int):
        extra[semconv.GEN_AI_USAGE_INPUT_TOKENS] = uncached + cached
    ttft = get(_SDK_TTFT)
    if isinstance(ttft, (int, float)) and semconv.TTFT_MS not in attrs:
        extra[semconv.TTFT_MS] = float(ttft) * 1000.0
    if get(semconv.GEN_AI_REQUEST_STREAM) is True:
        extra[semconv.STREAM_OUTCOME] = (
            "completed"
            if code is StatusCode.OK
            else "error"
            if code is StatusCode.ERROR
            else "abandoned"
        )
    return extra


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


class NativeSpanEnricher(SpanProcessor):
    """A span processor that completes the SDK's call spans with clauditor's attributes.

    Add it to the tracer provider the SDK's clients use (``instrument()`` does). It touches
    only spans from the anthropic SDK's scope; every failure is reported, never raised.
    """

    def __init__(self, metrics: Any = None) -> None:
        self.metrics = metrics
        # Processors cannot be removed from a provider; uninstrument clears this.
        self.enabled = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            operation = _is_sdk_call_span(span)
            if operation is None:
                return
            attrs: dict[str, Any] = {}
            site = CALL_SITE.get()
            location, region = site if isinstance(site, tuple) else (site, None)
            add_context_attributes(attrs, operation, 3, location)
            capture = PENDING_CAPTURE.get() if operation == "chat" else None
            current = span.attributes or {}
            if operation == "chat" and semconv.GEN_AI_REQUEST_STREAM not in current:
                attrs[semconv.GEN_AI_REQUEST_STREAM] = False
            if region is None:
                host = current.get(semconv.SERVER_ADDRESS)
                region = region_from_host(host) if type(host) is str else None
            if region is not None:
                attrs[semconv.CLOUD_REGION] = region
            if capture is not None and capture.span is None:
                capture.span = span
                if capture.full:
                    attrs.update(capture.input_attributes())
            span.set_attributes(attrs)
            self._finish_before_end(span)
        except Exception as exc:
            report_failure("enrich SDK span", exc)

    def _finish_before_end(self, span: Span) -> None:
        # The last attributes depend on what the SDK records up to the end (usage, status). The
        # SDK's span is read-only from the moment end() begins (its `_on_ending` hook sees it
        # frozen), so they are set in the one place the public API still allows: just before
        # the SDK's own end(), which this span's `end` now calls.
        sdk_end = span.end

        def end(end_time: int | None = None) -> None:
            # Back to the SDK's method (once, whichever thread ends first): the span no longer
            # holds this closure, so no reference cycle outlives it.
            vars(span).pop("end", None)
            if span.is_recording() and self.enabled:
                self._finish(span)
            sdk_end(end_time)

        span.end = end  # type: ignore[method-assign]  # this span's own attribute, not the SDK's

    def _finish(self, span: Span) -> None:
        try:
            attrs = span.attributes or {}
            extra = _ending_attributes(attrs, span.status.status_code)
            if extra:
                span.set_attributes(extra)
            if self.metrics is not None:
                start = span.start_time or time.time_ns()
                final = {**attrs, **extra} if extra else attrs
                self.metrics.record(final, (time.time_ns() - start) / 1e9)
        except Exception as exc:
            report_failure("finish SDK span", exc)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
