"""The SQL that turns the Collector's ``otel_traces`` rows into priced ``calls`` rows.

Nothing here is a second copy of the rules: the convention chain, every key list, the provider
test, the cache arithmetic, the error-type aliases, the feature keys, the secret-key markers and
the host-to-region rules are read from the Python tables (:mod:`._rules`, :mod:`clauditor.cloud`,
:mod:`clauditor.redact`) and written out as SQL; the prices come from the rate-card dictionary
and the :class:`~clauditor.rate_cards.PriceTable` (:mod:`.ddl` fills both). What is Python code
rather than data has its SQL beside it here: a convention's ``refine`` (keyed by the Python
function's identity, so generation fails for a convention whose step has no SQL), and the
order in which :func:`clauditor.pricing.price_calls` combines a card's parts (tier, fast mode,
multipliers, fees, the assumed TTL). A detector is :class:`~clauditor.ingest.conventions.Markers`
data and becomes SQL field by field. tests/clickhouse/ holds the two paths to the same rows
over the whole convention corpus and over spans made to reach every pricing rule of every rate
card.

Where the view's input differs from the Python path's, and what follows:

* the exporter stores every attribute value as text (ints as digits, bools as ``true``/
  ``false``, arrays as JSON). Columns come out the same; the ``attributes``/``resource`` JSON
  holds those texts (``"port":"443"`` where the Python path writes ``443``).
* a span the Python path would reject (bad ids, a token count that is not an integer in range)
  cannot fail the exporter's insert: the view skips it, and it stays in ``otel_traces`` only
  (there is no quarantine table on ClickHouse).
* a text value that looks like JSON and names a secret key is withheld from that name on
  (:mod:`clauditor.redact`'s rule for unparsable text), where the Python path parses it and
  drops only the secret keys: stricter, never looser. Known webhook URLs (a process setting)
  are not known to the view; the fixed patterns (API keys, bearer tokens, Slack hooks) are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from clauditor import semconv as sc
from clauditor.clickhouse import _rules as rules
from clauditor.cloud import HOST_RULES
from clauditor.pricing import BATCH_DISCOUNT, PER_MTOK
from clauditor.rate_cards import ID_PATTERNS, MAX_TIERS, RATE_NAMES, PriceTable
from clauditor.redact import REDACTED, WITHHELD
from clauditor.schema import CALLS_COLUMNS, PRICED_COLUMNS, SOURCES
from clauditor.semconv import SECRET_KEY_MARKERS

__all__ = [
    "CALL_KEY",
    "SOURCE_PREFERENCE",
    "UNPRICED",
    "lit",
    "model_key",
    "priced_select",
    "scrub",
    "scrub_nullable",
    "spans_select",
]

CALL_KEY = "call_key"  # the ReplacingMergeTree's key: the response id, else the span id
SOURCE_PREFERENCE = "source_preference"  # its version column: the preferred source is highest
UNPRICED = tuple(name for name, _, _ in CALLS_COLUMNS if name not in PRICED_COLUMNS)

# The same patterns the Python path uses (clauditor.redact, clauditor.pricing), via _rules.
_SECRET_VALUE_PATTERN = rules.SECRET_VALUE_PATTERN
_BEDROCK_REGIONAL = rules.BEDROCK_REGIONAL_PATTERN
_INT64_MAX = 2**63 - 1


def lit(text: str) -> str:
    """``text`` as a ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _array(items: Sequence[str]) -> str:
    if not items:
        return "CAST([], 'Array(String)')"
    return "[" + ", ".join(lit(i) for i in items) + "]"


def _strip(expr: str) -> str:
    """Python's ``str.strip()`` (whitespace at both ends)."""
    return f"replaceRegexpAll({expr}, '^\\\\s+|\\\\s+$', '')"


def model_key(expr: str) -> str:
    """:func:`clauditor.rate_cards.normalize_model_id` of the SQL ``expr``, in ClickHouse SQL."""
    key = f"lowerUTF8({_strip(expr)})"
    for pattern in ID_PATTERNS:
        key = f"replaceRegexpAll({key}, {lit(pattern)}, '')"
    return key


def _is_secret_key(key: str) -> str:
    # The markers are lower-case ASCII: a case-blind search is the Python `marker in key.lower()`.
    return f"multiSearchAnyCaseInsensitiveUTF8({key}, {_array(SECRET_KEY_MARKERS)})"


