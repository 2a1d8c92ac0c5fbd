"""One span in, one ``calls`` row out, whatever instrumentation wrote the span.

A span is a Claude API call when it carries a model attribute (``gen_ai.request.model`` or
``gen_ai.response.model``), a ``clauditor.operation``, or an ``anthropic.messages.*`` name, and
its provider (when named) is Anthropic or its model is a Claude model. Everything else (HTTP
spans, app spans, other providers' calls) gives ``None``: ignored, not rejected.

The token columns follow Anthropic's meaning: ``input_tokens`` is the UNCACHED input. Our own
spans carry it directly (``clauditor.usage.input_tokens``); other sources carry only the OTel
count, which INCLUDES cache reads and writes, so the cache counts are subtracted (never below 0).

Server tools (``web_search_requests``, ``web_fetch_requests``, ``code_execution_requests``) are
checked like token counts (an integral string is read, anything else rejects the span).
``cloud_region`` is the span's ``cloud.region`` (on a client span, the called endpoint's
region), else the Bedrock or Vertex region of its ``server.address``
(:func:`clauditor.cloud.region_from_host`). A resource's ``cloud.region`` is never read: it says
where the app runs, and an app on any cloud calling the first-party API would be priced as a
regional Bedrock/Vertex call.

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

import polars as pl

from clauditor import semconv as sc
from clauditor.cloud import region_from_host
from clauditor.redact import clip, is_secret_key, scrub, scrub_value
from clauditor.schema import CALLS_COLUMNS, PRICED_COLUMNS, SOURCES

__all__ = [
    "CONVENTIONS",
    "GENAI_KEYS",
    "MAX_TOKEN_COUNT",
    "Convention",
    "SpanRecord",
    "SOURCE_PREFERENCE",
    "SpanRejected",
    "normalize",
    "one_row_per_call",
]

MAX_TOKEN_COUNT = 100_000_000  # no single call comes near this; larger means a broken exporter
_MAX_INT64 = 2**63 - 1

STATUS_CODE_ERROR = 2  # OTLP Status.code
BAGGAGE_FEATURE_ATTRIBUTE = "baggage." + sc.BAGGAGE_FEATURE  # baggage copied onto the span
_CLAUDITOR_PREFIX = "clauditor."

_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_ZERO16 = "0" * 16
_ZERO32 = "0" * 32
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# error.type as the instrumentations write it -> Anthropic's error type. OpenLLMetry, OpenLIT and
# the official OTel instrumentation record the SDK's exception class (qualified or not).
_EXCEPTION_ERROR_TYPES = {
    "RateLimitError": "rate_limit_error",
    "OverloadedError": "overloaded_error",
    "InternalServerError": "api_error",
    "BadRequestError": "invalid_request_error",
    "AuthenticationError": "authentication_error",
    "PermissionDeniedError": "permission_error",
    "NotFoundError": "not_found_error",
    "RequestTooLargeError": "request_too_large",
    "APITimeoutError": "timeout",
    "APIConnectionError": "connection_error",
}
_ERROR_TYPE_ALIASES = {
    "client_timeout_error": "timeout",
    **_EXCEPTION_ERROR_TYPES,
    **{f"anthropic.{name}": kind for name, kind in _EXCEPTION_ERROR_TYPES.items()},
}
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

    def otlp_dict(
        self, attributes: dict[str, Any] | None = None, resource: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The span in OTLP/JSON's shape (for quarantine payloads), with ``attributes`` and
        ``resource`` in place of its own when given (scrubbed or clipped copies, say)."""
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id,
            "name": self.name,
            "startTimeUnixNano": self.start_ns,
            "endTimeUnixNano": self.end_ns,
            "status": {"code": self.status_code, "message": self.status_message},
            "scope": {"name": self.scope_name, "version": self.scope_version},
            "attributes": self.attributes if attributes is None else attributes,
            "resource": self.resource if resource is None else resource,
        }


