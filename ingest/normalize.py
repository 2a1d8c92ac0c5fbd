"""One span in, one ``calls`` row out (DESIGN §3), whatever instrumentation wrote the span.

A span is a Claude API call when it carries a model attribute (``gen_ai.request.model`` or
``gen_ai.response.model``), a ``clauditor.operation``, or an ``anthropic.messages.*`` name, and
its provider (when named) is Anthropic or its model is a Claude model. Everything else (HTTP
spans, app spans, other providers' calls) gives ``None``: ignored, not rejected.

The token columns follow Anthropic's meaning: ``input_tokens`` is the UNCACHED input. Our own
spans carry it directly (``clauditor.usage.input_tokens``); other sources carry only the OTel
count, which INCLUDES cache reads and writes, so the cache counts are subtracted (never below 0).

Each instrumentation is a :class:`Convention`: how to recognise its spans plus which attribute
keys feed which column, first key present wins. Adding a convention (OpenLLMetry,
OpenInference, ...) is adding one entry to :data:`CONVENTIONS`.

A malformed span raises :class:`SpanRejected` with a reason a person can act on; nothing here
raises anything else for bad input.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from clauditor import semconv as sc
from clauditor.redact import is_secret_key, scrub, scrub_attributes
from clauditor.schema import CALLS_COLUMNS, COST_COLUMNS

__all__ = [
    "CONVENTIONS",
    "GENAI_KEYS",
    "MAX_TOKEN_COUNT",
    "Convention",
    "SpanRecord",
    "SpanRejected",
    "normalize",
]

MAX_TOKEN_COUNT = 100_000_000  # no single call comes near this; larger means a broken exporter

STATUS_CODE_ERROR = 2  # OTLP Status.code
BAGGAGE_FEATURE_ATTRIBUTE = "baggage." + sc.BAGGAGE_FEATURE  # baggage copied onto the span
_CLAUDITOR_PREFIX = "clauditor."

_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_ZERO16 = "0" * 16
_ZERO32 = "0" * 32
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_ERROR_TYPE_ALIASES = {"client_timeout_error": "timeout"}
_OPERATION_BY_SPAN_NAME = {
    sc.ANTHROPIC_SPAN_COUNT_TOKENS: "count_tokens",
    "anthropic.messages.batches.results": "batch",
}
_OPERATION_BY_GENAI_NAME = {"chat": "chat", "text_completion": "chat"}


@dataclass(slots=True)
class SpanRecord:
    """A span as every ingest path hands it over: ids as hex strings, times in Unix nanoseconds,
    attributes and resource as plain dicts (OTLP KeyValue lists already flattened)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope_name: str
    scope_version: str | None


class SpanRejected(Exception):
    """A span (or a whole OTLP request) that cannot become a row; ``reason`` says why.

    ``payload`` is the offending input when the raiser has it (a raw span or request), so that
    it can be quarantined; it may hold secrets and must be scrubbed before it is stored.
    """

    def __init__(self, reason: str, payload: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payload = payload


# --- conventions -------------------------------------------------------------------------------

# The fields a convention fills, each from the first attribute key present. Counts are checked
# (rejecting the span when broken); the informative numbers (max_tokens, http_status, ...) are
# taken when they parse and otherwise left in the attributes JSON.
GENAI_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "request_model": (sc.GEN_AI_REQUEST_MODEL,),
        "response_model": (sc.GEN_AI_RESPONSE_MODEL,),
        "input_uncached": (sc.INPUT_TOKENS_UNCACHED,),  # Anthropic meaning
        "input_inclusive": (sc.GEN_AI_USAGE_INPUT_TOKENS,),  # OTel meaning: cache included
        "output_tokens": (sc.GEN_AI_USAGE_OUTPUT_TOKENS,),
        "cache_read": (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.OPENLLMETRY_CACHE_READ),
        "cache_write": (
            sc.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
            sc.OPENLLMETRY_CACHE_CREATION,
        ),
        "cache_write_5m": (sc.ANTHROPIC_CACHE_5M_INPUT_TOKENS,),
        "cache_write_1h": (sc.ANTHROPIC_CACHE_1H_INPUT_TOKENS,),
        "operation": (sc.OPERATION,),
        "genai_operation": (sc.GEN_AI_OPERATION_NAME,),
        "max_tokens": (sc.GEN_AI_REQUEST_MAX_TOKENS,),
        "stream": (sc.GEN_AI_REQUEST_STREAM,),
        "ttft_ms": (sc.TTFT_MS,),
        "http_status": (sc.HTTP_RESPONSE_STATUS_CODE,),
        "retries": (sc.HTTP_REQUEST_RESEND_COUNT,),
        "error_type": (sc.ERROR_TYPE,),
        "finish_reasons": (sc.GEN_AI_RESPONSE_FINISH_REASONS,),
        "user_id": (sc.USER_ID, sc.OPENINFERENCE_USER_ID, sc.ENDUSER_ID),
        "conversation_id": (sc.GEN_AI_CONVERSATION_ID,),
        "code_location": (sc.CODE_LOCATION,),
        "service_tier": (sc.ANTHROPIC_RESPONSE_SERVICE_TIER, sc.ANTHROPIC_REQUEST_SERVICE_TIER),
        "inference_geo": (sc.INFERENCE_GEO,),
        "speed": (sc.SPEED,),
        "stop_reason": (sc.ANTHROPIC_STOP_REASON,),
    }
)


