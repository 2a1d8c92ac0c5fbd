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

Each instrumentation is a :class:`~.conventions.Convention` of the table in :mod:`.conventions`:
how to recognise its spans plus which attribute keys feed which column, first key present
wins. Adding a convention is adding one entry to :data:`~.conventions.CONVENTIONS`.

A malformed span raises :class:`SpanRejected` with a reason a person can act on; nothing here
raises anything else for bad input.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from clauditor import semconv as sc
from clauditor.cloud import region_from_host
from clauditor.ingest.conventions import (
    CALL_SPAN_NAMES,
    CONVENTIONS,
    ERROR_TYPE_ALIASES,
    OPERATION_BY_GENAI_NAME,
    OPERATION_BY_SPAN_NAME,
    Convention,
    as_text,
    to_bool,
    to_float,
    to_int,
)
from clauditor.ingest.span_record import SpanRecord
from clauditor.redact import clip, is_secret_key, scrub, scrub_value
from clauditor.schema import CALLS_COLUMNS, PRICED_COLUMNS, SOURCES
from clauditor.store import SAME_CALL_COUNTS, SAME_CALL_LABELS, same_call

__all__ = [
    "BAGGAGE_FEATURE_ATTRIBUTE",
    "MAX_TOKEN_COUNT",
    "ROW_COLUMNS",
    "SOURCE_PREFERENCE",
    "STATUS_CODE_ERROR",
    "TEXT_COLUMNS",
    "SpanRecord",
    "SpanRejected",
    "encode_json",
    "feature_tag",
    "is_span_id",
    "is_trace_id",
    "mapped_keys",
    "normalize",
    "one_row_per_call",
    "record_row",
    "resource_columns",
]

MAX_TOKEN_COUNT = 100_000_000  # no single call comes near this; larger means a broken exporter
_MAX_INT64 = 2**63 - 1

STATUS_CODE_ERROR = 2  # OTLP Status.code
BAGGAGE_FEATURE_ATTRIBUTE = "baggage." + sc.BAGGAGE_FEATURE  # baggage copied onto the span

_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_ZERO16 = "0" * 16
_ZERO32 = "0" * 32
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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


def _plain_int(value: Any) -> bool:
    """Whether ``value`` is an int that a 64-bit column holds (the common, fast case)."""
    return type(value) is int and -_MAX_INT64 - 1 <= value <= _MAX_INT64


# The attributes JSON's one encoder: json.dumps with options builds a new one on every call.
encode_json = json.JSONEncoder(separators=(",", ":"), default=str).encode


@functools.lru_cache(maxsize=8192)
def _secret_key(key: str) -> bool:
    # Attribute keys repeat across spans: remember the verdict instead of re-testing markers.
    return is_secret_key(key)