class SpanRejected(Exception):
    """A span (or a whole OTLP request) that cannot become a row; ``reason`` says why.

    ``payload`` is the offending input when the raiser has it (a raw span or request), so that
    it can be quarantined; it may hold secrets and must be scrubbed before it is stored.
    """

    def __init__(self, reason: str, payload: Any = None) -> None:
        # Reasons quote the offending value, and they are printed, stored and sent back to
        # senders: scrub them here, once, for every path.
        reason = scrub(reason)
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
        # Server tools and the container: clauditor's names only. Neither the OTel GenAI
        # semconv, the anthropic SDK's own spans (2.x), OpenLLMetry, OpenInference nor OpenLIT
        # record usage.server_tool_use or the container.
        "web_search_requests": (sc.WEB_SEARCH_REQUESTS,),
        "web_fetch_requests": (sc.WEB_FETCH_REQUESTS,),
        "code_execution_requests": (sc.CODE_EXECUTION_REQUESTS,),
        "container_id": (sc.CONTAINER_ID,),
        # The span's cloud.region (the called endpoint's); else derived from server.address.
        "cloud_region": (sc.CLOUD_REGION,),
    }
)


# refine(record, row, rest, feature_attributes): see Convention.
Refine = Callable[[SpanRecord, dict[str, Any], dict[str, Any], tuple[str, ...]], None]


@dataclass(frozen=True)
class Markers:
    """A detector made of data: a span matches when its scope name is one of ``scopes`` (or
    starts with one of ``scope_prefixes``) or it carries one of ``keys``.

    Conventions detected this way are decided by Python in every ingest path: the columnar
    engine hands any span that matches one of them to :func:`normalize` (it reads these fields).
    A matching scope also makes a span without a model a Claude call: those scopes belong to
    Anthropic-only instrumentations, whose failed-call spans may name no model at all.
    """

    scopes: frozenset[str] = frozenset()
    scope_prefixes: tuple[str, ...] = ()
    keys: frozenset[str] = frozenset()

    def owns_scope(self, scope_name: str) -> bool:
        """Whether spans of this scope are always Anthropic API calls."""
        return scope_name in self.scopes or scope_name.startswith(self.scope_prefixes)

    def __call__(self, attributes: Mapping[str, Any], scope_name: str) -> bool:
        return self.owns_scope(scope_name) or not self.keys.isdisjoint(attributes)


@dataclass(frozen=True)
class Convention:
    """How one instrumentation writes a Claude call.

    ``matches(attributes, scope_name)`` recognises its spans; ``keys`` maps every field of
    :data:`GENAI_KEYS` to the attribute keys that may carry it (first present wins). Every key
    in ``keys`` is consumed: it is not repeated in the ``attributes`` JSON. ``provider_keys``
    name the provider, used only to skip other providers' calls. A new convention is usually
    ``Convention("name", detect, {**GENAI_KEYS, "request_model": ("llm.model_name",), ...})``.

    ``feature_keys`` are the convention's own places for the feature, tried after the configured
    keys and the baggage copy. ``refine(record, row, rest)`` fixes up the finished row in place
    for what key lookup cannot express (JSON-valued attributes, units, status messages).
    """

    source: str
    matches: Callable[[Mapping[str, Any], str], bool]
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: GENAI_KEYS)
    provider_keys: tuple[str, ...] = (sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM)
    feature_keys: tuple[str, ...] = ()
    refine: Refine | None = None
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


# --- other instrumentations ---------------------------------------------------------------------

_STATUS_HTTP = re.compile(r"Error code: (\d{3})")
_STATUS_ERROR_TYPE = re.compile(r"'error': \{'type': '([a-z_]+)'")