def scrub(expr: str) -> str:
    """:func:`clauditor.redact.scrub`'s fixed rules on the SQL text ``expr`` (module docstring)."""
    # The regular expression runs only on text holding what it looks for, as in Python.
    replaced = (
        f"if(multiSearchAny({expr}, ['sk-ant-', 'hooks.slack', 'earer']), "
        f"replaceRegexpAll({expr}, {lit(_SECRET_VALUE_PATTERN)}, {lit(REDACTED)}), {expr})"
    )
    markers = _array(SECRET_KEY_MARKERS)
    first = f"multiSearchFirstPositionCaseInsensitiveUTF8({replaced}, {markers})"
    return (
        f"if(substring({expr}, 1, 1) IN ('{{', '[') AND {_is_secret_key(replaced)}, "
        f"concat(substringUTF8({replaced}, 1, {first} - 1), {lit(WITHHELD)}), {replaced})"
    )


# --- the convention chain --------------------------------------------------------------------

A = "SpanAttributes"
R = "ResourceAttributes"


def _get(key: str, attrs: str = A) -> str:
    return f"if(mapContains({attrs}, {lit(key)}), {attrs}[{lit(key)}], NULL)"


def _first(keys: Sequence[str], attrs: str = A) -> str:
    """The value of the first key present, else NULL (Nullable(String))."""
    if not keys:
        return "CAST(NULL, 'Nullable(String)')"
    if len(keys) == 1:
        return _get(keys[0], attrs)
    arms = ", ".join(f"mapContains({attrs}, {lit(k)}), {attrs}[{lit(k)}]" for k in keys)
    return f"multiIf({arms}, NULL)"


def _first_key(keys: Sequence[str]) -> str:
    """The first key present (for the attributes a lenient parse keeps), else NULL."""
    if not keys:
        return "CAST(NULL, 'Nullable(String)')"
    arms = ", ".join(f"mapContains({A}, {lit(k)}), {lit(k)}" for k in keys)
    return f"multiIf({arms}, NULL)"


def _markers_sql(markers: rules.Markers, scope: str) -> str:
    """:meth:`Markers.__call__` as SQL, field by field."""
    if markers.any_span:
        return "true"
    parts = []
    if markers.scopes:
        parts.append(f"{scope} IN ({', '.join(lit(s) for s in sorted(markers.scopes))})")
    parts += [f"startsWith({scope}, {lit(p)})" for p in markers.scope_prefixes]
    parts += [f"mapContains({A}, {lit(k)})" for k in sorted(markers.keys)]
    parts += [
        f"arrayExists(k -> startsWith(k, {lit(p)}), mapKeys({A}))" for p in markers.key_prefixes
    ]
    return "(" + " OR ".join(parts) + ")" if parts else "false"


# The Markers fields _markers_sql and _owns_scope_sql write out; a new one stops generation.
_MARKER_FIELDS = frozenset(
    {"scopes", "scope_prefixes", "keys", "key_prefixes", "any_span", "scope_means_call"}
)


def _detector(conv: rules.Convention) -> rules.Markers:
    """The convention's detector, which must be plain :class:`Markers` data with only the
    fields the view knows: anything else (a function, a subclass with its own matching, a
    field added to ``Markers``) has no SQL, and generation stops."""
    detect = conv.matches
    if type(detect) is not rules.Markers:
        raise ValueError(f"convention {conv.source!r}: its detector has no ClickHouse SQL")
    unknown = {f.name for f in dataclasses.fields(detect)} - _MARKER_FIELDS
    if unknown:
        raise ValueError(
            f"convention {conv.source!r}: its detector has no ClickHouse SQL "
            f"for Markers field(s) {sorted(unknown)}"
        )
    return detect


def _owns_scope_sql(conv: rules.Convention, scope: str) -> str:
    """Whether the span's scope alone makes it a Claude call (``Markers.scope_means_call``)."""
    markers = _detector(conv)
    if not markers.scope_means_call:
        return "false"
    return _markers_sql(rules.Markers(markers.scopes, markers.scope_prefixes), scope)


def _matches_sql(conv: rules.Convention, scope: str) -> str:
    return _markers_sql(_detector(conv), scope)


def _per_convention(value: Callable[[rules.Convention], str]) -> str:
    """One expression choosing, by ``_conv``, each convention's ``value`` (shared arms merged)."""
    arms: dict[str, list[int]] = {}
    for i, conv in enumerate(rules.CONVENTIONS):
        arms.setdefault(value(conv), []).append(i)
    if len(arms) == 1:
        return next(iter(arms))
    items = list(arms.items())
    parts = [f"_conv IN ({', '.join(map(str, idx))}), {expr}" for expr, idx in items[:-1]]
    return f"multiIf({', '.join(parts)}, {items[-1][0]})"


# --- stage 1: fields from the span's attributes ----------------------------------------------