@dataclass(frozen=True)
class Convention:
    """How one instrumentation writes a Claude call.

    ``matches(attributes, scope_name)`` recognises its spans; ``keys`` maps every field of
    :data:`GENAI_KEYS` to the attribute keys that may carry it (first present wins). Every key
    in ``keys`` is consumed: it is not repeated in the ``attributes`` JSON. ``provider_keys``
    name the provider, used only to skip other providers' calls. A new convention is usually
    ``Convention("name", detect, {**GENAI_KEYS, "request_model": ("llm.model_name",), ...})``.
    """

    source: str
    matches: Callable[[Mapping[str, Any], str], bool]
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: GENAI_KEYS)
    provider_keys: tuple[str, ...] = (sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM)
    # Derived once, for the per-span path.
    single: tuple[tuple[str, str], ...] = field(init=False, repr=False)
    multi: tuple[tuple[str, tuple[str, ...]], ...] = field(init=False, repr=False)
    mapped: frozenset[str] = field(init=False, repr=False)
    model_keys: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        missing = set(GENAI_KEYS) - set(self.keys)
        if missing:
            raise ValueError(f"convention {self.source!r} lacks keys for {sorted(missing)}")
        items = tuple(self.keys.items())
        set_ = object.__setattr__
        set_(self, "single", tuple((name, keys[0]) for name, keys in items if len(keys) == 1))
        set_(self, "multi", tuple((name, keys) for name, keys in items if len(keys) != 1))
        set_(self, "mapped", frozenset(key for _, keys in items for key in keys))
        set_(self, "model_keys", self.keys["request_model"] + self.keys["response_model"])


_CLAUDITOR_KEYS = frozenset(
    {
        sc.FEATURE,
        sc.USER_ID,
        sc.CODE_LOCATION,
        sc.OPERATION,
        sc.INPUT_TOKENS_UNCACHED,
        sc.INFERENCE_GEO,
        sc.SPEED,
        sc.TTFT_MS,
    }
)


def _is_clauditor(attributes: Mapping[str, Any], scope_name: str) -> bool:
    if scope_name == sc.CLAUDITOR_SCOPE or not _CLAUDITOR_KEYS.isdisjoint(attributes):
        return True  # the set test answers for almost every span, in C
    return any(type(k) is str and k.startswith(_CLAUDITOR_PREFIX) for k in attributes)


def _is_anthropic_sdk(attributes: Mapping[str, Any], scope_name: str) -> bool:
    return scope_name == sc.ANTHROPIC_SCOPE


def _always(attributes: Mapping[str, Any], scope_name: str) -> bool:
    return True


# First match wins. Our own spans first: they may ride on the SDK's scope, and their clauditor
# attributes are what make them exact. The last entry catches every other gen_ai span.
CONVENTIONS: tuple[Convention, ...] = (
    Convention("clauditor", _is_clauditor),
    Convention("anthropic-sdk", _is_anthropic_sdk),
    Convention("otel-genai", _always),
)


# --- value parsing -----------------------------------------------------------------------------