def _refine_failure(record: SpanRecord, row: dict[str, Any]) -> None:
    """The HTTP status and API error type of a failed call, from the SDK's exception message
    (``Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', ...}}``),
    which these instrumentations put in the span status and nowhere else."""
    message = record.status_message
    if row["status"] != "error" or type(message) is not str:
        return
    if row["http_status"] is None and (m := _STATUS_HTTP.search(message)):
        row["http_status"] = int(m.group(1))
    if (m := _STATUS_ERROR_TYPE.search(message)) and (
        row["error_type"] is None or row["error_type"] in _ERROR_TYPE_ALIASES.values()
    ):
        row["error_type"] = m.group(1)
    if row["error_type"] is None and row["http_status"] is not None:
        row["error_type"] = "api_error"


def _json_object(value: Any) -> dict[str, Any]:
    if type(value) is not str:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if type(parsed) is dict else {}


def _refine_openllmetry(
    record: SpanRecord, row: dict[str, Any], rest: dict[str, Any], feature_keys: tuple[str, ...]
) -> None:
    _refine_failure(record, row)


def _refine_openinference(
    record: SpanRecord, row: dict[str, Any], rest: dict[str, Any], feature_keys: tuple[str, ...]
) -> None:
    """max_tokens and stream live in the invocation parameters JSON; the feature may be a key of
    the app's ``using_metadata({...})`` JSON (config key ``metadata.<name>``, default
    ``metadata.feature``)."""
    params = _json_object(record.attributes.get(sc.OPENINFERENCE_INVOCATION_PARAMETERS))
    if row["max_tokens"] is None and type(params.get("max_tokens")) is int:
        row["max_tokens"] = params["max_tokens"]
    if row["stream"] is None and params:
        row["stream"] = params.get("stream") is True
    if row["feature"] is None:
        metadata = _json_object(record.attributes.get(sc.OPENINFERENCE_METADATA))
        names = [k[len("metadata.") :] for k in feature_keys if k.startswith("metadata.")]
        for name in (*names, "feature"):
            if type(metadata.get(name)) is str:
                row["feature"] = metadata[name]
                break
    _refine_failure(record, row)


def _refine_openlit(
    record: SpanRecord, row: dict[str, Any], rest: dict[str, Any], feature_keys: tuple[str, ...]
) -> None:
    """OpenLIT's time to first token is in seconds and also set for calls that did not stream;
    its failed-call spans carry no attribute but the span name ``chat <model>``."""
    ttft = rest.pop(sc.OPENLIT_TTFT_S, None)
    if row["stream"] is True and row["ttft_ms"] is None and type(ttft) in (int, float):
        row["ttft_ms"] = float(ttft) * 1000.0
    elif ttft is not None:
        rest[sc.OPENLIT_TTFT_S] = ttft
    if row["request_model"] is None and record.name.startswith("chat "):
        row["request_model"] = record.name[len("chat ") :]
    _refine_failure(record, row)


_OPENLLMETRY_KEYS = {
    **GENAI_KEYS,
    # Before 0.40 the inclusive count was "prompt_tokens"; it always included the cache.
    "input_inclusive": (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.OPENLLMETRY_PROMPT_TOKENS),
    "output_tokens": (sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.OPENLLMETRY_COMPLETION_TOKENS),
    "stream": (
        sc.GEN_AI_REQUEST_STREAM,
        sc.OPENLLMETRY_IS_STREAMING,
        sc.OPENLLMETRY_IS_STREAMING_OLD,
    ),
    "stop_reason": (sc.ANTHROPIC_STOP_REASON, sc.OPENLLMETRY_FINISH_REASON),
}
_OPENINFERENCE_KEYS = {
    **GENAI_KEYS,
    "request_model": (sc.OPENINFERENCE_REQUEST_MODEL_NAME, sc.OPENINFERENCE_MODEL_NAME),
    "response_model": ("llm.response.model_name",),
    "input_inclusive": (sc.OPENINFERENCE_PROMPT_TOKENS,),  # includes cache reads and writes
    "output_tokens": (sc.OPENINFERENCE_COMPLETION_TOKENS,),
    "cache_read": (sc.OPENINFERENCE_CACHE_READ,),
    "cache_write": (sc.OPENINFERENCE_CACHE_WRITE,),
    "stop_reason": (sc.OPENINFERENCE_FINISH_REASON,),
    "conversation_id": (sc.GEN_AI_CONVERSATION_ID, sc.OPENINFERENCE_SESSION_ID),
}
_OPENLIT_KEYS = {
    **GENAI_KEYS,
    # OpenLIT (checked on 1.45) writes Anthropic's own, UNCACHED count under the semconv name.
    "input_uncached": (sc.INPUT_TOKENS_UNCACHED, sc.GEN_AI_USAGE_INPUT_TOKENS),
    "input_inclusive": (),
}