_COUNTS = (
    "cache_read",
    "cache_write",
    "cache_write_5m",
    "cache_write_1h",
    "output_tokens",
    "input_uncached",
    "input_inclusive",
)
_TOOL_COUNTS = ("web_search_requests", "web_fetch_requests", "code_execution_requests")
_LENIENT = ("ttft_ms", "max_tokens", "stream", "http_status", "retries")


def _keyed(lookup: Callable[[Sequence[str]], str], name: str) -> Callable[[rules.Convention], str]:
    def value(conv: rules.Convention) -> str:
        return lookup(conv.keys[name])

    return value


def _consumed(key: str, feature_attributes: tuple[str, ...], scope_columns: bool) -> str:
    """Whether attribute ``key`` feeds a column under the span's convention (constant key lists
    per convention, so no per-row array is built)."""

    def mapped(c: rules.Convention) -> str:
        keys = set(c.mapped) | set(feature_attributes) | set(c.feature_keys)
        keys.add(rules.BAGGAGE_FEATURE_ATTRIBUTE)
        if not scope_columns:  # older exporters copy the scope into the attributes
            keys |= {"otel.scope.name", "otel.scope.version"}
        return f"has({_array(sorted(keys))}, {key})"

    return _per_convention(mapped)


def _fields_select(table: str, feature_attributes: tuple[str, ...], scope_columns: bool) -> str:
    scope = "ScopeName" if scope_columns else _get("otel.scope.name")
    chain = [_matches_sql(c, "_scope") for c in rules.CONVENTIONS]
    conv = "multiIf(" + ", ".join(f"{m}, {i}" for i, m in enumerate(chain[:-1]))
    conv += (
        f", {len(chain) - 1})" if chain[-1] == "true" else f", {chain[-1]}, {len(chain) - 1}, 255)"
    )
    cols = [
        f"{scope} AS _scope",
        f"toUInt8({conv}) AS _conv",
        "SpanName AS _name",
        "StatusMessage AS _message",
        "StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS _status_error",
        "toUnixTimestamp64Nano(Timestamp) AS _start_ns",
        "_start_ns + toInt64(Duration) AS _end_ns",
        "lower(SpanId) AS _span_id",
        "lower(TraceId) AS _trace_id",
        "ParentSpanId AS _parent",
        f"{A} AS _attrs",
        f"{R} AS _resource",
    ]
    for name in rules.GENAI_KEYS:
        cols.append(f"{_per_convention(_keyed(_first, name))} AS f_{name}")
    for name in _LENIENT:
        cols.append(f"{_per_convention(_keyed(_first_key, name))} AS k_{name}")
    cols.append(f"{_per_convention(lambda c: _first(c.model_keys))} IS NOT NULL AS _has_model")
    claude = _per_convention(
        lambda c: (
            "arrayExists(m -> positionUTF8(lowerUTF8(m), 'claude') > 0, "
            f"arrayFilter(m -> m IS NOT NULL, [{', '.join(_get(k) for k in c.model_keys)}]))"
        )
    )
    cols.append(f"{claude} AS _model_claude")
    cols.append(f"{_per_convention(lambda c: _first(c.provider_keys))} AS _provider")
    cols.append(f"{_per_convention(lambda c: _owns_scope_sql(c, '_scope'))} AS _owns_scope")
    feature = _per_convention(
        lambda c: _first((*feature_attributes, rules.BAGGAGE_FEATURE_ATTRIBUTE, *c.feature_keys))
    )
    cols.append(f"{feature} AS f_feature")

    return f"SELECT {', '.join(cols)} FROM {table}"


# --- stage 2: the row, as normalize builds it before refine ----------------------------------


def _count(name: str) -> str:
    return f"toInt64OrNull(f_{name})"


def _count_ok(name: str) -> str:
    return (
        f"(f_{name} IS NULL OR (toInt64OrNull(f_{name}) IS NOT NULL "
        f"AND toInt64OrNull(f_{name}) BETWEEN 0 AND {rules.MAX_TOKEN_COUNT}))"
    )


def _transform(expr: str, mapping: dict[str, str], default: str) -> str:
    keys, values = list(mapping), list(mapping.values())
    return f"transform({expr}, {_array(keys)}, {_array(values)}, {default})"


def _region_from_host(host: str) -> str:
    lowered = f"lowerUTF8({host})"
    arms = []
    for pattern, region in HOST_RULES:
        anchored = lit(f"^(?:{pattern})$")
        value = lit(region) if region is not None else f"extract({lowered}, {anchored})"
        arms.append(f"match({lowered}, {anchored}), {value}")
    return f"multiIf({', '.join(arms)}, NULL)"