def _present_key(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """The key a field was read from (for messages; off the fast path)."""
    return next((k for k in keys if attributes.get(k) is not None), keys[0])


def _count(fields: dict[str, Any], name: str, attrs: Mapping[str, Any], conv: Convention) -> Any:
    """A token count: an integer (or integral string/float) in [0, MAX_TOKEN_COUNT]."""
    value = fields[name]
    if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    if value is None:
        return None
    key = _present_key(attrs, conv.keys[name])
    kind = type(value)
    n: int
    if kind is int:
        n = value
    elif kind is str:
        try:
            n = int(value)
        except ValueError:
            raise SpanRejected(f"{key} is not an integer: {value[:40]!r}") from None
    elif kind is float and value.is_integer():
        n = int(value)
    else:
        raise SpanRejected(f"{key} is not an integer: {str(value)[:40]!r}")
    if n < 0:
        raise SpanRejected(f"{key} is negative: {n}")
    if n > MAX_TOKEN_COUNT:
        raise SpanRejected(f"{key} is absurdly large: {n} (more than {MAX_TOKEN_COUNT:,})")
    return n


def _lenient(
    fields: dict[str, Any],
    name: str,
    convert: Callable[[Any], Any],
    rest: dict[str, Any],
    attrs: Mapping[str, Any],
    conv: Convention,
) -> Any:
    """An informative number: converted when it can be, else NULL and kept in the attributes."""
    value = fields[name]
    if value is None:
        return None
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError):
        key = _present_key(attrs, conv.keys[name])
        rest[key] = value
        return None


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def _to_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(value)


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


# One encoder for all spans: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


@functools.lru_cache(maxsize=8192)
def _secret_key(key: str) -> bool:
    # Attribute keys repeat across spans: remember the verdict instead of re-testing markers.
    return is_secret_key(key)


def _json(attributes: dict[str, Any]) -> str:
    """Compact JSON of ``attributes`` after :func:`clauditor.redact.scrub_attributes`' rules."""
    if not attributes:
        return "{}"
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        if type(key) is not str:
            key = str(key)
        if _secret_key(key):
            continue
        if type(value) is str:
            value = scrub(value)
        elif type(value) is list:
            value = [scrub(v) if type(v) is str else v for v in value]
        elif type(value) is dict:
            value = scrub_attributes(value)
        clean[key] = value
    return _encode(clean)


# --- resource ----------------------------------------------------------------------------------

# Spans of one OTLP request share one resource dict: its columns are computed once and reused
# while the same object comes back. A strong reference is held, so an identity match cannot be a
# recycled id; callers must not mutate a resource dict between spans.
_resource_cache: tuple[Any, tuple[str | None, str | None, str]] = (None, (None, None, "{}"))


def _resource_columns(resource: dict[str, Any]) -> tuple[str | None, str | None, str]:
    global _resource_cache
    cached = _resource_cache  # one read: the tuple is swapped whole, so threads never see half
    if cached[0] is resource:
        return cached[1]
    rest = dict(resource)
    service = _text(rest.pop(sc.SERVICE_NAME, None))
    env = rest.pop(sc.DEPLOYMENT_ENVIRONMENT_NAME, None)
    older = rest.pop(sc.DEPLOYMENT_ENVIRONMENT, None)
    columns = (service, _text(env if env is not None else older), _json(rest))
    _resource_cache = (resource, columns)
    return columns


# --- the row -----------------------------------------------------------------------------------


def _check_ids_and_times(record: SpanRecord) -> tuple[str, str, str | None]:
    span_id = record.span_id
    if type(span_id) is not str or not _HEX16.fullmatch(span_id) or span_id == _ZERO16:
        raise SpanRejected(f"span_id is not 16 hex characters (or is all zeros): {span_id!r:.40}")
    trace_id = record.trace_id
    if type(trace_id) is not str or not _HEX32.fullmatch(trace_id) or trace_id == _ZERO32:
        raise SpanRejected(f"trace_id is not 32 hex characters (or is all zeros): {trace_id!r:.60}")
    parent: Any = record.parent_span_id
    if not parent or parent == _ZERO16:
        parent = None
    else:
        parent = parent.lower() if type(parent) is str else str(parent)
    start_ns = record.start_ns
    if type(start_ns) is not int or start_ns <= 0:
        raise SpanRejected("span has no start time")
    end_ns = record.end_ns
    if type(end_ns) is not int or end_ns < start_ns:
        raise SpanRejected(f"span ends before it starts (start {start_ns}, end {end_ns})")
    return span_id.lower(), trace_id.lower(), parent