# Claude Code's events (made into records by clauditor.ingest.claude_code) name things their own
# way; only these keys feed columns, the rest stays in the attributes JSON.
_CLAUDE_CODE_KEYS = {
    **{name: () for name in GENAI_KEYS},
    "request_model": (sc.CC_MODEL,),
    "input_uncached": (sc.CC_INPUT_TOKENS,),  # Claude Code reports the uncached count
    "output_tokens": (sc.CC_OUTPUT_TOKENS,),
    "cache_read": (sc.CC_CACHE_READ_TOKENS,),
    "cache_write": (sc.CC_CACHE_CREATION_TOKENS,),  # no 5m/1h split: pricing assumes the TTL
    "user_id": (sc.USER_EMAIL, sc.USER_ACCOUNT_UUID),
    "conversation_id": (sc.SESSION_ID,),
    "speed": (sc.CC_SPEED,),
    "http_status": (sc.CC_STATUS_CODE,),
}
# Claude Code's failed requests carry an HTTP status (or none, for a timeout or a dropped
# connection) and a free-text message; the status says the API's error type.
_ERROR_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _parsed(value: Any, convert: Callable[[Any], Any]) -> Any:
    """``convert(value)``, or None when ``value`` is absent or does not convert."""
    if value is None:
        return None
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _refine_claude_code(
    record: SpanRecord, row: dict[str, Any], rest: dict[str, Any], feature_keys: tuple[str, ...]
) -> None:
    """Claude Code's own cost, its feature (resolved by the event reader), the attempt count of
    a failed request as retries, and the error type of a failed request from its status."""
    raw_cost = rest.pop(sc.CC_COST_USD, None)
    cost = _parsed(raw_cost, _to_float)
    if cost is not None and 0 <= cost < float("inf"):
        row["reported_cost_usd"] = cost
    elif raw_cost is not None:
        rest[sc.CC_COST_USD] = raw_cost  # not a number: kept as sent, beside the priced cost
    feature = record.attributes.get(sc.FEATURE)
    row["feature"] = _text(feature) or sc.CLAUDE_CODE_SERVICE
    raw_attempt = rest.pop(sc.CC_ATTEMPT, None)
    attempts = _parsed(raw_attempt, _to_int)
    if attempts is not None and attempts >= 1:
        row["retries"] = attempts - 1  # attempt 1 is the first try
    elif raw_attempt is not None:
        rest[sc.CC_ATTEMPT] = raw_attempt
    if row["status"] == "error" and row["error_type"] is None:
        status = row["http_status"]
        row["error_type"] = _ERROR_TYPE_BY_STATUS.get(status, "api_error") if status else "timeout"