TEXT_COLUMNS = (
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
    return encode_json(clean)


# --- resource ----------------------------------------------------------------------------------

# Spans of one OTLP request share one resource dict: its columns are computed once and reused
# while the same object comes back. A strong reference is held, so an identity match cannot be a
# recycled id; callers must not mutate a resource dict between spans.
_resource_cache: tuple[Any, tuple[str | None, str | None, str]] = (None, (None, None, "{}"))


def resource_columns(resource: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """The ``service``, ``environment`` and ``resource`` JSON columns of a flattened resource."""
    global _resource_cache
    cached = _resource_cache  # one read: the tuple is swapped whole, so threads never see half
    if cached[0] is resource:
        return cached[1]
    rest = dict(resource)
    service = as_text(rest.pop(sc.SERVICE_NAME, None))
    env = rest.pop(sc.DEPLOYMENT_ENVIRONMENT_NAME, None)
    older = rest.pop(sc.DEPLOYMENT_ENVIRONMENT, None)
    columns = (service, as_text(env if env is not None else older), _json(rest))
    _resource_cache = (resource, columns)
    return columns


# --- the row -----------------------------------------------------------------------------------


def is_span_id(value: Any) -> bool:
    """Whether ``value`` is a span id a row may carry: 16 hex characters, not all zeros."""
    return type(value) is str and _HEX16.fullmatch(value) is not None and value != _ZERO16


def is_trace_id(value: Any) -> bool:
    """Whether ``value`` is a trace id a row may carry: 32 hex characters, not all zeros."""
    return type(value) is str and _HEX32.fullmatch(value) is not None and value != _ZERO32


def _check_ids_and_times(record: SpanRecord) -> tuple[str, str, str | None]:
    span_id = record.span_id
    if not is_span_id(span_id):
        shown = clip(repr(span_id), 40)
        raise SpanRejected(f"span_id is not 16 hex characters (or is all zeros): {shown}")
    trace_id = record.trace_id
    if not is_trace_id(trace_id):
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


def _is_claude_call(record: SpanRecord, conv: Convention) -> bool:
    attributes = record.attributes
    models = [v for k in conv.model_keys if (v := attributes.get(k)) is not None]
    if not models:
        detect = conv.matches
        return (
            sc.OPERATION in attributes
            or record.name in CALL_SPAN_NAMES
            or (detect.scope_means_call and detect.owns_scope(record.scope_name))
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


def mapped_keys(conv: Convention, feature_attributes: tuple[str, ...]) -> frozenset[str]:
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


def record_row(record: SpanRecord, feature_attributes: Sequence[str]) -> dict[str, Any] | None:
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
    mapped = mapped_keys(conv, feature_attributes)
    rest = {k: v for k, v in attrs.items() if k not in mapped}

    for name in ("request_model", "response_model"):
        value = f[name]
        if value is not None and type(value) is not str:
            key = _present_key(attrs, conv.keys[name])
            raise SpanRejected(f"{key} is not a string: {clip(str(value), 40)!r}")

    operation = f["operation"]
    if operation is None:
        operation = OPERATION_BY_SPAN_NAME.get(record.name)
        if operation is None:
            genai = as_text(f["genai_operation"])
            operation = "chat" if genai is None else OPERATION_BY_GENAI_NAME.get(genai, genai)
    operation = as_text(operation)

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

    error_type = as_text(f["error_type"])
    if error_type is not None:
        error_type = ERROR_TYPE_ALIASES.get(error_type, error_type)
    status = "error" if record.status_code == STATUS_CODE_ERROR or error_type else "ok"

    stop_reason = as_text(f["stop_reason"])
    if stop_reason is None:
        finish = f["finish_reasons"]
        if type(finish) is list:
            finish = finish[0] if finish else None
        stop_reason = as_text(finish)

    service, environment, resource_json = resource_columns(record.resource)
    start_ns = record.start_ns
    end_ns = record.end_ns
    # Informative numbers: the common well-typed value directly, anything else parsed leniently.
    ttft_ms = f["ttft_ms"]
    if ttft_ms is not None and type(ttft_ms) is not float:
        ttft_ms = _lenient(f, "ttft_ms", to_float, rest, attrs, conv)
    max_tokens = f["max_tokens"]
    if max_tokens is not None and not _plain_int(max_tokens):
        max_tokens = _lenient(f, "max_tokens", to_int, rest, attrs, conv)
    stream = f["stream"]
    if stream is not None and type(stream) is not bool:
        stream = _lenient(f, "stream", to_bool, rest, attrs, conv)
    http_status = f["http_status"]
    if http_status is not None and not _plain_int(http_status):
        http_status = _lenient(f, "http_status", to_int, rest, attrs, conv)
    response_id = get(sc.GEN_AI_RESPONSE_ID)
    cloud_region = as_text(f["cloud_region"])
    if cloud_region is None:
        host = get(sc.SERVER_ADDRESS)
        if type(host) is str:
            cloud_region = region_from_host(host)
    retries = f["retries"]
    if not _plain_int(retries):
        retries = _lenient(f, "retries", to_int, rest, attrs, conv) or 0

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
        "feature": as_text(feature),
        "user_id": as_text(f["user_id"]),
        "conversation_id": as_text(f["conversation_id"]),
        "code_location": as_text(f["code_location"]),
        "operation": operation,
        "request_model": f["request_model"],
        "response_model": f["response_model"],
        "max_tokens": max_tokens,
        "stream": stream,
        "service_tier": as_text(f["service_tier"]),
        "inference_geo": as_text(f["inference_geo"]),
        "speed": as_text(f["speed"]),
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
        "container_id": as_text(f["container_id"]),
        "cloud_region": cloud_region,
        "reported_cost_usd": None,  # set by the conventions of sources that report a cost
    }
    if conv.refine is not None:
        conv.refine(record, row, rest, feature_attributes)
    for column in TEXT_COLUMNS:  # a key pasted into a tag must not reach a column either
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
    row = record_row(record, feature_attributes)
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


def one_row_per_call(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (``calls`` rows) with one row per Claude call when two instrumentations
    described the same call; the row of the preferred source (:data:`SOURCE_PREFERENCE`) stays
    and takes the feature, user and conversation of the rows it replaces where it has none (the
    wrapper instrumentations are where apps attach those).

    Two rows of different sources are the same call when (:func:`clauditor.store.same_call`)

    * they share a ``gen_ai.response.id`` (the message id, unique per call) and a service: a
      proxy or a test server that reuses ids across services does not fold two calls; or
    * one of them has no id (failed calls; OpenInference keeps the id only in captured output)
      and they are spans of one trace, nested or overlapping in time, of the same service,
      request model and token counts (a missing count as 0), paired one to one: a span is
      folded only into a span it is nested in (or that is nested in it) or, failing that, the
      one candidate there is. Two identical calls side by side in one trace stay two calls.

    Rows of one source are never merged: the span_id key already dedupes re-ingests.
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
        .with_columns(pl.col("span_id").first().over("_rid", "service").alias("_keep"))
        .filter(pl.col("_keep") != pl.col("span_id"))
        .select("span_id", "_keep")
    )
    keys = ["trace_id", *SAME_CALL_LABELS, *SAME_CALL_COUNTS]
    side = keyed.select(
        "span_id",
        "parent_span_id",
        "_rid",
        "_rank",
        "start_time",
        "end_time",
        "trace_id",
        *SAME_CALL_LABELS,
        *[pl.col(c).fill_null(0) for c in SAME_CALL_COUNTS],  # a missing count as 0
    )
    candidates = (
        side.join(side, on=keys, nulls_equal=True, suffix="_k")
        .filter(
            (pl.col("_rank_k") < pl.col("_rank"))
            & (pl.col("_rid").is_null() | pl.col("_rid_k").is_null())
            & (pl.col("start_time_k") <= pl.col("end_time"))
            & (pl.col("start_time") <= pl.col("end_time_k"))
            & pl.col("trace_id").is_not_null()
        )
        .select(
            "span_id",
            pl.col("span_id_k").alias("_keep"),
            pl.col("_rank_k").alias("_keep_rank"),
            "_rank",
            (
                (pl.col("parent_span_id") == pl.col("span_id_k"))
                | (pl.col("parent_span_id_k") == pl.col("span_id"))
            )
            .fill_null(False)
            .alias("_nested"),
        )
    )
    by_trace = same_call(candidates)
    replaced = pl.concat([by_id, by_trace], how="vertical").unique("span_id", keep="first")
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