def _is_claude_call(record: SpanRecord, conv: Convention) -> bool:
    attributes = record.attributes
    models = [v for k in conv.model_keys if (v := attributes.get(k)) is not None]
    if not models:
        return sc.OPERATION in attributes or record.name.startswith("anthropic.messages")
    for key in conv.provider_keys:
        provider = attributes.get(key)
        if provider is not None:
            # Another provider's call, unless it is Claude served elsewhere (Bedrock, Vertex).
            return "anthropic" in str(provider).lower() or any(
                "claude" in str(m).lower() for m in models
            )
    return True


_mapped_cache: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {}


def _mapped(conv: Convention, feature_attributes: tuple[str, ...]) -> frozenset[str]:
    """Every key that feeds a column under ``conv`` with these feature keys."""
    cache_key = (conv.source, feature_attributes)
    mapped = _mapped_cache.get(cache_key)
    if mapped is None:
        mapped = conv.mapped | set(feature_attributes) | {BAGGAGE_FEATURE_ATTRIBUTE}
        _mapped_cache[cache_key] = mapped
    return mapped


def _row(record: SpanRecord, feature_attributes: Sequence[str]) -> dict[str, Any] | None:
    """The row without costs, with ``start_time``/``end_time`` as Unix MICROseconds (ints).

    File ingest builds its frames from these and converts the times in Polars, much faster than
    making two datetime objects per span.
    """
    attrs = record.attributes
    scope_name = record.scope_name
    conv = CONVENTIONS[-1]
    for candidate in CONVENTIONS:
        if candidate.matches(attrs, scope_name):
            conv = candidate
            break
    if not _is_claude_call(record, conv):
        return None
    span_id, trace_id, parent = _check_ids_and_times(record)

    get = attrs.get
    f = {name: get(key) for name, key in conv.single}
    for name, keys in conv.multi:
        value = None
        for key in keys:
            value = get(key)
            if value is not None:
                break
        f[name] = value
    if type(feature_attributes) is not tuple:
        feature_attributes = tuple(feature_attributes)
    mapped = _mapped(conv, feature_attributes)
    rest = {k: v for k, v in attrs.items() if k not in mapped}

    for name in ("request_model", "response_model"):
        value = f[name]
        if value is not None and type(value) is not str:
            key = _present_key(attrs, conv.keys[name])
            raise SpanRejected(f"{key} is not a string: {str(value)[:40]!r}")

    operation = f["operation"]
    if operation is None:
        operation = _OPERATION_BY_SPAN_NAME.get(record.name)
        if operation is None:
            genai = _text(f["genai_operation"])
            operation = "chat" if genai is None else _OPERATION_BY_GENAI_NAME.get(genai, genai)
    operation = _text(operation)

    if operation == "count_tokens":
        # A count is not usage: the token columns stay NULL and the count goes to attributes.
        input_tokens = output_tokens = cache_read = cache_write = cache_5m = cache_1h = None
        counted = f["input_inclusive"] if f["input_inclusive"] is not None else f["input_uncached"]
        if counted is not None:
            rest.setdefault(sc.ANTHROPIC_COUNT_TOKENS_INPUT_TOKENS, counted)
    else:
        cache_read = _count(f, "cache_read", attrs, conv)
        cache_write = _count(f, "cache_write", attrs, conv)
        cache_5m = _count(f, "cache_write_5m", attrs, conv)
        cache_1h = _count(f, "cache_write_1h", attrs, conv)
        if cache_write is None and (cache_5m is not None or cache_1h is not None):
            cache_write = (cache_5m or 0) + (cache_1h or 0)
        output_tokens = _count(f, "output_tokens", attrs, conv)
        input_tokens = _count(f, "input_uncached", attrs, conv)
        inclusive = _count(f, "input_inclusive", attrs, conv)
        if input_tokens is None and inclusive is not None:
            # The cache trap (DESIGN §3): OTel's count includes cache reads and writes.
            input_tokens = max(inclusive - (cache_read or 0) - (cache_write or 0), 0)

    feature = None
    for key in feature_attributes:
        feature = get(key)
        if feature is not None:
            break
    else:
        feature = get(BAGGAGE_FEATURE_ATTRIBUTE)

    error_type = _text(f["error_type"])
    if error_type is not None:
        error_type = _ERROR_TYPE_ALIASES.get(error_type, error_type)
    status = "error" if record.status_code == STATUS_CODE_ERROR or error_type else "ok"

    stop_reason = _text(f["stop_reason"])
    if stop_reason is None:
        finish = f["finish_reasons"]
        if type(finish) is list:
            finish = finish[0] if finish else None
        stop_reason = _text(finish)

    service, environment, resource_json = _resource_columns(record.resource)
    start_ns = record.start_ns
    end_ns = record.end_ns
    # Informative numbers: the common well-typed value directly, anything else parsed leniently.
    ttft_ms = f["ttft_ms"]
    if ttft_ms is not None and type(ttft_ms) is not float:
        ttft_ms = _lenient(f, "ttft_ms", _to_float, rest, attrs, conv)
    max_tokens = f["max_tokens"]
    if max_tokens is not None and type(max_tokens) is not int:
        max_tokens = _lenient(f, "max_tokens", _to_int, rest, attrs, conv)
    stream = f["stream"]
    if stream is not None and type(stream) is not bool:
        stream = _lenient(f, "stream", _to_bool, rest, attrs, conv)
    http_status = f["http_status"]
    if http_status is not None and type(http_status) is not int:
        http_status = _lenient(f, "http_status", _to_int, rest, attrs, conv)
    retries = f["retries"]
    if type(retries) is not int:
        retries = _lenient(f, "retries", _to_int, rest, attrs, conv) or 0

    return {
        "span_id": span_id,
        "trace_id": trace_id,
        "parent_span_id": parent,
        "start_time": start_ns // 1000,
        "end_time": end_ns // 1000,
        "duration_ms": (end_ns - start_ns) / 1e6,
        "ttft_ms": ttft_ms,
        "service": service,
        "environment": environment,
        "feature": _text(feature),
        "user_id": _text(f["user_id"]),
        "conversation_id": _text(f["conversation_id"]),
        "code_location": _text(f["code_location"]),
        "operation": operation,
        "request_model": f["request_model"],
        "response_model": f["response_model"],
        "max_tokens": max_tokens,
        "stream": stream,
        "service_tier": _text(f["service_tier"]),
        "inference_geo": _text(f["inference_geo"]),
        "speed": _text(f["speed"]),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "cache_creation_5m_input_tokens": cache_5m,
        "cache_creation_1h_input_tokens": cache_1h,
        "stop_reason": stop_reason,
        "status": status,
        "http_status": http_status,
        "error_type": error_type,
        "retries": retries,
        "source": conv.source,
        "attributes": _json(rest),
        "resource": resource_json,
    }