def _row_select(fields: str) -> str:
    zeros16, zeros32 = "0" * 16, "0" * 32
    call = (
        f"if(_has_model, _provider IS NULL OR positionUTF8(lowerUTF8(_provider), 'anthropic') > 0 "
        f"OR _model_claude, mapContains(_attrs, {lit(sc.OPERATION)}) "
        f"OR _name IN ({', '.join(lit(n) for n in sorted(rules.CALL_SPAN_NAMES))}) OR _owns_scope)"
    )
    valid = [
        f"match(_span_id, '^[0-9a-f]{{16}}$') AND _span_id != '{zeros16}'",
        f"match(_trace_id, '^[0-9a-f]{{32}}$') AND _trace_id != '{zeros32}'",
        "_start_ns > 0",
        f"_end_ns <= {_INT64_MAX}",
        *(_count_ok(n) for n in _TOOL_COUNTS),
        f"(_op = 'count_tokens' OR ({' AND '.join(_count_ok(n) for n in _COUNTS)}))",
    ]
    by_name = ", ".join(
        f"_name = {lit(k)}, {lit(v)}" for k, v in rules.OPERATION_BY_SPAN_NAME.items()
    )
    genai = _transform("f_genai_operation", rules.OPERATION_BY_GENAI_NAME, "f_genai_operation")
    op = (
        f"coalesce(f_operation, multiIf({by_name}, NULL), "
        f"if(f_genai_operation IS NULL, 'chat', {genai}))"
    )
    error = _transform("f_error_type", rules.ERROR_TYPE_ALIASES, "f_error_type")
    finish = (
        "if(startsWith(f_finish_reasons, '[') AND isValidJSON(f_finish_reasons) "
        "AND JSONType(f_finish_reasons) = 'Array', if(JSONLength(f_finish_reasons) = 0, NULL, "
        "if(JSONType(f_finish_reasons, 1) = 'String', JSONExtractString(f_finish_reasons, 1), "
        "JSONExtractRaw(f_finish_reasons, 1))), f_finish_reasons)"
    )
    cache_5m, cache_1h = _count("cache_write_5m"), _count("cache_write_1h")
    cols = [
        "_conv",
        "_name",
        "_message",
        "_attrs",
        f"{op} AS _op",
        "_span_id AS span_id",
        "_trace_id AS trace_id",
        f"if(_parent = '' OR _parent = '{zeros16}', NULL, lower(_parent)) AS parent_span_id",
        "fromUnixTimestamp64Micro(intDiv(_start_ns, 1000), 'UTC') AS start_time",
        "fromUnixTimestamp64Micro(intDiv(_end_ns, 1000), 'UTC') AS end_time",
        "(_end_ns - _start_ns) / 1e6 AS duration_ms",
        "toFloat64OrNull(f_ttft_ms) AS ttft_ms",
        f"{_get(sc.SERVICE_NAME, '_resource')} AS service",
        f"coalesce({_get(sc.DEPLOYMENT_ENVIRONMENT_NAME, '_resource')}, "
        f"{_get(sc.DEPLOYMENT_ENVIRONMENT, '_resource')}) AS environment",
        "f_feature AS feature",
        "f_user_id AS user_id",
        "f_conversation_id AS conversation_id",
        "f_code_location AS code_location",
        "_op AS operation",
        "f_request_model AS request_model",
        "f_response_model AS response_model",
        "toInt32OrNull(f_max_tokens) AS max_tokens",
        "if(lower(f_stream) IN ('true', 'false'), lower(f_stream) = 'true', NULL) AS stream",
        "f_service_tier AS service_tier",
        "f_inference_geo AS inference_geo",
        "f_speed AS speed",
        f"if(_op = 'count_tokens', NULL, coalesce({_count('input_uncached')}, "
        f"if({_count('input_inclusive')} IS NULL, NULL, greatest({_count('input_inclusive')} "
        "- coalesce(cache_read_input_tokens, 0) - coalesce(cache_creation_input_tokens, 0), 0))))"
        " AS input_tokens",
        f"if(_op = 'count_tokens', NULL, {_count('output_tokens')}) AS output_tokens",
        f"if(_op = 'count_tokens', NULL, {_count('cache_read')}) AS cache_read_input_tokens",
        f"if(_op = 'count_tokens', NULL, coalesce({_count('cache_write')}, "
        f"if({cache_5m} IS NULL AND {cache_1h} IS NULL, NULL, "
        f"coalesce({cache_5m}, 0) + coalesce({cache_1h}, 0)))) AS cache_creation_input_tokens",
        f"if(_op = 'count_tokens', NULL, {cache_5m}) AS cache_creation_5m_input_tokens",
        f"if(_op = 'count_tokens', NULL, {cache_1h}) AS cache_creation_1h_input_tokens",
        f"coalesce(f_stop_reason, {finish}) AS stop_reason",
        f"{error} AS _error_type",
        "if(_status_error OR coalesce(_error_type, '') != '', 'error', 'ok') AS status",
        "toInt32OrNull(f_http_status) AS http_status",
        "coalesce(toInt32OrNull(f_retries), 0) AS retries",
        "_conv_source AS source",
        f"{_get(sc.GEN_AI_RESPONSE_ID, '_attrs')} AS response_id",
        *(f"{_count(n)} AS {n}" for n in _TOOL_COUNTS),
        "f_container_id AS container_id",
        f"coalesce(f_cloud_region, {_region_from_host(_get(sc.SERVER_ADDRESS, '_attrs'))}) "
        "AS cloud_region",
        "CAST(NULL, 'Nullable(Float64)') AS reported_cost_usd",
        "_resource",
        # Lenient fields that did not parse stay in the attributes JSON under their key.
        "arrayFilter(k -> k IS NOT NULL, ["
        "if(f_ttft_ms IS NOT NULL AND ttft_ms IS NULL, k_ttft_ms, NULL), "
        "if(f_max_tokens IS NOT NULL AND max_tokens IS NULL, k_max_tokens, NULL), "
        "if(f_stream IS NOT NULL AND stream IS NULL, k_stream, NULL), "
        "if(f_http_status IS NOT NULL AND http_status IS NULL, k_http_status, NULL), "
        "if(f_retries IS NOT NULL AND toInt32OrNull(f_retries) IS NULL, k_retries, NULL)"
        "]) AS _kept",
        "f_input_inclusive",
        "f_input_uncached",
        f"toInt32OrNull(extract(_message, {lit(rules.STATUS_HTTP_PATTERN)})) AS _message_http",
        f"extract(_message, {lit(rules.STATUS_ERROR_TYPE_PATTERN)}) AS _message_error_type",
    ]
    sources = _array([c.source for c in rules.CONVENTIONS])
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT *, {sources}[_conv + 1] AS _conv_source, "
        f"({call}) AS _is_call FROM ({fields})) "
        f"WHERE _is_call AND {' AND '.join(valid)}"
    )