# First match wins. The instrumentations recognised by their own scope (or a key only they
# write) come first: a context-propagating span processor may copy ``clauditor.*`` baggage onto
# their spans, which must not make them look like ours. Then our own spans: they may ride on
# the SDK's scope, and their clauditor attributes are what make them exact. The last entry
# catches every other gen_ai span (the official OTel GenAI instrumentations among them).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "claude-code",
        Markers(scopes=frozenset({sc.CLAUDE_CODE_RECORD_SCOPE})),
        _CLAUDE_CODE_KEYS,
        provider_keys=(),
        feature_keys=(sc.FEATURE,),
        refine=_refine_claude_code,
    ),
    Convention(
        "openllmetry",
        Markers(scopes=frozenset({sc.OPENLLMETRY_SCOPE}), keys=frozenset({"llm.request.type"})),
        _OPENLLMETRY_KEYS,
        feature_keys=(sc.OPENLLMETRY_ASSOCIATION_PREFIX + "feature",),
        refine=_refine_openllmetry,
    ),
    Convention(
        "openinference",
        Markers(
            scopes=frozenset({sc.OPENINFERENCE_SCOPE}),
            keys=frozenset({sc.OPENINFERENCE_SPAN_KIND, sc.OPENINFERENCE_PROMPT_TOKENS}),
        ),
        _OPENINFERENCE_KEYS,
        provider_keys=(sc.OPENINFERENCE_PROVIDER, sc.OPENINFERENCE_SYSTEM, sc.GEN_AI_SYSTEM),
        refine=_refine_openinference,
    ),
    Convention(
        "openlit",
        Markers(scope_prefixes=(sc.OPENLIT_SCOPE_PREFIX,)),
        _OPENLIT_KEYS,
        refine=_refine_openlit,
    ),
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
            raise SpanRejected(f"{key} is not an integer: {clip(value, 40)!r}") from None
    elif kind is float and value.is_integer():
        n = int(value)
    else:
        raise SpanRejected(f"{key} is not an integer: {clip(str(value), 40)!r}")
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
    if type(value) is not int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        value = int(value)
    if not -_MAX_INT64 - 1 <= value <= _MAX_INT64:
        raise OverflowError(value)  # no column holds it: it stays in the attributes
    return value


def _plain_int(value: Any) -> bool:
    """Whether ``value`` is an int that a 64-bit column holds (the common, fast case)."""
    return type(value) is int and -_MAX_INT64 - 1 <= value <= _MAX_INT64


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


_TEXT_COLUMNS = (
    "response_id",
    "service",
    "environment",
    "feature",
    "user_id",
    "conversation_id",
    "code_location",
    "request_model",
    "response_model",
    "service_tier",
    "stop_reason",
    "error_type",
    "container_id",
    "cloud_region",
)


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
        clean[key] = scrub(value) if type(value) is str else scrub_value(value)
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
        shown = clip(repr(span_id), 40)
        raise SpanRejected(f"span_id is not 16 hex characters (or is all zeros): {shown}")
    trace_id = record.trace_id
    if type(trace_id) is not str or not _HEX32.fullmatch(trace_id) or trace_id == _ZERO32:
        shown = clip(repr(trace_id), 60)
        raise SpanRejected(f"trace_id is not 32 hex characters (or is all zeros): {shown}")
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
    if end_ns > _MAX_INT64:  # OTLP times are 64-bit; a column cannot hold more
        raise SpanRejected(f"span end time is out of range: {end_ns!s:.40}")
    return span_id.lower(), trace_id.lower(), parent


# SDK span names that are Claude calls even without a model attribute. The SDK also traces
# batch and admin requests (batches.retrieve, batches.results): those carry no usage and are
# not calls; clauditor records each batch result as a call of its own instead.
_CALL_SPAN_NAMES = frozenset({sc.ANTHROPIC_SPAN_MESSAGES_CREATE, sc.ANTHROPIC_SPAN_COUNT_TOKENS})


def _is_claude_call(record: SpanRecord, conv: Convention) -> bool:
    attributes = record.attributes
    models = [v for k in conv.model_keys if (v := attributes.get(k)) is not None]
    if not models:
        detect = conv.matches
        return (
            sc.OPERATION in attributes
            or record.name in _CALL_SPAN_NAMES
            or (type(detect) is Markers and detect.owns_scope(record.scope_name))
        )
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
        mapped = (
            conv.mapped
            | set(feature_attributes)
            | set(conv.feature_keys)
            | {BAGGAGE_FEATURE_ATTRIBUTE}
        )
        _mapped_cache[cache_key] = mapped
    return mapped