ROW_COLUMNS: tuple[str, ...] = tuple(
    name for name, _, _ in CALLS_COLUMNS if name not in COST_COLUMNS and name != "price_version"
)


def normalize(
    record: SpanRecord, *, feature_attributes: Sequence[str] = (sc.FEATURE,)
) -> dict[str, Any] | None:
    """The ``calls`` row for ``record``, or ``None`` when the span is not a Claude API call.

    Keys are the ``calls`` column names; ``start_time``/``end_time`` are UTC datetimes
    (microsecond precision); the cost columns and ``price_version`` are present but ``None``
    (price rows with :func:`clauditor.pricing.price_calls`). ``feature_attributes`` are the
    attribute keys tried in order for the feature (config ``[ingest] feature_attributes``),
    then the W3C baggage copy ``baggage.clauditor.feature``.

    Raises :class:`SpanRejected` when the span is malformed: bad ids, missing or inverted
    times, token counts that are not sane integers, a model that is not a string.
    """
    row = _row(record, feature_attributes)
    if row is None:
        return None
    row["start_time"] = _EPOCH + dt.timedelta(microseconds=row["start_time"])
    row["end_time"] = _EPOCH + dt.timedelta(microseconds=row["end_time"])
    for name in COST_COLUMNS:
        row[name] = None
    row["price_version"] = None
    return row