# --- stage 3: refine, redaction, the attributes JSON -----------------------------------------


def _failure(refined: dict[str, str]) -> None:
    """``_refine_failure``: HTTP status and error type from the SDK's exception message (read
    into ``_message_http``/``_message_error_type`` by the row step)."""
    aliases = _array(sorted(set(rules.ERROR_TYPE_ALIASES.values())))
    refined["http_status"] = (
        "if(status = 'error' AND http_status IS NULL, _message_http, http_status)"
    )
    # The error type the message names, else (no type at all but a status) a generic one.
    refined["_error_type"] = (
        "multiIf(status != 'error', _error_type, _message_error_type != '' AND "
        f"(_error_type IS NULL OR has({aliases}, _error_type)), _message_error_type, "
        "_error_type IS NULL AND coalesce(http_status, _message_http) IS NOT NULL, 'api_error', "
        "_error_type)"
    )


def _refine_openinference(refined: dict[str, str], feature_attributes: tuple[str, ...]) -> None:
    params = _get(sc.OPENINFERENCE_INVOCATION_PARAMETERS, "_attrs")
    obj = f"(isValidJSON(coalesce({params}, '')) AND JSONType(coalesce({params}, '')) = 'Object')"
    p = f"coalesce({params}, '')"
    refined["max_tokens"] = (
        f"if(max_tokens IS NULL AND {obj} AND JSONType({p}, 'max_tokens') IN ('Int64', 'UInt64'), "
        f"toInt32OrNull(toString(JSONExtractInt({p}, 'max_tokens'))), max_tokens)"
    )
    refined["stream"] = (
        f"if(stream IS NULL AND {obj} AND JSONLength({p}) > 0, "
        f"JSONType({p}, 'stream') = 'Bool' AND JSONExtractBool({p}, 'stream'), stream)"
    )
    md = f"coalesce({_get(sc.OPENINFERENCE_METADATA, '_attrs')}, '')"
    names = [k[len("metadata.") :] for k in feature_attributes if k.startswith("metadata.")]
    arms = ", ".join(
        f"JSONType({md}, {lit(n)}) = 'String', JSONExtractString({md}, {lit(n)})"
        for n in (*names, "feature")
    )
    from_md = f"if(isValidJSON({md}) AND JSONType({md}) = 'Object', multiIf({arms}, NULL), NULL)"
    refined["feature"] = f"coalesce(feature, {from_md})"
    _failure(refined)