def feature_tag(
    get: Callable[[str], Any], feature_attributes: tuple[str, ...], own_keys: tuple[str, ...] = ()
) -> Any:
    """The feature a span is tagged with: the configured keys in order, then the baggage copy,
    then the convention's own keys (``get`` reads the span's flattened attributes)."""
    for key in feature_attributes:
        value = get(key)
        if value is not None:
            return value
    value = get(BAGGAGE_FEATURE_ATTRIBUTE)
    if value is None:
        for key in own_keys:
            value = get(key)
            if value is not None:
                break
    return value


def decided_by_keys() -> bool:
    """Whether the conventions that no :class:`Markers` detector recognises are, after the
    detectors and in this order, clauditor's, the SDK's and the catch-all, each reading
    :data:`GENAI_KEYS` with the usual provider keys and no convention-specific steps.

    The fast paths of file ingest (:mod:`.fastpath`, :mod:`.columnar`) hard-code exactly that;
    should it change, they turn themselves off until taught the change.
    """
    expected = (("clauditor", _is_clauditor), ("anthropic-sdk", _is_anthropic_sdk))
    decided = tuple(c for c in CONVENTIONS if not isinstance(c.matches, Markers))
    if tuple((c.source, c.matches) for c in decided) != (*expected, ("otel-genai", _always)):
        return False
    if CONVENTIONS[-len(decided) :] != decided:
        return False
    return all(
        dict(c.keys) == dict(GENAI_KEYS)
        and c.provider_keys == (sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM)
        and not c.feature_keys
        and c.refine is None
        for c in decided
    )


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
            raise SpanRejected(f"{key} is not a string: {clip(str(value), 40)!r}")

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
            # The cache trap: OTel's count includes cache reads and writes.
            input_tokens = max(inclusive - (cache_read or 0) - (cache_write or 0), 0)

    feature = feature_tag(get, feature_attributes, conv.feature_keys)

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
    if max_tokens is not None and not _plain_int(max_tokens):
        max_tokens = _lenient(f, "max_tokens", _to_int, rest, attrs, conv)
    stream = f["stream"]
    if stream is not None and type(stream) is not bool:
        stream = _lenient(f, "stream", _to_bool, rest, attrs, conv)
    http_status = f["http_status"]
    if http_status is not None and not _plain_int(http_status):
        http_status = _lenient(f, "http_status", _to_int, rest, attrs, conv)
    response_id = get(sc.GEN_AI_RESPONSE_ID)
    cloud_region = _text(f["cloud_region"])
    if cloud_region is None:
        host = get(sc.SERVER_ADDRESS)
        if type(host) is str:
            cloud_region = region_from_host(host)
    retries = f["retries"]
    if not _plain_int(retries):
        retries = _lenient(f, "retries", _to_int, rest, attrs, conv) or 0

    row = {
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
        "attributes": "",
        "resource": resource_json,
        "response_id": response_id if type(response_id) is str else None,
        "web_search_requests": _count(f, "web_search_requests", attrs, conv),
        "web_fetch_requests": _count(f, "web_fetch_requests", attrs, conv),
        "code_execution_requests": _count(f, "code_execution_requests", attrs, conv),
        "container_id": _text(f["container_id"]),
        "cloud_region": cloud_region,
        "reported_cost_usd": None,  # set by the conventions of sources that report a cost
    }
    if conv.refine is not None:
        conv.refine(record, row, rest, feature_attributes)
    for column in _TEXT_COLUMNS:  # a key pasted into a tag must not reach a column either
        value = row[column]
        if type(value) is str:
            row[column] = scrub(value)
    row["attributes"] = _json(rest)
    return row


