"""The common span, normalized in one pass: file ingest's hot path.

Almost every span a file holds is written the way the exporters write it (camelCase, times as
decimal strings, attribute values of the kind their key calls for) in one of the conventions
that read the shared :data:`.conventions.GENAI_KEYS` with no ``refine`` step
(:data:`FAST_SOURCES`: today clauditor's own spans, the anthropic SDK's and the OTel GenAI
ones). :func:`span_row` reads such a span straight into a row tuple (column order
:data:`ROW_ORDER`), about three times cheaper than building a :class:`~.normalize.SpanRecord`
and running :func:`~.normalize.record_row` on it.

Derived from the table, not a copy of it: which convention a span belongs to is decided by the
table's own detectors, in the table's order (:func:`_plan`); :data:`FAST_SOURCES` is computed
from the table; the field keys are read from :data:`~.conventions.GENAI_KEYS`, and a change of
its fields or key counts raises at import. A convention with its own keys or a refine step is
the general path's, automatically.

Exactness comes first: :func:`span_row` only decides spans whose every field it can map the
way :func:`~.normalize.record_row` does, and answers :data:`GENERIC` for anything else, so
that the caller takes the general path and the span gets exactly the verdict it always got (a
row, an ignore or a rejection with its reason). It answers :data:`GENERIC` when

* the span is not the exporters' shape (see :func:`span_row`), or its ids or times would be
  rejected;
* the table gives it to a convention outside :data:`FAST_SOURCES` (OpenLLMetry, OpenInference,
  OpenLIT, Claude Code);
* a field holds a value of another type than the common one (a token count as a string, a
  float ``max_tokens``, a list-valued attribute left in the JSON...), the operation is
  ``count_tokens``, or a key names a secret;
* any text that reaches a column or the attributes JSON has something the scrubber would look
  at (``sk-ant-``, ``hooks.slack``, ``earer``, or a leading ``{``/``[``).

tests/ingest/test_fastpath.py holds both paths to the same output on the sample, the convention
fixtures, the hostile corpus and a fuzzed variant of simulator spans, and checks that the
simulator's spans do take this path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from clauditor import semconv as sc
from clauditor.cloud import region_from_host
from clauditor.ingest.conventions import (
    CALL_SPAN_NAMES,
    CONVENTIONS,
    ERROR_TYPE_ALIASES,
    GENAI_KEYS,
    OPERATION_BY_GENAI_NAME,
    OPERATION_BY_SPAN_NAME,
    PROVIDER_KEYS,
    Convention,
)
from clauditor.ingest.normalize import (
    MAX_TOKEN_COUNT,
    ROW_COLUMNS,
    STATUS_CODE_ERROR,
    SpanRejected,
    encode_json,
    feature_tag,
    is_span_id,
    is_trace_id,
    mapped_keys,
    resource_columns,
)
from clauditor.ingest.otlp_json import flatten_attributes
from clauditor.redact import is_secret_key

__all__ = ["FAST_SOURCES", "GENERIC", "ROW_ORDER", "fast_sources", "request_spans", "span_row"]

GENERIC: Final = object()  # "take the general path": the answer for anything unusual

ROW_ORDER: tuple[str, ...] = ROW_COLUMNS


def _decided_here(conv: Convention) -> bool:
    """Whether this module reads ``conv`` exactly as :func:`.normalize.record_row` does: the
    shared :data:`GENAI_KEYS`, the usual provider keys, no own feature keys, no refine step."""
    return (
        dict(conv.keys) == dict(GENAI_KEYS)
        and conv.provider_keys == PROVIDER_KEYS
        and not conv.feature_keys
        and conv.refine is None
    )


def fast_sources(conventions: tuple[Convention, ...]) -> frozenset[str]:
    """The sources of ``conventions`` this module decides in one pass: a convention added to
    the table, or given its own keys or a refine step, is the general path's, with nothing
    else to change."""
    return frozenset(c.source for c in conventions if _decided_here(c))


FAST_SOURCES: frozenset[str] = fast_sources(CONVENTIONS)
_BY_SOURCE = {c.source: c for c in CONVENTIONS}

# The fields this module reads, each below by name. GENAI_KEYS gaining, losing or renaming a
# field must be taught here: it fails at import, never silently.
_READS = frozenset(
    {
        "request_model", "response_model", "input_uncached", "input_inclusive",
        "output_tokens", "cache_read", "cache_write", "cache_write_5m", "cache_write_1h",
        "operation", "genai_operation", "max_tokens", "stream", "ttft_ms", "http_status",
        "retries", "error_type", "finish_reasons", "user_id", "conversation_id",
        "code_location", "service_tier", "inference_geo", "speed", "stop_reason",
        "web_search_requests", "web_fetch_requests", "code_execution_requests",
        "container_id", "cloud_region",
    }
)  # fmt: skip
if set(GENAI_KEYS) != _READS:  # pragma: no cover - a change of the table's fields
    raise RuntimeError(
        f"ingest.fastpath reads {sorted(_READS)} but GENAI_KEYS has {sorted(GENAI_KEYS)}: "
        "teach span_row the change"
    )


def _only(name: str) -> str:
    """The one key of a field read with a single lookup (a second key must be taught here)."""
    keys = GENAI_KEYS[name]
    if len(keys) != 1:  # pragma: no cover - a change of the table's keys
        raise RuntimeError(f"ingest.fastpath reads {name} from one key, GENAI_KEYS has {keys}")
    return keys[0]


# Single-key fields, read with one dict lookup each.
_REQUEST_MODEL = _only("request_model")
_RESPONSE_MODEL = _only("response_model")
_UNCACHED = _only("input_uncached")
_INCLUSIVE = _only("input_inclusive")
_OUTPUT = _only("output_tokens")
_W5 = _only("cache_write_5m")
_W1 = _only("cache_write_1h")
_OPERATION = _only("operation")
_GENAI_OPERATION = _only("genai_operation")
_MAX_TOKENS = _only("max_tokens")
_STREAM = _only("stream")
_TTFT = _only("ttft_ms")
_HTTP_STATUS = _only("http_status")
_RETRIES = _only("retries")
_ERROR_TYPE = _only("error_type")
_FINISH = _only("finish_reasons")
_CONVERSATION = _only("conversation_id")
_CODE_LOCATION = _only("code_location")
_GEO = _only("inference_geo")
_SPEED = _only("speed")
_STOP = _only("stop_reason")
_WEB_SEARCH = _only("web_search_requests")
_WEB_FETCH = _only("web_fetch_requests")
_CODE_EXECUTION = _only("code_execution_requests")
_CONTAINER = _only("container_id")
_CLOUD_REGION = _only("cloud_region")
# Multi-key fields: the first key present wins.
_CACHE_READ = GENAI_KEYS["cache_read"]
_CACHE_WRITE = GENAI_KEYS["cache_write"]
_USER = GENAI_KEYS["user_id"]
_TIER = GENAI_KEYS["service_tier"]

_MAX_COUNT = MAX_TOKEN_COUNT
_MAX = _MAX_INT64 = 2**63 - 1
_MIN = -(2**63)
_ERROR = STATUS_CODE_ERROR
_RESPONSE_ID = sc.GEN_AI_RESPONSE_ID
_SERVER_ADDRESS = sc.SERVER_ADDRESS

# Attribute keys seen and found not to name a secret (keys repeat across spans).
_safe_keys: set[str] = set()

# Per scope name, how the table decides a span of it: the conventions before the first one that
# claims the scope (or every span), which can only match by keys, as (source, keys, key
# prefixes); the same list with only the fast conventions, and the keys of the others (None
# when one of them matches by key prefixes): a span with none of those keys can only be
# claimed by a fast one or the fallback, which is then checked alone; and that first one.
_Keyed = tuple[tuple[str, frozenset[str], tuple[str, ...]], ...]
_Plan = tuple[frozenset[str] | None, _Keyed, _Keyed, Convention | None]
_plans: dict[str, _Plan] = {}


def _plan(scope_name: str) -> _Plan:
    plan = _plans.get(scope_name)
    if plan is not None:
        return plan
    keyed: list[tuple[str, frozenset[str], tuple[str, ...]]] = []
    fallback = None
    for conv in CONVENTIONS:
        detect = conv.matches
        if detect.any_span or detect.owns_scope(scope_name):
            fallback = conv
            break
        if detect.keys or detect.key_prefixes:
            keyed.append((conv.source, detect.keys, detect.key_prefixes))
    others = [entry for entry in keyed if entry[0] not in FAST_SOURCES]
    other_keys = (
        None
        if any(prefixes for _, _, prefixes in others)
        else frozenset(k for _, keys, _ in others for k in keys)
    )
    fast = tuple(entry for entry in keyed if entry[0] in FAST_SOURCES)
    plan = (other_keys, fast, tuple(keyed), fallback)
    if len(_plans) < 4096:
        _plans[scope_name] = plan
    return plan


def _orjson_text(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _safe_key(key: Any) -> bool:
    """Whether ``key`` may be written to the attributes JSON as it is (remembered when so)."""
    if type(key) is not str or not key.isascii() or "\x7f" in key or is_secret_key(key):
        return False
    if len(_safe_keys) < 65536:
        _safe_keys.add(key)
    return True


def _first(get: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return None


def span_row(
    span: Any,
    resource: dict[str, Any],
    scope_name: str,
    feature_attributes: tuple[str, ...],
) -> Any:
    """The row tuple of ``span`` (an OTLP/JSON span object), ``None`` when it is not a Claude
    call, or :data:`GENERIC` when the general path must decide.

    ``resource`` is the flattened resource of the span's ``resourceSpans`` entry (the same
    object for every span of it), ``scope_name`` the text the general path derives from the
    scope. The exporters' shape: an object with ``traceId``/``spanId`` strings, decimal-string
    times, an integer ``kind``, no status or one with an integer code, and a list of
    ``{"key", "value"}`` attributes.
    """
    if type(span) is not dict:
        return GENERIC
    get = span.get
    start = get("startTimeUnixNano")
    end = get("endTimeUnixNano")
    trace_id = get("traceId")
    span_id = get("spanId")
    if not (
        type(start) is str
        and type(end) is str
        and type(trace_id) is str
        and type(span_id) is str
        and start.isdecimal()
        and end.isdecimal()
        and len(start) < 20
        and len(end) < 20
        and type(get("kind", 0)) is int
    ):
        return GENERIC
    status = get("status")
    status_code = 0
    if status:
        if type(status) is not dict:
            return GENERIC
        status_code = status.get("code", 0)
        if type(status_code) is not int:
            return GENERIC
    name = get("name") or ""
    parent = get("parentSpanId")
    if parent is None:
        parent = get("parent_span_id")
    if type(name) is not str or (parent and type(parent) is not str):
        return GENERIC
    try:
        attrs = flatten_attributes(get("attributes"))
    except SpanRejected:
        return GENERIC

    # The convention, as the table decides it (see _plan); the general path takes the rest.
    other_keys, keyed, every, conv = _plan(scope_name)
    if other_keys is None or not other_keys.isdisjoint(attrs):
        keyed = every  # another convention may claim it by its keys: the table's order decides
    for source, keys, prefixes in keyed:
        if not keys.isdisjoint(attrs) or (
            prefixes and any(type(k) is str and k.startswith(prefixes) for k in attrs)
        ):
            conv = _BY_SOURCE[source]
            break
    if conv is None or conv.source not in FAST_SOURCES:
        return GENERIC
    source = conv.source
    aget = attrs.get

    # Is it a Claude call? (normalize._is_claude_call)
    request_model = aget(_REQUEST_MODEL)
    response_model = aget(_RESPONSE_MODEL)
    if request_model is None and response_model is None:
        if conv.matches.scope_means_call:
            return GENERIC
        if not (_OPERATION in attrs or name in CALL_SPAN_NAMES):
            return None
    else:
        for key in PROVIDER_KEYS:
            provider = aget(key)
            if provider is not None:
                if not (
                    "anthropic" in str(provider).lower()
                    or (request_model is not None and "claude" in str(request_model).lower())
                    or (response_model is not None and "claude" in str(response_model).lower())
                ):
                    return None
                break

    # Ids and times (normalize._check_ids_and_times): anything it would reject goes there.
    if not (is_span_id(span_id) and is_trace_id(trace_id)):
        return GENERIC
    start_ns = int(start)
    end_ns = int(end)
    if start_ns <= 0 or end_ns < start_ns or end_ns > _MAX_INT64:
        return GENERIC
    parent = None if not parent or parent == "0000000000000000" else parent.lower()

    if not (
        (request_model is None or type(request_model) is str)
        and (response_model is None or type(response_model) is str)
    ):
        return GENERIC
    operation = aget(_OPERATION)
    if operation is None:
        operation = OPERATION_BY_SPAN_NAME.get(name)
        if operation is None:
            genai = aget(_GENAI_OPERATION)
            if genai is None:
                operation = "chat"
            elif type(genai) is str:
                operation = OPERATION_BY_GENAI_NAME.get(genai, genai)
            else:
                return GENERIC
    if type(operation) is not str or operation == "count_tokens":
        return GENERIC

    cache_read = _first(aget, _CACHE_READ)
    cache_write = _first(aget, _CACHE_WRITE)
    cache_5m = aget(_W5)
    cache_1h = aget(_W1)
    output_tokens = aget(_OUTPUT)
    input_tokens = aget(_UNCACHED)
    inclusive = aget(_INCLUSIVE)
    web_search = aget(_WEB_SEARCH)
    web_fetch = aget(_WEB_FETCH)
    code_execution = aget(_CODE_EXECUTION)
    for value in (
        cache_read,
        cache_write,
        cache_5m,
        cache_1h,
        output_tokens,
        input_tokens,
        web_search,
        web_fetch,
        code_execution,
    ):
        if value is not None and not (type(value) is int and 0 <= value <= _MAX_COUNT):
            return GENERIC
    if cache_write is None and (cache_5m is not None or cache_1h is not None):
        cache_write = (cache_5m or 0) + (cache_1h or 0)
    if inclusive is not None:
        if not (type(inclusive) is int and 0 <= inclusive <= _MAX_COUNT):
            return GENERIC
        if input_tokens is None:
            input_tokens = max(inclusive - (cache_read or 0) - (cache_write or 0), 0)

    feature = feature_tag(aget, feature_attributes)

    error_type = aget(_ERROR_TYPE)
    stop_reason = aget(_STOP)
    if stop_reason is None:
        stop_reason = aget(_FINISH)
        if type(stop_reason) is list:
            stop_reason = stop_reason[0] if stop_reason else None
    user_id = _first(aget, _USER)
    conversation_id = aget(_CONVERSATION)
    code_location = aget(_CODE_LOCATION)
    service_tier = _first(aget, _TIER)
    geo = aget(_GEO)
    speed = aget(_SPEED)
    container_id = aget(_CONTAINER)
    cloud_region = aget(_CLOUD_REGION)
    response_id = aget(_RESPONSE_ID)
    service, environment, resource_json = resource_columns(resource)
    # Every text that reaches a scrubbed column must be a string (or nothing) with nothing in
    # it that the scrubber would change: checked on all of them at once, below.
    texts = [
        t
        for t in (
            feature,
            error_type,
            stop_reason,
            user_id,
            conversation_id,
            code_location,
            service_tier,
            request_model,
            response_model,
            service,
            environment,
            geo,
            speed,
            container_id,
            cloud_region,
        )
        if t is not None
    ]
    for t in texts:
        if type(t) is not str:
            return GENERIC
    if type(response_id) is str:
        texts.append(response_id)
    else:
        response_id = None  # not a column value: only left out of its column
    if error_type is not None:
        error_type = ERROR_TYPE_ALIASES.get(error_type, error_type)
    if cloud_region is None:
        host = aget(_SERVER_ADDRESS)
        if type(host) is str:
            cloud_region = region_from_host(host)  # [a-z0-9-] only: nothing to scrub

    ttft_ms = aget(_TTFT)
    max_tokens = aget(_MAX_TOKENS)
    stream = aget(_STREAM)
    http_status = aget(_HTTP_STATUS)
    retries = aget(_RETRIES)
    if not (
        (ttft_ms is None or type(ttft_ms) is float)
        and (stream is None or type(stream) is bool)
        and (max_tokens is None or (type(max_tokens) is int and _MIN <= max_tokens <= _MAX))
        and (http_status is None or (type(http_status) is int and _MIN <= http_status <= _MAX))
        and (retries is None or (type(retries) is int and _MIN <= retries <= _MAX))
    ):
        return GENERIC

    # The attributes JSON: what no column took. orjson writes what json's encoder writes for
    # ASCII text without DEL, 64-bit integers and booleans; floats take json's encoder.
    mapped = mapped_keys(conv, feature_attributes)
    rest = {k: v for k, v in attrs.items() if k not in mapped}
    encode: Callable[[Any], str] = _orjson_text
    for key, value in rest.items():
        if key not in _safe_keys and not _safe_key(key):
            return GENERIC
        kind = type(value)
        if kind is str:
            texts.append(value)
        elif kind is int:
            if not _MIN <= value <= _MAX:
                encode = encode_json
        elif kind is float:
            encode = encode_json
        elif kind is not bool:
            return GENERIC
    probe = "\x00" + "\x00".join(texts)
    if (
        "sk-ant-" in probe
        or "hooks.slack" in probe
        or "earer" in probe
        or "\x00{" in probe
        or "\x00[" in probe
    ):
        return GENERIC
    if not probe.isascii() or "\x7f" in probe:
        encode = encode_json

    # ROW_ORDER (normalize.ROW_COLUMNS); the equivalence tests fail on any mismatch.
    return (
        span_id.lower(),
        trace_id.lower(),
        parent,
        start_ns // 1000,
        end_ns // 1000,
        (end_ns - start_ns) / 1e6,
        ttft_ms,
        service,
        environment,
        feature,
        user_id,
        conversation_id,
        code_location,
        operation,
        request_model,
        response_model,
        max_tokens,
        stream,
        service_tier,
        geo,
        speed,
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        cache_5m,
        cache_1h,
        stop_reason,
        "error" if status_code == _ERROR or error_type else "ok",
        http_status,
        error_type,
        0 if retries is None else retries,
        source,
        encode(rest) if rest else "{}",
        resource_json,
        response_id,
        web_search,
        web_fetch,
        code_execution,
        container_id,
        cloud_region,
        None,  # reported_cost_usd: only Claude Code's events report one
    )


def request_spans(
    request: Mapping[str, Any],
) -> list[tuple[Any, dict[str, Any], str, str | None]] | None:
    """The spans of an OTLP/JSON request in the exporters' shape, each with its flattened
    resource, scope name and version; ``None`` when the request is shaped otherwise (the
    general reader then reads it, with its checks and messages)."""
    if type(request) is not dict:
        return None
    resource_spans = request.get("resourceSpans")
    if type(resource_spans) is not list:
        return None
    out: list[tuple[Any, dict[str, Any], str, str | None]] = []
    for rs in resource_spans:
        if type(rs) is not dict:
            return None
        raw_resource = rs.get("resource")
        if type(raw_resource) is not dict:
            return None
        try:
            resource = flatten_attributes(raw_resource.get("attributes"))
        except SpanRejected:
            return None
        scope_spans = rs.get("scopeSpans")
        if type(scope_spans) is not list:
            return None
        for ss in scope_spans:
            if type(ss) is not dict:
                return None
            scope = ss.get("scope")
            if not scope or type(scope) is not dict:  # the general reader tries other keys
                return None
            scope_name = scope.get("name") or ""
            if type(scope_name) is not str:
                return None
            scope_version = scope.get("version") or None
            spans = ss.get("spans")
            if type(spans) is not list:
                return None
            out.extend((span, resource, scope_name, scope_version) for span in spans)
    return out