def _refine_openlit(refined: dict[str, str], feature_attributes: tuple[str, ...]) -> None:
    raw = _get(sc.OPENLIT_TTFT_S, "_attrs")
    used = f"(stream = true AND ttft_ms IS NULL AND toFloat64OrNull({raw}) IS NOT NULL)"
    refined["ttft_ms"] = f"if({used}, toFloat64OrNull({raw}) * 1000.0, ttft_ms)"
    refined["_dropped"] = f"if({used}, [{lit(sc.OPENLIT_TTFT_S)}], _dropped)"
    refined["request_model"] = (
        "if(request_model IS NULL AND startsWith(_name, 'chat '), substring(_name, 6), "
        "request_model)"
    )
    _failure(refined)


def _refine_openllmetry(refined: dict[str, str], feature_attributes: tuple[str, ...]) -> None:
    _failure(refined)


def _refine_claude_code(refined: dict[str, str], feature_attributes: tuple[str, ...]) -> None:
    cost = f"toFloat64OrNull({_get(sc.CC_COST_USD, '_attrs')})"
    cost_ok = f"({cost} IS NOT NULL AND {cost} >= 0 AND {cost} < inf)"
    attempt = f"toInt64OrNull({_get(sc.CC_ATTEMPT, '_attrs')})"
    attempt_ok = f"({attempt} IS NOT NULL AND {attempt} >= 1)"
    refined["reported_cost_usd"] = f"if({cost_ok}, {cost}, reported_cost_usd)"
    feature = _get(sc.FEATURE, "_attrs")
    refined["feature"] = (
        f"if(coalesce({feature}, '') = '', {lit(sc.CLAUDE_CODE_SERVICE)}, {feature})"
    )
    refined["retries"] = f"if({attempt_ok}, toInt32({attempt} - 1), retries)"
    refined["_dropped"] = (
        f"arrayConcat(if({cost_ok}, [{lit(sc.CC_COST_USD)}], CAST([], 'Array(String)')), "
        f"if({attempt_ok}, [{lit(sc.CC_ATTEMPT)}], CAST([], 'Array(String)')))"
    )
    by_status = ", ".join(
        f"http_status = {s}, {lit(t)}" for s, t in rules.ERROR_TYPE_BY_STATUS.items()
    )
    refined["_error_type"] = (
        f"if(status = 'error' AND _error_type IS NULL, if(coalesce(http_status, 0) != 0, "
        f"multiIf({by_status}, 'api_error'), 'timeout'), _error_type)"
    )


_REFINES: dict[object, Callable[[dict[str, str], tuple[str, ...]], None]] = {
    rules.REFINE_OPENLLMETRY: _refine_openllmetry,
    rules.REFINE_OPENINFERENCE: _refine_openinference,
    rules.REFINE_OPENLIT: _refine_openlit,
    rules.REFINE_CLAUDE_CODE: _refine_claude_code,
}


def _refined_select(row: str, feature_attributes: tuple[str, ...], scope_columns: bool) -> str:
    overrides: dict[str, dict[int, str]] = {}
    for i, conv in enumerate(rules.CONVENTIONS):
        if conv.refine is None:
            continue
        step = _REFINES.get(conv.refine)
        if step is None:
            raise ValueError(f"convention {conv.source!r}: its refine step has no ClickHouse SQL")
        refined: dict[str, str] = {}
        step(refined, feature_attributes)
        for column, expr in refined.items():
            overrides.setdefault(column, {})[i] = expr

    def pick(column: str, default: str) -> str:
        arms = overrides.get(column)
        if not arms:
            return default
        parts = ", ".join(f"_conv = {i}, {expr}" for i, expr in arms.items())
        return f"multiIf({parts}, {default})"

    # Refine steps read the row before refinement; their outputs are computed side by side.
    first = [f"{pick(c, c)} AS {c}" for c in sorted(overrides) if c != "_dropped"]
    first.append(f"{pick('_dropped', 'CAST([], ' + lit('Array(String)') + ')')} AS _dropped")
    replaced = ", ".join(first)
    empty = "CAST([], 'Array(String)')"
    stage_a = f"SELECT * REPLACE ({replaced}) FROM (SELECT *, {empty} AS _dropped FROM ({row}))"
    # The attributes JSON: every attribute no column consumed, secrets dropped and scrubbed.
    counted = sc.ANTHROPIC_COUNT_TOKENS_INPUT_TOKENS
    rest = (
        f"mapFilter((k, v) -> (NOT {_consumed('k', feature_attributes, scope_columns)} "
        "OR has(_kept, k)) AND NOT has(_dropped, k) "
        f"AND NOT {_is_secret_key('k')}, _attrs)"
    )
    rest = (
        f"if(_op = 'count_tokens' AND coalesce(f_input_inclusive, f_input_uncached) IS NOT NULL "
        f"AND NOT mapContains({rest}, {lit(counted)}), mapUpdate({rest}, "
        f"map({lit(counted)}, assumeNotNull(coalesce(f_input_inclusive, f_input_uncached)))), "
        f"{rest})"
    )
    resource_keys = _array(
        [sc.SERVICE_NAME, sc.DEPLOYMENT_ENVIRONMENT_NAME, sc.DEPLOYMENT_ENVIRONMENT]
    )
    resource = (
        f"mapFilter((k, v) -> NOT has({resource_keys}, k) AND NOT {_is_secret_key('k')}, _resource)"
    )
    cols = []
    for name in UNPRICED:
        if name == "attributes":
            expr = f"toJSONString(mapApply((k, v) -> (k, {scrub('v')}), {rest}))"
        elif name == "resource":
            expr = f"toJSONString(mapApply((k, v) -> (k, {scrub('v')}), {resource}))"
        elif name == "error_type":
            expr = scrub_nullable("_error_type")
        elif name in rules.TEXT_COLUMNS:
            expr = scrub_nullable(name)
        else:
            expr = name
        cols.append(f"{expr} AS {name}")
    cols.append(f"coalesce(response_id, span_id) AS {CALL_KEY}")
    preference = _array(list(SOURCES))
    cols.append(
        f"toUInt8({len(SOURCES) + 1} - if(indexOf({preference}, source) = 0, "
        f"{len(SOURCES) + 1}, indexOf({preference}, source))) AS {SOURCE_PREFERENCE}"
    )
    return f"SELECT {', '.join(cols)} FROM ({stage_a})"