ROW_COLUMNS: tuple[str, ...] = tuple(
    name for name, _, _ in CALLS_COLUMNS if name not in PRICED_COLUMNS
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
    for name in PRICED_COLUMNS:
        row[name] = None
    return row


# --- one row per call ----------------------------------------------------------------------------

# When two instrumentations describe the same call (the anthropic SDK >= 2 makes its own span
# whenever a tracer provider is set, so an app that also runs OpenLLMetry, OpenInference, OpenLIT
# or the official instrumentation emits two spans per call), the most exact one is the record:
# ours, then the SDK's (it has the cache TTL split, service tier and HTTP status), then the rest.
SOURCE_PREFERENCE: tuple[str, ...] = SOURCES  # clauditor.schema keeps the order, for the store too


def one_row_per_call(frame: pl.DataFrame, *, by_time: bool = True) -> pl.DataFrame:
    """``frame`` (``calls`` rows) with one row per Claude call when two instrumentations
    described the same call; the row of the preferred source (:data:`SOURCE_PREFERENCE`) stays
    and takes the feature, user and conversation of the rows it replaces where it has none (the
    wrapper instrumentations are where apps attach those).

    Two rows of different sources are the same call when they share a ``gen_ai.response.id``
    (the message id, unique per call), or, for a row without one (failed calls; OpenInference
    keeps the id only in captured output), when the preferred row is of the same service, model
    and status and started while the other span was open (a wrapper's span encloses the SDK's).
    Rows of one source are never merged: the span_id key already dedupes re-ingests.
    ``by_time=False`` keeps only the exact response-id match: the ingest paths use that, since
    a file or a receiver mixes apps where one call may be seen by one instrumentation only, and
    merging by time there could fold two different calls into one.
    """
    if frame.height < 2 or frame["source"].n_unique() < 2:
        return frame
    rank = {source: i for i, source in enumerate(SOURCE_PREFERENCE)}
    response_id = pl.col("attributes").str.json_path_match("$['" + sc.GEN_AI_RESPONSE_ID + "']")
    if "response_id" in frame.columns:  # filled by ingest; the attribute for other frames
        response_id = pl.coalesce("response_id", response_id)
    keyed = frame.with_columns(
        response_id.alias("_rid"),
        pl.col("source")
        .replace_strict(rank, default=len(rank), return_dtype=pl.Int32)
        .alias("_rank"),
    )
    # For every row, the row that replaces it (itself when none does).
    by_id = (
        keyed.filter(pl.col("_rid").is_not_null())
        .sort("_rank")
        .with_columns(pl.col("span_id").first().over("_rid").alias("_keep"))
        .filter(pl.col("_keep") != pl.col("span_id"))
        .select("span_id", "_keep")
    )
    match = ["service", "request_model", "status"]
    loose = keyed.filter(pl.col("_rid").is_null()).select(
        "span_id", "_rank", "start_time", "end_time", *match
    )
    time_matches = (
        loose.join(
            keyed.select(
                pl.col("span_id").alias("_keep"),
                pl.col("_rank").alias("_keep_rank"),
                pl.col("start_time").alias("_keep_start"),
                *match,
            ),
            on=match,
            nulls_equal=True,
        )
        .filter(
            (pl.col("_keep_rank") < pl.col("_rank"))
            & pl.col("_keep_start").is_between(pl.col("start_time"), pl.col("end_time"))
        )
        .sort("_keep_rank")
        .group_by("span_id", maintain_order=True)
        .agg(pl.col("_keep").first())
    )
    parts = [by_id, time_matches] if by_time else [by_id]
    replaced = pl.concat(parts, how="vertical").unique("span_id", keep="first")
    if replaced.height == 0:
        return frame
    carried = ("feature", "user_id", "conversation_id")
    gifts = (
        replaced.join(frame.select("span_id", *carried), on="span_id")
        .group_by("_keep")
        .agg([pl.col(c).drop_nulls().first() for c in carried])
        .rename({"_keep": "span_id", **{c: f"_gift_{c}" for c in carried}})
    )
    return (
        frame.filter(~pl.col("span_id").is_in(replaced["span_id"].implode()))
        .join(gifts, on="span_id", how="left", maintain_order="left")
        .with_columns([pl.coalesce(c, f"_gift_{c}").alias(c) for c in carried])
        .select(frame.columns)
    )
