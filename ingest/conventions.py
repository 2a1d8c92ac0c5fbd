"""The conventions table: how each instrumentation writes a Claude call, as data.

:data:`CONVENTIONS` is an ordered tuple of :class:`Convention`; the first whose detector matches
a span decides it. A detector is a :class:`Markers` value (scope names, scope prefixes,
attribute keys or key prefixes, or "any span"), and a convention's ``keys`` map every field of
:data:`GENAI_KEYS` to the attribute keys that may carry it (first present wins). Both are plain
data a reader (or a generator of SQL) can inspect; ``refine`` is the only code, for what key
lookup cannot express (JSON-valued attributes, units, status messages).

:mod:`.normalize` applies the table to a span (the general path); :mod:`.fastpath` derives its
one-pass reader from the same table and hands any span of a convention with a ``refine`` step
or its own key map to the general path (see docs/architecture.md, "Adding a convention").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from clauditor import semconv as sc

if TYPE_CHECKING:
    from clauditor.ingest.span_record import SpanRecord

__all__ = [
    "CALL_SPAN_NAMES",
    "CONVENTIONS",
    "ERROR_TYPE_ALIASES",
    "ERROR_TYPE_BY_STATUS",
    "GENAI_KEYS",
    "OPERATION_BY_GENAI_NAME",
    "OPERATION_BY_SPAN_NAME",
    "PROVIDER_KEYS",
    "STATUS_ERROR_TYPE",
    "STATUS_HTTP",
    "Convention",
    "Markers",
    "Refine",
    "as_text",
    "to_bool",
    "to_float",
    "to_int",
]

_MAX_INT64 = 2**63 - 1

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
ERROR_TYPE_ALIASES = {
    "client_timeout_error": "timeout",
    **_EXCEPTION_ERROR_TYPES,
    **{f"anthropic.{name}": kind for name, kind in _EXCEPTION_ERROR_TYPES.items()},
}
OPERATION_BY_SPAN_NAME = {
    sc.ANTHROPIC_SPAN_COUNT_TOKENS: "count_tokens",
    "anthropic.messages.batches.results": "batch",
}
OPERATION_BY_GENAI_NAME = {"chat": "chat", "text_completion": "chat"}
# SDK span names that are Claude calls even without a model attribute. The SDK also traces
# batch and admin requests (batches.retrieve, batches.results): those carry no usage and are
# not calls; clauditor records each batch result as a call of its own instead.
CALL_SPAN_NAMES = frozenset({sc.ANTHROPIC_SPAN_MESSAGES_CREATE, sc.ANTHROPIC_SPAN_COUNT_TOKENS})


# --- the fields --------------------------------------------------------------------------------

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


# Where most conventions name the provider (to skip other providers' calls).
PROVIDER_KEYS: tuple[str, ...] = (sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM)

# refine(record, row, rest, feature_attributes): see Convention.
Refine = Callable[["SpanRecord", dict[str, Any], dict[str, Any], tuple[str, ...]], None]


@dataclass(frozen=True)
class Markers:
    """A detector made of data: a span matches when its scope name is one of ``scopes`` (or
    starts with one of ``scope_prefixes``), when it carries one of ``keys`` or a key starting
    with one of ``key_prefixes``, or always when ``any_span``.

    ``scope_means_call``: a span of one of these scopes is a Claude call even without a model
    (the scopes of Anthropic-only instrumentations, whose failed-call spans may name no model).
    It is off for scopes that also trace requests that are not calls (the SDK's batch and admin
    spans) and for our own scope.
    """

    scopes: frozenset[str] = frozenset()
    scope_prefixes: tuple[str, ...] = ()
    keys: frozenset[str] = frozenset()
    key_prefixes: tuple[str, ...] = ()
    any_span: bool = False
    scope_means_call: bool = True

    def owns_scope(self, scope_name: str) -> bool:
        """Whether this detector claims spans of ``scope_name`` by their scope alone."""
        return scope_name in self.scopes or scope_name.startswith(self.scope_prefixes)

    def __call__(self, attributes: Mapping[str, Any], scope_name: str) -> bool:
        if self.any_span or self.owns_scope(scope_name) or not self.keys.isdisjoint(attributes):
            return True  # the set test answers for almost every span, in C
        prefixes = self.key_prefixes
        return bool(prefixes) and any(type(k) is str and k.startswith(prefixes) for k in attributes)


@dataclass(frozen=True)
class Convention:
    """How one instrumentation writes a Claude call.

    ``matches`` (a :class:`Markers`) recognises its spans; ``keys`` maps every field of
    :data:`GENAI_KEYS` to the attribute keys that may carry it (first present wins). Every key
    in ``keys`` is consumed: it is not repeated in the ``attributes`` JSON. ``provider_keys``
    name the provider, used only to skip other providers' calls. A new convention is usually
    ``Convention("name", detect, {**GENAI_KEYS, "request_model": ("llm.model_name",), ...})``.

    ``feature_keys`` are the convention's own places for the feature, tried after the configured
    keys and the baggage copy. ``refine(record, row, rest)`` fixes up the finished row in place
    for what key lookup cannot express (JSON-valued attributes, units, status messages).
    """

    source: str
    matches: Markers
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: GENAI_KEYS)
    provider_keys: tuple[str, ...] = PROVIDER_KEYS
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


# --- other instrumentations ---------------------------------------------------------------------

STATUS_HTTP = re.compile(r"Error code: (\d{3})")
STATUS_ERROR_TYPE = re.compile(r"'error': \{'type': '([a-z_]+)'")


def _refine_failure(record: SpanRecord, row: dict[str, Any]) -> None:
    """The HTTP status and API error type of a failed call, from the SDK's exception message
    (``Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', ...}}``),
    which these instrumentations put in the span status and nowhere else."""
    message = record.status_message
    if row["status"] != "error" or type(message) is not str:
        return
    if row["http_status"] is None and (m := STATUS_HTTP.search(message)):
        row["http_status"] = int(m.group(1))
    if (m := STATUS_ERROR_TYPE.search(message)) and (
        row["error_type"] is None or row["error_type"] in ERROR_TYPE_ALIASES.values()
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
ERROR_TYPE_BY_STATUS = {
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
    cost = _parsed(raw_cost, to_float)
    if cost is not None and 0 <= cost < float("inf"):
        row["reported_cost_usd"] = cost
    elif raw_cost is not None:
        rest[sc.CC_COST_USD] = raw_cost  # not a number: kept as sent, beside the priced cost
    feature = record.attributes.get(sc.FEATURE)
    row["feature"] = as_text(feature) or sc.CLAUDE_CODE_SERVICE
    raw_attempt = rest.pop(sc.CC_ATTEMPT, None)
    attempts = _parsed(raw_attempt, to_int)
    if attempts is not None and attempts >= 1:
        row["retries"] = attempts - 1  # attempt 1 is the first try
    elif raw_attempt is not None:
        rest[sc.CC_ATTEMPT] = raw_attempt
    if row["status"] == "error" and row["error_type"] is None:
        status = row["http_status"]
        row["error_type"] = ERROR_TYPE_BY_STATUS.get(status, "api_error") if status else "timeout"


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
    Convention(
        "clauditor",
        Markers(
            scopes=frozenset({sc.CLAUDITOR_SCOPE}),
            keys=_CLAUDITOR_KEYS,
            key_prefixes=("clauditor.",),
            scope_means_call=False,
        ),
    ),
    Convention(
        "anthropic-sdk", Markers(scopes=frozenset({sc.ANTHROPIC_SCOPE}), scope_means_call=False)
    ),
    Convention("otel-genai", Markers(any_span=True, scope_means_call=False)),
)


# --- value readers (the refine steps and the general path share them) ---------------------------


def to_int(value: Any) -> int:
    """``value`` as a 64-bit integer; ValueError/OverflowError when it is not one."""
    if type(value) is not int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        value = int(value)
    if not -_MAX_INT64 - 1 <= value <= _MAX_INT64:
        raise OverflowError(value)  # no column holds it: it stays in the attributes
    return value


def to_float(value: Any) -> float:
    """``value`` as a float (a bool is refused)."""
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def to_bool(value: Any) -> bool:
    """A bool, or the text ``true``/``false`` in any case."""
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(value)


def as_text(value: Any) -> str | None:
    """``value`` as text for a text column (None stays None)."""
    return value if value is None or type(value) is str else str(value)