def scrub_nullable(expr: str) -> str:
    """:func:`scrub` of a Nullable(String) column (NULL stays NULL)."""
    return f"if({expr} IS NULL, NULL, {scrub(f'assumeNotNull({expr})')})"


def spans_select(
    table: str,
    *,
    feature_attributes: Sequence[str] = (sc.FEATURE,),
    scope_columns: bool = True,
) -> str:
    """The SELECT over the exporter's traces ``table`` giving one unpriced ``calls`` row per
    Claude call span (plus :data:`CALL_KEY` and :data:`SOURCE_PREFERENCE`).

    ``feature_attributes`` are config's ``[ingest] feature_attributes``; ``scope_columns`` is
    False for exporter versions whose table has no ``ScopeName`` column (they put the scope in
    ``otel.scope.name``).
    """
    if not rules.CONVENTIONS:
        raise ValueError("no conventions to generate the view from")
    features = tuple(feature_attributes)
    fields = _fields_select(table, features, scope_columns)
    return _refined_select(_row_select(fields), features, scope_columns)


# --- pricing -----------------------------------------------------------------------------------


def _fee(table: PriceTable, name: str) -> str:
    expr = "CAST(NULL, 'Nullable(Float64)')"
    for fees in sorted(table.tool_fees, key=lambda f: f.effective_from):
        value = float(getattr(fees, name))
        expr = f"if(__day >= toDate('{fees.effective_from.isoformat()}'), {value!r}, {expr})"
    return expr


def _level(columns: Sequence[str], source: str) -> str:
    """``SELECT *, columns FROM (source)``: one step, so later steps read these by name (each
    step's expressions stay small, which keeps ClickHouse's planning of the view cheap)."""
    return f"SELECT *, {', '.join(columns)} FROM ({source})"


