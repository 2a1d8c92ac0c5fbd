"""One traced API call: the span clauditor owns when the SDK makes none (SDK spans off, or 0.x).

A :class:`Call` is started by a wrapper, learns the HTTP status and retries from the SDK hooks,
learns usage from the response or from stream events, and ends exactly once. No method raises:
each catches its own failure, reports it, and lets the app's call go on untouched.

The span itself is made only when the call ends: ``start_span`` with the start time and parent
context recorded when the call began and every attribute at once, then its status, then
``end``. That is the cheapest way through the OpenTelemetry API's public methods (one pass of
the SDK's validation, not one per attribute), and changes nothing a reader sees: clauditor's
span is never made the current span (the SDK's own HTTP work is not a child of it), so it need
not exist earlier. Span processors' ``on_start`` sees the span with all its attributes.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from clauditor import semconv
from clauditor.instrumentation._attributes import (
    add_message_attributes,
    add_message_ids,
    add_server_tool_attributes,
    add_usage_attributes,
    code_location,
    error_attributes,
    field_dict,
    fields_of,
    is_code_execution_use,
    request_attributes,
)
from clauditor.instrumentation._capture import CallCapture, CapturePolicy
from clauditor.instrumentation._context import ACTIVE_FEATURE, current_feature
from clauditor.instrumentation._safety import report_failure
from clauditor.redact import clip

__all__ = ["ACTIVE_CALL", "Call", "start_call"]

# The call whose request is in flight in this thread / task, for the SDK-level hooks.
ACTIVE_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "clauditor_active_call", default=None
)

_CLIENT = SpanKind.CLIENT
_OK = Status(StatusCode.OK)
_OK_CODE = StatusCode.OK
# Read once per call: a module constant is one lookup, semconv.X two.
_HTTP_STATUS = semconv.HTTP_RESPONSE_STATUS_CODE
_REQUEST_STREAM = semconv.GEN_AI_REQUEST_STREAM
_REQUEST_ID = semconv.ANTHROPIC_REQUEST_ID

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "service_tier",
    "inference_geo",
    "speed",
    "server_tool_use",
)


class Call:
    """The state of one call and its span while the call (or its stream) runs."""

    __slots__ = (
        "_capture",
        "_code_uses",
        "_container",
        "_ended",
        "_first_token_ns",
        "_metrics",
        "_saw_delta",
        "_saw_stop",
        "_usage",
        "attrs",
        "name",
        "parent",
        "skip_deltas",
        "start_ns",
        "streaming",
        "tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        attrs: dict[str, Any],
        metrics: Any,
        start_ns: int,
        capture: CallCapture | None,
        parent: otel_context.Context,
    ) -> None:
        self.tracer = tracer
        self.name = name
        # The span's parent is decided where the call began (the then current context), not
        # where its stream ends.
        self.parent = parent
        self.attrs = attrs
        self.start_ns = start_ns
        # The stream's state is set up by start_stream(), when (and only if) a stream proxy takes
        # the call over; every reader of it runs after that.
        self.streaming = False
        self._metrics = metrics
        self._ended = False
        self._capture = capture

    def start_stream(self) -> None:
        """A stream proxy now owns the call: its events come to :meth:`event`, it ends the span."""
        # True once text deltas tell this call nothing more (first token seen, no capture):
        # the stream proxies then pass them by without calling event().
        self.skip_deltas = False
        self._first_token_ns = 0
        self._saw_delta = False
        self._saw_stop = False
        self._usage: dict[str, Any] | None = None
        self._container: Any = None  # message.container, from message_start or message_delta
        self._code_uses = 0  # code execution tool uses, counted as their blocks start
        self.streaming = True

    # --- facts learned during the call ------------------------------------------------------

    def on_http(self, response: Any, retries: int | None) -> None:
        """The successful HTTP response and how many resends it took (``None``: none)."""
        attrs = self.attrs
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            attrs[_HTTP_STATUS] = status
        if retries:
            attrs[semconv.HTTP_REQUEST_RESEND_COUNT] = retries
        if attrs[_REQUEST_STREAM]:  # always set by start_call
            # A parsed Message carries its request id (read in returned()); a stream does not,
            # and reading httpx headers costs more than the rest of this hook.
            headers = getattr(response, "headers", None)
            if headers is not None:
                request_id = headers.get("request-id")
                if request_id:
                    self.attrs[semconv.ANTHROPIC_REQUEST_ID] = request_id

    def on_retry(self, retries_taken: int) -> None:
        """The SDK is about to resend the request (a retry)."""
        self.attrs[semconv.HTTP_REQUEST_RESEND_COUNT] = retries_taken + 1

    def event(self, event: Any) -> None:
        """One stream event. Cheap on purpose: it runs for every token chunk."""
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            if not self._first_token_ns:
                self._first_token_ns = time.time_ns()
            if self._capture is not None:
                self._capture_event(event)
            else:
                self.skip_deltas = True
            return
        try:
            if self._capture is not None:
                self._capture_event(event)
            if kind == "message_start":
                # The usage becomes attributes once, when the stream ends (_finish_stream).
                get = fields_of(event.message)
                add_message_ids(self.attrs, get)
                self._merge_usage(get("usage"))
                container = get("container")
                if container is not None:
                    self._container = container
            elif kind == "message_delta":
                self._saw_delta = True
                self._merge_usage(getattr(event, "usage", None))
                delta = getattr(event, "delta", None)
                stop = getattr(delta, "stop_reason", None)
                if isinstance(stop, str):
                    self.attrs[semconv.ANTHROPIC_STOP_REASON] = stop
                container = getattr(delta, "container", None)
                if container is not None:
                    self._container = container
            elif kind == "content_block_start":
                if is_code_execution_use(getattr(event, "content_block", None)):
                    self._code_uses += 1
            elif kind == "message_stop":
                self._saw_stop = True
        except Exception as exc:
            report_failure("stream event", exc)

    def _capture_event(self, event: Any) -> None:
        capture = self._capture
        if capture is not None and capture.full:
            try:
                capture.event(event)
            except Exception as exc:
                report_failure("capture", exc)

    def _merge_usage(self, usage: Any) -> None:
        # message_delta usage is cumulative: a field it carries replaces message_start's value.
        if usage is None:
            return
        fields = field_dict(usage, _USAGE_FIELDS)
        merged = self._usage
        if merged is None:
            self._usage = dict(fields)  # a copy: later events' values go into it
            return
        for name, value in fields.items():
            if value is not None:
                merged[name] = value

    # --- ends -------------------------------------------------------------------------------

    def returned(self, result: Any) -> None:
        """The SDK method returned ``result``; end the span unless a stream now owns it."""
        if self._ended or self.streaming:
            return
        attrs = self.attrs
        try:
            message = None
            if getattr(result, "type", None) == "message":
                message = result
            elif hasattr(result, "http_response") and not attrs.get(_REQUEST_STREAM):
                # with_raw_response: the SDK caches what parse() returns, so the app pays nothing.
                message = result.parse()
            if message is not None:
                request_id = add_message_attributes(attrs, message)
                if type(request_id) is str:
                    attrs[_REQUEST_ID] = request_id
                if self._capture is not None:
                    attrs.update(self._capture.output_attributes(message))
            else:
                count = getattr(result, "input_tokens", None)
                if isinstance(count, int) and not hasattr(result, "usage"):
                    attrs[semconv.ANTHROPIC_COUNT_TOKENS_INPUT_TOKENS] = count
        except Exception as exc:
            report_failure("response", exc)
        self._end(_OK_CODE)

    def fail(self, exc: BaseException) -> None:
        """The call (or its stream) raised ``exc``."""
        if self._ended:
            return
        if not isinstance(exc, Exception):  # cancellation, KeyboardInterrupt: not an API error
            self._finish_stream("abandoned")
            self._end(StatusCode.UNSET)
            return
        try:
            self.attrs.update(error_attributes(exc))
            if self._capture is not None:
                self.attrs.update(self._capture.error_attributes(exc))
        except Exception as inner:
            report_failure("error", inner)
        self._finish_stream("error")
        self._end(StatusCode.ERROR, clip(str(exc), 200))

    def stream_ended(self) -> None:
        """The stream was read to its end."""
        if self._ended:
            return
        if self._saw_stop:
            self._finish_stream("completed")
            self._end(StatusCode.OK)
        else:
            # The server cut the stream before message_stop: the app saw no error, the span does.
            self.attrs[semconv.ERROR_TYPE] = "api_error"
            self._finish_stream("error")
            self._end(StatusCode.ERROR, "stream ended before message_stop")

    def abandoned(self) -> None:
        """The app closed or dropped the stream before its end."""
        if self._ended:
            return
        if self._saw_stop:
            self.stream_ended()
            return
        self._finish_stream("abandoned")
        self._end(StatusCode.UNSET)

    def _finish_stream(self, outcome: str) -> None:
        if not self.streaming:
            return
        self.attrs[semconv.STREAM_OUTCOME] = outcome
        usage = self._usage
        if usage:
            # message_start's output_tokens is a placeholder; only message_delta's counts.
            add_usage_attributes(self.attrs, usage, self._saw_delta)
        if self._container is not None:
            add_server_tool_attributes(self.attrs, None, self._container, None, self._code_uses)
        if self._first_token_ns:
            self.attrs[semconv.TTFT_MS] = (self._first_token_ns - self.start_ns) / 1e6
        capture = self._capture
        if capture is not None and capture.full and outcome != "error":
            try:
                stop = self.attrs.get(semconv.ANTHROPIC_STOP_REASON)
                self.attrs.update(capture.stream_output_attributes(stop))
            except Exception as exc:
                report_failure("capture", exc)

    def _end(self, code: StatusCode, description: str | None = None) -> None:
        self._ended = True
        end_ns = time.time_ns()
        attrs = self.attrs
        try:
            span = self.tracer.start_span(
                self.name, self.parent, _CLIENT, attributes=attrs, start_time=self.start_ns
            )
        except Exception as exc:
            report_failure("start span", exc)
            return
        try:
            if code is _OK_CODE:
                span.set_status(_OK)
            elif code is StatusCode.ERROR:
                span.set_status(Status(code, description))
            span.end(end_ns)
            if self._metrics is not None:
                self._metrics.record(attrs, (end_ns - self.start_ns) / 1e9)
        except Exception as exc:
            report_failure("end span", exc)


# The request attributes (and operation) of recent (span, operation, stream, model, max_tokens,
# tier) combinations: apps use few, and copying a made dict is cheaper than building one.
_REQUESTS: dict[tuple[Any, ...], dict[str, Any]] = {}
_MAX_REQUESTS = 1024


def _request_base(operation: str, kwargs: dict[str, Any], stream: bool) -> dict[str, Any]:
    attrs = request_attributes(kwargs, stream=stream)
    if operation == "chat":
        attrs[semconv.GEN_AI_OPERATION_NAME] = "chat"
    attrs[semconv.OPERATION] = operation
    return attrs


def start_call(
    tracer: Tracer,
    metrics: Any,
    span_name: str,
    operation: str,
    kwargs: dict[str, Any],
    *,
    stream: bool,
    capture: CapturePolicy | None = None,
) -> Call | None:
    """Start tracing a call; ``None`` (and the app goes on untraced) when anything fails.

    ``capture`` is the content policy (``None`` when off): a call it picks records its request
    now and its response or error when it ends.
    """
    try:
        get = kwargs.get
        max_tokens = get("max_tokens")
        # type(max_tokens) keeps True and 8.0 (left out) apart from 1 and 8 (kept).
        model, tier = get("model"), get("service_tier")
        key = (span_name, operation, stream, model, max_tokens, type(max_tokens), tier)
        try:
            attrs = _REQUESTS[key].copy()
        except KeyError:
            if len(_REQUESTS) >= _MAX_REQUESTS:
                _REQUESTS.clear()  # a runaway number of models: start over, stay bounded
            base = _REQUESTS[key] = _request_base(operation, kwargs, stream)
            attrs = base.copy()
        except TypeError:  # an unhashable value in the request: build it, do not keep it
            attrs = _request_base(operation, kwargs, stream)
        parent = otel_context.get_current()
        feature = ACTIVE_FEATURE.get()
        if feature is None and parent:  # else no feature and no baggage (an empty context)
            feature = current_feature(parent)
        if feature is not None:
            attrs.update(feature.span_attributes)
        # Frame 3 is the wrapper's caller (1 is this function, 2 the wrapper): the search for the
        # app's frame starts above clauditor's own.
        location = code_location(3)
        if location is not None:
            attrs[semconv.CODE_LOCATION] = location
        recorder = None
        if capture is not None and operation == "chat":
            recorder = CallCapture.start(capture, kwargs)
            if recorder is not None and recorder.full:
                attrs.update(recorder.input_attributes())
        return Call(tracer, span_name, attrs, metrics, time.time_ns(), recorder, parent)
    except Exception as exc:
        report_failure("start span", exc)
        return None
