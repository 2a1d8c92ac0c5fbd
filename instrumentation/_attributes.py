"""Span attributes from a call's context, request, response and error (the convention in DESIGN §3).

Token counts follow two meanings at once, so no reader has to do cache arithmetic:
``gen_ai.usage.input_tokens`` is INCLUSIVE (uncached + cache read + cache write, as the OTel
semconv says) and ``clauditor.usage.input_tokens`` is Anthropic's UNCACHED count.

Every reader here tolerates a malformed body: a count that is not an int is left out rather
than guessed, and nothing here raises for odd input.
"""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any

from clauditor import semconv
from clauditor.redact import scrub

from ._context import current_feature

__all__ = [
    "code_location",
    "context_attributes",
    "error_attributes",
    "message_attributes",
    "request_attributes",
    "usage_attributes",
]

# Top-level packages whose frames are never "the app" when looking for the calling code.
_INTERNAL = frozenset(
    {
        "anthropic",
        "opentelemetry",
        "clauditor",
        "httpx",
        "httpx2",
        "httpcore",
        "wrapt",
        "contextlib",
        "asyncio",
        "functools",
        "threading",
        "concurrent",
        "importlib",
    }
)
_code_labels: dict[CodeType, str | None] = {}


def _label(code: CodeType, module: str | None) -> str | None:
    top = (module or "").partition(".")[0]
    if not module or top in _INTERNAL:
        return None
    return f"{module}:{code.co_qualname}"


def code_location(depth: int = 2) -> str | None:
    """``module:function`` of the first frame outside the SDK, OpenTelemetry and clauditor.

    Labels are cached per code object, so the walk costs a dict lookup per frame.
    """
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return None
    labels = _code_labels
    while frame is not None:
        code = frame.f_code
        try:
            label = labels[code]
        except KeyError:
            label = labels[code] = _label(code, frame.f_globals.get("__name__"))
        if label is not None:
            return label
        frame = frame.f_back  # type: ignore[assignment]
    return None


def context_attributes(operation: str) -> dict[str, Any]:
    """The attributes every call span starts with: operation, feature, user, tags, code location."""
    attrs: dict[str, Any] = {semconv.OPERATION: operation}
    ctx = current_feature()
    if ctx is not None:
        attrs[semconv.FEATURE] = ctx.name
        if ctx.user_id is not None:
            attrs[semconv.USER_ID] = ctx.user_id
        for key, value in ctx.tags:
            if key == "conversation_id":
                attrs[semconv.GEN_AI_CONVERSATION_ID] = value
            else:
                attrs[semconv.TAG_PREFIX + key] = scrub(value)
    location = code_location(3)
    if location is not None:
        attrs[semconv.CODE_LOCATION] = location
    return attrs


def request_attributes(kwargs: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """What the request of a Messages call says: model, max_tokens (only when set), stream."""
    attrs: dict[str, Any] = {
        semconv.GEN_AI_PROVIDER_NAME: "anthropic",
        semconv.GEN_AI_REQUEST_STREAM: stream,
    }
    model = kwargs.get("model")
    if isinstance(model, str):
        attrs[semconv.GEN_AI_REQUEST_MODEL] = model
    max_tokens = kwargs.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attrs[semconv.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    tier = kwargs.get("service_tier")
    if isinstance(tier, str):
        attrs[semconv.ANTHROPIC_REQUEST_SERVICE_TIER] = tier
    return attrs


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def _count(value: Any) -> int | None:
    # A count is a non-negative int; bool (an int subclass) and anything else is left out.
    return value if type(value) is int and value >= 0 else None


_STRING_FIELDS = (
    ("service_tier", semconv.ANTHROPIC_RESPONSE_SERVICE_TIER),
    ("inference_geo", semconv.INFERENCE_GEO),
    ("speed", semconv.SPEED),
)
_MESSAGE_FIELDS = (
    ("id", semconv.GEN_AI_RESPONSE_ID),
    ("model", semconv.GEN_AI_RESPONSE_MODEL),
    ("stop_reason", semconv.ANTHROPIC_STOP_REASON),
)


def usage_attributes(usage: Any, *, output: bool = True) -> dict[str, Any]:
    """Token attributes from an Anthropic ``usage`` object (a model or a dict).

    ``output=False`` leaves out ``output_tokens`` (a stream's ``message_start`` placeholder).
    Runs once per call: plain attribute reads, no per-field helper calls beyond ``_count``.
    """
    attrs: dict[str, Any] = {}
    if usage is None:
        return attrs
    if type(usage) is dict:
        get = usage.get
    else:
        # Pydantic models keep declared fields in __dict__ and unknown ones (a newer API's usage
        # fields on an older SDK) in __pydantic_extra__; reading both avoids a getattr miss,
        # which costs a raised AttributeError per absent field.
        fields = getattr(usage, "__dict__", None)
        if type(fields) is dict:
            extra = getattr(usage, "__pydantic_extra__", None)
            get = {**fields, **extra}.get if extra else fields.get
        else:
            get = lambda name: getattr(usage, name, None)  # noqa: E731
    uncached = _count(get("input_tokens"))
    read = _count(get("cache_read_input_tokens"))
    write = _count(get("cache_creation_input_tokens"))
    if uncached is not None:
        attrs[semconv.INPUT_TOKENS_UNCACHED] = uncached
        attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] = uncached + (read or 0) + (write or 0)
    if read is not None:
        attrs[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = read
    if write is not None:
        attrs[semconv.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS] = write
    split = get("cache_creation")
    if split is not None:
        five = _count(_get(split, "ephemeral_5m_input_tokens"))
        hour = _count(_get(split, "ephemeral_1h_input_tokens"))
        if five is not None:
            attrs[semconv.ANTHROPIC_CACHE_5M_INPUT_TOKENS] = five
        if hour is not None:
            attrs[semconv.ANTHROPIC_CACHE_1H_INPUT_TOKENS] = hour
    if output:
        out = _count(get("output_tokens"))
        if out is not None:
            attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = out
    for field, key in _STRING_FIELDS:
        value = get(field)
        if type(value) is str:
            attrs[key] = value
    return attrs


def message_attributes(message: Any) -> dict[str, Any]:
    """Attributes of a complete Message: id, model, stop reason and usage."""
    attrs: dict[str, Any] = {}
    for field, key in _MESSAGE_FIELDS:
        value = _get(message, field)
        if type(value) is str:
            attrs[key] = value
    attrs.update(usage_attributes(_get(message, "usage")))
    return attrs


def error_attributes(exc: BaseException) -> dict[str, Any]:
    """``error.type`` and the HTTP status of a failed call, from the SDK's exception.

    API errors give the type in their envelope (``overloaded_error``, ...); timeouts give
    ``client_timeout_error`` and transport failures ``connection_error``, as the SDK's own spans do.
    """
    attrs: dict[str, Any] = {}
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = status
    kind = type(exc).__name__
    if kind == "APITimeoutError" or "Timeout" in kind:
        error_type = "client_timeout_error"
    elif kind == "APIConnectionError" or "Connect" in kind:
        error_type = "connection_error"
    else:
        error_type = None
        envelope = _get(getattr(exc, "body", None), "error")
        inner = _get(envelope, "type")
        if isinstance(inner, str):
            error_type = inner
        else:
            outer = _get(getattr(exc, "body", None), "type")
            if isinstance(outer, str) and outer != "error":
                error_type = outer
        if error_type is None:
            error_type = str(status) if isinstance(status, int) else kind
    attrs[semconv.ERROR_TYPE] = error_type
    return attrs