def priced_select(source: str, table: PriceTable, dictionary: str) -> str:
    """The SELECT over ``source`` (unpriced ``calls`` rows with :data:`CALL_KEY` and
    :data:`SOURCE_PREFERENCE`) giving every ``calls`` column, priced as
    :func:`clauditor.pricing.price_calls` prices: the card comes from ``dictionary`` (one
    range per model key and period, all of a card's fields in one lookup), the TTL assumptions
    and server-tool fees from ``table``.
    """

    def tokens(column: str) -> str:
        return f"toFloat64(greatest(coalesce({column}, 0), 0))"

    def named(column: str) -> str:
        return f"if({_strip(f'coalesce({column}, {lit(chr(32))})')} = '', NULL, {column})"

    by_service = dict(table.cache_ttl_by_service)
    ttl = (
        _transform("service", by_service, lit(table.cache_ttl))
        if by_service
        else lit(table.cache_ttl)
    )
    ttl = f"coalesce({ttl}, {lit(table.cache_ttl)})"
    known_5m, known_1h = "cache_creation_5m_input_tokens", "cache_creation_1h_input_tokens"
    fields = ["price_version", "geo", "regional"]
    for prefix in ("b", "f", *(f"t{i}" for i in range(MAX_TIERS))):
        if prefix.startswith("t"):
            fields.append(f"{prefix}_above")
        fields += [f"{prefix}_{n}" for n in RATE_NAMES]
    names = "(" + ", ".join(lit(f) for f in fields) + ")"
    step1 = _level(
        [
            # LowCardinality: per block, the model-id rules run once per distinct model.
            f"toLowCardinality(coalesce({named('response_model')}, {named('request_model')})) "
            "AS __model",
            "toDate(start_time, 'UTC') AS __day",
            f"{tokens('cache_creation_input_tokens')} AS __write",
            f"{tokens('input_tokens')} + {tokens('cache_read_input_tokens')} + __write AS __prompt",
            f"{ttl} AS __ttl",
            "coalesce(operation = 'count_tokens', false) AS __free",
        ],
        source,
    )
    step2 = _level(
        [
            f"{model_key('__model')} AS __model_key",
            f"match(lowerUTF8({_strip('__model')}), {lit(_BEDROCK_REGIONAL)}) AS __br",
            f"least(greatest(multiIf({known_1h} IS NOT NULL, greatest(toFloat64({known_1h}), 0), "
            f"{known_5m} IS NOT NULL, __write - greatest(toFloat64({known_5m}), 0), "
            "__ttl = '1h', __write, 0.0), 0), __write) AS __write_1h",
        ],
        step1,
    )
    step3 = _level(
        [
            f"dictGetOrNull({lit(dictionary)}, {names}, coalesce(__model_key, ''), __day) "
            "AS __card",
            "__write - __write_1h AS __write_5m",
        ],
        step2,
    )
    step4 = _level([f"tupleElement(__card, {lit(f)}) AS __{f}" for f in fields], step3)
    batch = (
        "(coalesce(lower(service_tier) = 'batch', false) OR coalesce(operation = 'batch', false))"
    )
    us_only = "coalesce(lower(inference_geo) IN ('us', 'us-only', 'us_only'), false)"
    regional = (
        "(coalesce(__br, false) OR (cloud_region IS NOT NULL AND lower(cloud_region) != 'global'))"
    )
    step5 = _level(
        [
            "(coalesce(lower(speed) = 'fast', false) AND __f_input IS NOT NULL) AS __fast",
            f"if({batch}, {BATCH_DISCOUNT!r}, 1.0) * if({us_only}, coalesce(__geo, 1.0), 1.0) "
            f"* if({regional}, coalesce(__regional, 1.0), 1.0) AS __multiplier",
        ],
        step4,
    )
    rates = []
    for n in RATE_NAMES:
        chosen = f"__b_{n}"
        for i in range(MAX_TIERS):
            crossed = f"(__t{i}_above IS NOT NULL AND __prompt > __t{i}_above)"
            chosen = f"if({crossed}, __t{i}_{n}, {chosen})"
        chosen = f"if(__fast, __f_{n}, {chosen})"
        rates.append(f"if(__free, 0.0, {chosen} * __multiplier) AS __rate_{n}")
    step6 = _level(rates, step5)
    fees = (
        f"{tokens('web_search_requests')} * {_fee(table, 'web_search_per_1k')} / 1000 + "
        f"{tokens('web_fetch_requests')} * {_fee(table, 'web_fetch_per_1k')} / 1000"
    )
    per = repr(PER_MTOK)
    priced = {
        "cost_input_usd": f"{tokens('input_tokens')} * __rate_input * {per}",
        "cost_output_usd": f"{tokens('output_tokens')} * __rate_output * {per}",
        "cost_cache_read_usd": f"{tokens('cache_read_input_tokens')} * __rate_cache_read * {per}",
        "cost_cache_write_usd": (
            "if(__free, 0.0, (__write_5m * __rate_cache_write_5m + __write_1h * "
            f"__rate_cache_write_1h) * {per})"
        ),
        "cost_tools_usd": f"if(__free, 0.0, coalesce({fees}, 0.0))",
        "price_version": "__price_version",
        "cache_ttl_assumed": (
            f"if(__write > 0 AND {known_5m} IS NULL AND {known_1h} IS NULL, __ttl, NULL)"
        ),
        **{f"rate_{n}": f"__rate_{n}" for n in RATE_NAMES},
    }
    step7 = _level([f"{expr} AS __{name}" for name, expr in priced.items()], step6)
    parts = ("cost_input_usd", "cost_output_usd", "cost_cache_read_usd", "cost_cache_write_usd")
    total = " + ".join(f"__{p}" for p in (*parts, "cost_tools_usd"))
    outer = []
    for name, _, _ in CALLS_COLUMNS:
        if name == "cost_usd":
            outer.append(f"{total} AS cost_usd")
        elif name in priced:
            outer.append(f"__{name} AS {name}")
        else:
            outer.append(name)
    outer += [CALL_KEY, SOURCE_PREFERENCE]
    return f"SELECT {', '.join(outer)} FROM ({step7})"
