"""The fast path of file ingest: OTLP/JSON lines parsed and normalized in DuckDB, in chunks.

:func:`clauditor.ingest.normalize` turns one span into one row in Python, about 60 µs a span.
Here a chunk of lines goes to an in-memory DuckDB connection as an Arrow table; DuckDB parses
it with an explicit OTLP structure (``from_json``), unnests one row per span and computes every
``calls`` column in SQL by the same rules as :mod:`.normalize` (conventions, the cache
arithmetic, fallbacks, error mapping, the feature keys from config, redaction).

Exactness comes first: SQL only decides lines it can map one to one. A line takes the Python
path, and gets exactly the verdict it always got, whenever anything in it is unusual:

* it is not ASCII, holds a ``\\u`` escape, or holds text that the scrubber would look at
  (``sk-ant-``, ``hooks.slack``, ``earer``): non-ASCII case folding, escaped key names and
  secret patterns are left to Python;
* DuckDB's reader is laxer than Python's (trailing commas, ``nan``/``inf``), or the line has
  an explicit ``null``, a snake_case or pre-1.0 key, an ``arrayValue``/``kvlistValue``/
  ``bytesValue``, a string-valued status code, or a field of the wrong JSON type;
* any span in it would be rejected or read leniently by Python: bad ids or times, token counts
  that are not plain integers in range, a model, provider or text field that is not a string,
  an attribute value with no kind or two, a key listed twice, an integer too long for BIGINT.

Known difference, harmless: a JSON object that repeats a key (RFC 8259 says names SHOULD be
unique; no OTLP exporter writes that) is read first-wins here and last-wins by Python's json.
Doubles left in the ``attributes`` JSON are written by DuckDB (``1e20`` as
``100000000000000000000.0``); they parse to the same number.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import polars as pl
import pyarrow as pa

from clauditor import semconv as sc
from clauditor.cloud import HOST_RULES
from clauditor.semconv import SECRET_KEY_MARKERS

from . import normalize as _normalize_module  # noqa: F401  (loads it)

# The package re-exports the function `normalize` under the module's name: take the module.
nz = sys.modules[__package__ + ".normalize"]

__all__ = ["ChunkParser", "ChunkResult", "columnar_supported"]

# A line is left to Python when this matches anywhere in it (see the module docstring). False
# positives only cost speed; every alternative guards a way SQL and Python could disagree.
_STRING_FIELDS = (
    "traceId|spanId|parentSpanId|name|startTimeUnixNano|endTimeUnixNano|key|stringValue|intValue"
)
_OTHER_SPELLINGS = (
    "resource_spans|scope_spans|instrumentationLibrarySpans|instrumentationLibrary|trace_id"
    "|span_id|parent_span_id|start_time_unix_nano|end_time_unix_nano|string_value|int_value"
    "|double_value|bool_value|array_value|kvlist_value|bytes_value|bytesValue|arrayValue"
    "|kvlistValue"
)
UNUSUAL_LINE = "|".join(
    (
        r",\s*[\]}]",  # trailing comma: DuckDB accepts it, Python does not
        r"[:,\[]\s*-?(?i:nan|inf)",  # non-finite literals
        r":\s*null",  # explicit nulls: Python's `or`/`get` fallbacks differ from SQL's NULL
        r"\\u",  # escapes (key names, surrogates, non-ASCII)
        r"sk-ant-|hooks\.slack|earer",  # what clauditor.redact.scrub looks at
        rf'"(?:{_STRING_FIELDS})"\s*:\s*[^"\s]',  # a string field that is not a string
        r'"doubleValue"\s*:\s*(?:[^-0-9\s]|-?[0-9]+\s*[,}\]]|-?[0-9.]+[eE])',
        r'"boolValue"\s*:\s*[^tf\s]',
        r'"code"\s*:\s*"',  # status code by name
        r'"(?:resourceSpans|scopeSpans|spans|attributes)"\s*:\s*[^\[\s]',
        rf'"(?:{_OTHER_SPELLINGS})"\s*:',
    )
)

_VALUE = (
    '{"stringValue":"VARCHAR","intValue":"VARCHAR","doubleValue":"DOUBLE","boolValue":"BOOLEAN"}'
)
_ATTRIBUTES = f'[{{"key":"VARCHAR","value":{_VALUE}}}]'
_SPAN = (
    '{"traceId":"VARCHAR","spanId":"VARCHAR","parentSpanId":"VARCHAR","name":"VARCHAR",'
    '"startTimeUnixNano":"VARCHAR","endTimeUnixNano":"VARCHAR",'
    f'"attributes":{_ATTRIBUTES},"status":{{"code":"VARCHAR"}}}}'
)
STRUCTURE = (
    f'{{"resourceSpans":[{{"resource":{{"attributes":{_ATTRIBUTES}}},'
    '"scopeSpans":[{"scope":{"name":"VARCHAR"},"spans":["JSON"]}]}]}'
)

_HEX16 = "[0-9a-fA-F]{16}"
_HEX32 = "[0-9a-fA-F]{32}"
_INT = "-?[0-9]{1,18}"  # fits BIGINT whatever the digits
_COUNT = "[0-9]{1,9}"  # then compared with MAX_TOKEN_COUNT
_NANOS = "[0-9]{1,19}"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_lit(i) for i in items) + "]::VARCHAR[]"


def columnar_supported() -> bool:
    """Whether the SQL below still matches :mod:`.normalize`'s conventions.

    The SQL encodes three conventions as they are today (same keys, same provider keys,
    the same detectors); every other convention must be detected by a
    :class:`~.normalize.Markers`, whose spans SQL hands to Python (see :func:`_python_only`).
    Should someone change one of the three, or add a convention detected otherwise, this turns
    False and file ingest falls back to the Python path until the SQL is taught the change.
    """
    if not nz.decided_by_keys():
        return False
    return all(k.startswith(nz._CLAUDITOR_PREFIX) for k in nz._CLAUDITOR_KEYS)


def _python_only() -> str:
    """SQL: the span matches a convention that only Python decides (a ``Markers`` detector),
    so its line goes to Python, whatever the order of ``CONVENTIONS``."""
    markers = [c.matches for c in nz.CONVENTIONS if isinstance(c.matches, nz.Markers)]
    scopes = sorted({s for m in markers for s in m.scopes})
    prefixes = sorted({p for m in markers for p in m.scope_prefixes})
    keys = sorted({k for m in markers for k in m.keys})
    tests = [f"starts_with(scope_name, {_lit(p)})" for p in prefixes]
    if scopes:
        tests.append(f"list_contains({_list(scopes)}, scope_name)")
    if keys:
        tests.append(f"list_has_any(keys, {_list(keys)})")
    return " OR ".join(tests) or "false"


def _host_region(host: str) -> str:
    """SQL: :func:`clauditor.cloud.region_from_host` of the text ``host`` (NULL stays NULL)."""
    lowered = f"lower({host})"
    arms = []
    for pattern, region in HOST_RULES:
        found = f"regexp_extract({lowered}, {_lit('^(?:' + pattern + ')$')}, 1)"
        value = _lit(region) if region is not None else found
        arms.append(f"WHEN regexp_full_match({lowered}, {_lit(pattern)}) THEN {value}")
    return f"CASE {' '.join(arms)} END"


def _value_json(v: str) -> str:
    """SQL: the JSON text Python's encoder writes for a flattened attribute value ``v``."""
    return (
        f"CASE WHEN {v}.stringValue IS NOT NULL THEN to_json({v}.stringValue) "
        f"WHEN {v}.intValue IS NOT NULL THEN CAST(TRY_CAST({v}.intValue AS BIGINT) AS VARCHAR) "
        f"WHEN {v}.doubleValue IS NOT NULL THEN CAST(to_json({v}.doubleValue) AS VARCHAR) "
        f"WHEN {v}.boolValue THEN 'true' ELSE 'false' END"
    )


# Keys are ASCII here (other lines go to Python), so a case-blind match is ``key.lower()``.
_SECRET = (
    "regexp_matches(x.key, "
    + _lit("(?i)" + "|".join(re.escape(m) for m in SECRET_KEY_MARKERS))
    + ")"
)


def _rest_json(attrs: str, mapped: Sequence[str]) -> str:
    """SQL: compact JSON of the attributes not in ``mapped``, secret-named keys dropped."""
    return (
        "'{' || array_to_string(list_transform(list_filter(list_filter(coalesce("
        f"{attrs}, []), lambda x: NOT list_contains({_list(mapped)}, x.key)),"
        f" lambda x: NOT {_SECRET}), "
        f"lambda x: to_json(x.key) || ':' || {_value_json('x.value')}), ',') || '}}'"
    )


def _attrs_canonical(attrs: str) -> str:
    """SQL: every entry has a key, exactly one kind of value, integers that fit, no repeats."""
    one_kind = (
        "(x.value.stringValue IS NOT NULL)::INT + (x.value.intValue IS NOT NULL)::INT"
        " + (x.value.doubleValue IS NOT NULL)::INT + (x.value.boolValue IS NOT NULL)::INT = 1"
    )
    return (
        f"(coalesce(list_bool_and(list_transform({attrs},"
        f" lambda x: x.key IS NOT NULL AND {one_kind}"
        f" AND (x.value.intValue IS NULL OR regexp_full_match(x.value.intValue, '{_INT}')))),"
        f" true) AND len(list_distinct(list_transform({attrs}, lambda x: x.key)))"
        f" = len(coalesce({attrs}, [])))"
    )


# Lines broken above span level. A list element that is not an object reads as a struct of
# NULLs, so an entry with none of its fields is taken as one (an empty object, which Python
# would accept, goes to Python too: same verdict, only slower).
_BAD_LINES = """
SELECT g FROM parsed WHERE j IS NULL OR j.resourceSpans IS NULL
OR coalesce(list_bool_or(list_transform(
    j.resourceSpans, lambda rs: (rs.resource IS NULL AND rs.scopeSpans IS NULL)
    OR coalesce(list_bool_or(list_transform(rs.scopeSpans,
        lambda ss: ss.scope IS NULL AND ss.spans IS NULL)), false))), false)
"""


@dataclass
class ChunkResult:
    """What SQL made of one chunk.

    ``rows``: the rows of the lines SQL decided, with the ``calls`` columns of
    :func:`.normalize._row` (times as Unix microseconds) plus ``_g``/``_ri``/``_si``/``_pi``
    (line and span position, for file order). ``stats`` maps those lines' ``_g`` to (spans,
    rows); lines with no span are absent. ``python_lines``: ``_g`` of the lines left to Python.
    """

    rows: pl.DataFrame
    stats: dict[int, tuple[int, int]]
    python_lines: set[int]


class ChunkParser:
    """One in-memory DuckDB connection and the SQL for one set of feature keys.

    Not thread-safe; one per ingest run. :meth:`close` when done.
    """

    def __init__(self, feature_attributes: Sequence[str], *, threads: int | None = None) -> None:
        self.con = duckdb.connect(":memory:")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}").fetchall()
        self.threads = int(self.con.execute("SELECT current_setting('threads')").fetchall()[0][0])
        self.con.execute("SET preserve_insertion_order = false").fetchall()
        self._spans_sql = _spans_sql(tuple(feature_attributes))

    def close(self) -> None:
        """Release the connection."""
        self.con.close()

    def parse(self, gs: list[int], texts: list[str]) -> ChunkResult:
        """Parse the ASCII lines ``texts`` (line ordinals ``gs``) and normalize what SQL can."""
        con = self.con
        table = pa.table({"g": pa.array(gs, pa.int64()), "text": pa.array(texts, pa.string())})
        # Several record batches: DuckDB scans an Arrow table one batch per thread.
        per_batch = max(1, len(gs) // (4 * self.threads))
        chunk = pa.Table.from_batches(table.to_batches(max_chunksize=per_batch))  # noqa: F841
        # try(): a line that is not JSON parses to NULL and goes to Python, whose json module
        # words the rejection.
        con.execute(
            "CREATE OR REPLACE TEMP TABLE parsed AS SELECT g, CASE WHEN NOT regexp_matches("
            f"text, {_lit(UNUSUAL_LINE)}) THEN try(from_json(text, {_lit(STRUCTURE)})) END AS j "
            "FROM chunk"
        ).fetchall()
        con.execute(f"CREATE OR REPLACE TEMP TABLE spans AS {self._spans_sql}").fetchall()
        bad = con.execute(f"{_BAD_LINES} UNION SELECT g FROM spans WHERE NOT span_ok").fetchall()
        python_lines = {g for (g,) in bad}
        bad_frame = pl.DataFrame({"g": list(python_lines)}, schema={"g": pl.Int64})  # noqa: F841
        stats_rows = con.execute(
            "SELECT g, count(*), count(*) FILTER (WHERE claude) FROM spans "
            "WHERE g NOT IN (SELECT g FROM bad_frame) GROUP BY g"
        ).fetchall()
        rows = con.sql(
            "SELECT * EXCLUDE (span_ok, claude) FROM spans WHERE claude "
            "AND g NOT IN (SELECT g FROM bad_frame)"
        ).pl()
        for name in ("spans", "parsed"):
            con.execute(f"DROP TABLE {name}").fetchall()
        rows = rows.rename({"g": "_g", "ri": "_ri", "si": "_si", "pi": "_pi"})
        return ChunkResult(rows, {g: (n, r) for g, n, r in stats_rows}, python_lines)


def _spans_sql(feature_attributes: tuple[str, ...]) -> str:
    """The query that makes one row per span of the good lines, with ``span_ok`` and
    ``claude`` flags, from the ``parsed`` table."""
    keys = nz.GENAI_KEYS
    baggage = nz.BAGGAGE_FEATURE_ATTRIBUTE
    mapped = sorted({k for ks in keys.values() for k in ks} | set(feature_attributes) | {baggage})
    wanted = sorted(
        {k for ks in keys.values() for k in ks}
        | set(feature_attributes)
        | {baggage, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM, sc.OPERATION, sc.GEN_AI_RESPONSE_ID}
        | {sc.SERVER_ADDRESS}
    )
    col = {k: f"v{i}" for i, k in enumerate(wanted)}
    positions = ", ".join(f"list_position(keys, {_lit(k)}) AS p{i}" for i, k in enumerate(wanted))
    values = ", ".join(f"attrs[p{i}].value AS v{i}" for i, _ in enumerate(wanted))

    checks: list[str] = []

    def first(field: str) -> list[str]:
        return [col[k] for k in keys[field]]

    def text(field: str) -> str:
        vs = first(field)
        checks.extend(f"({v} IS NULL OR {v}.stringValue IS NOT NULL)" for v in vs)
        return "coalesce(" + ", ".join(f"{v}.stringValue" for v in vs) + ")"

    def count(field: str) -> str:
        vs = first(field)
        checks.extend(
            f"({v} IS NULL OR (regexp_full_match({v}.intValue, '{_COUNT}') AND "
            f"TRY_CAST({v}.intValue AS BIGINT) <= {nz.MAX_TOKEN_COUNT}))"
            for v in vs
        )
        return "coalesce(" + ", ".join(f"TRY_CAST({v}.intValue AS BIGINT)" for v in vs) + ")"

    def integer(field: str) -> str:
        vs = first(field)
        checks.extend(f"({v} IS NULL OR {v}.intValue IS NOT NULL)" for v in vs)
        return "coalesce(" + ", ".join(f"TRY_CAST({v}.intValue AS BIGINT)" for v in vs) + ")"

    def typed(field: str, kind: str) -> str:
        vs = first(field)
        checks.extend(f"({v} IS NULL OR {v}.{kind} IS NOT NULL)" for v in vs)
        return "coalesce(" + ", ".join(f"{v}.{kind}" for v in vs) + ")"

    request_model = text("request_model")
    response_model = text("response_model")
    operation_attr = text("operation")
    genai = text("genai_operation")
    by_name = " ".join(
        f"WHEN {_lit(n)} THEN {_lit(o)}" for n, o in nz._OPERATION_BY_SPAN_NAME.items()
    )
    by_genai = " ".join(
        f"WHEN {_lit(n)} THEN {_lit(o)}" for n, o in nz._OPERATION_BY_GENAI_NAME.items()
    )
    operation = (
        f"coalesce({operation_attr}, CASE name {by_name} END, "
        f"CASE WHEN {genai} IS NULL THEN 'chat' ELSE CASE {genai} {by_genai} ELSE {genai} END END)"
    )
    feature_vs = [col[k] for k in (*feature_attributes, baggage)]
    checks.extend(f"({v} IS NULL OR {v}.stringValue IS NOT NULL)" for v in feature_vs)
    feature = "coalesce(" + ", ".join(f"{v}.stringValue" for v in feature_vs) + ")"
    aliases = " ".join(f"WHEN {_lit(a)} THEN {_lit(b)}" for a, b in nz._ERROR_TYPE_ALIASES.items())
    error_raw = text("error_type")
    error_type = f"CASE {error_raw} {aliases} ELSE {error_raw} END"

    provider_vs = [col[sc.GEN_AI_PROVIDER_NAME], col[sc.GEN_AI_SYSTEM]]
    checks.extend(f"({v} IS NULL OR {v}.stringValue IS NOT NULL)" for v in provider_vs)
    provider = "coalesce(" + ", ".join(f"{v}.stringValue" for v in provider_vs) + ")"
    claude = (
        f"CASE WHEN {request_model} IS NULL AND {response_model} IS NULL THEN "
        f"(p_op IS NOT NULL OR list_contains({_list(sorted(nz._CALL_SPAN_NAMES))}, name)) "
        f"WHEN {provider} IS NOT NULL THEN contains(lower({provider}), 'anthropic') "
        f"OR contains(lower(coalesce({request_model}, '')), 'claude') "
        f"OR contains(lower(coalesce({response_model}, '')), 'claude') ELSE true END"
    )
    is_count = f"({operation}) = 'count_tokens'"
    read, write = count("cache_read"), count("cache_write")
    w5, w1 = count("cache_write_5m"), count("cache_write_1h")
    uncached, inclusive = count("input_uncached"), count("input_inclusive")
    output = count("output_tokens")
    write_all = (
        f"coalesce({write}, CASE WHEN {w5} IS NOT NULL OR {w1} IS NOT NULL "
        f"THEN coalesce({w5}, 0) + coalesce({w1}, 0) END)"
    )
    input_tokens = (
        f"coalesce({uncached}, CASE WHEN {inclusive} IS NOT NULL THEN greatest("
        f"{inclusive} - coalesce({read}, 0) - coalesce({write_all}, 0), 0) END)"
    )
    counted = f"coalesce({inclusive}, {uncached})"
    count_key = sc.ANTHROPIC_COUNT_TOKENS_INPUT_TOKENS
    rest = (
        f"CASE WHEN {is_count} AND {counted} IS NOT NULL AND NOT list_contains(keys, "
        f"{_lit(count_key)}) THEN left(rest0, len(rest0) - 1) || "
        f"CASE WHEN rest0 = '{{}}' THEN '' ELSE ',' END || "
        f"{_lit(json.dumps(count_key))} || ':' || CAST({counted} AS VARCHAR) || '}}' "
        "ELSE rest0 END"
    )

    def tokens(expr: str) -> str:
        return f"CASE WHEN {is_count} THEN NULL ELSE {expr} END"

    stop = text("stop_reason")
    finish = text("finish_reasons")
    ttft = typed("ttft_ms", "doubleValue")
    stream = typed("stream", "boolValue")
    max_tokens, http_status = integer("max_tokens"), integer("http_status")
    retries = integer("retries")
    user_id, conversation = text("user_id"), text("conversation_id")
    code_location, tier = text("code_location"), text("service_tier")
    geo, speed = text("inference_geo"), text("speed")
    web_search, web_fetch = count("web_search_requests"), count("web_fetch_requests")
    code_execution, container = count("code_execution_requests"), text("container_id")
    host_region = _host_region(f"{col[sc.SERVER_ADDRESS]}.stringValue")
    cloud_region = f"coalesce({text('cloud_region')}, {host_region})"

    span_ok = " AND ".join(
        [
            f"regexp_full_match(span_id, '{_HEX16}') AND span_id <> '{'0' * 16}'",
            f"regexp_full_match(trace_id, '{_HEX32}') AND trace_id <> '{'0' * 32}'",
            f"regexp_full_match(start_s, '{_NANOS}') AND regexp_full_match(end_s, '{_NANOS}')",
            "TRY_CAST(start_s AS BIGINT) > 0",
            "TRY_CAST(end_s AS BIGINT) >= TRY_CAST(start_s AS BIGINT)",
            "res_ok",
            f"NOT ({_python_only()})",
            _attrs_canonical("attrs"),
            *checks,
        ]
    )
    resource_keys = (sc.SERVICE_NAME, sc.DEPLOYMENT_ENVIRONMENT_NAME, sc.DEPLOYMENT_ENVIRONMENT)
    res_value = {k: f"res_attrs[list_position(res_keys, {_lit(k)})].value" for k in resource_keys}
    res_checks = " AND ".join(
        f"({v} IS NULL OR {v}.stringValue IS NOT NULL)" for v in res_value.values()
    )
    res_rest = _rest_json("res_attrs", resource_keys)
    return f"""
WITH r AS (
    SELECT g, unnest(j.resourceSpans) AS rs, generate_subscripts(j.resourceSpans, 1) AS ri
    FROM parsed WHERE j IS NOT NULL
), rr AS (
    SELECT g, ri, rs.scopeSpans AS scope_spans,
        rs.resource.attributes AS res_attrs,
        list_transform(rs.resource.attributes, lambda x: x.key) AS res_keys
    FROM r
), rc AS (
    SELECT g, ri, scope_spans,
        {_attrs_canonical("res_attrs")} AND {res_checks} AS res_ok,
        {res_value[sc.SERVICE_NAME]}.stringValue AS service,
        coalesce({res_value[sc.DEPLOYMENT_ENVIRONMENT_NAME]}.stringValue,
                 {res_value[sc.DEPLOYMENT_ENVIRONMENT]}.stringValue) AS environment,
        {res_rest} AS resource
    FROM rr
), s AS (
    SELECT g, ri, res_ok, service, environment, resource,
        unnest(scope_spans) AS ss, generate_subscripts(scope_spans, 1) AS si
    FROM rc
), sj AS (
    SELECT g, ri, si, res_ok, service, environment, resource,
        coalesce(ss.scope.name, '') AS scope_name,
        unnest(ss.spans) AS sp_json, generate_subscripts(ss.spans, 1) AS pi
    FROM s
), sp AS (
    SELECT * EXCLUDE (sp_json), from_json(sp_json, {_lit(_SPAN)}) AS sp FROM sj
), a AS (
    SELECT g, ri, si, pi, res_ok, service, environment, resource, scope_name,
        sp.spanId AS span_id, sp.traceId AS trace_id, sp.parentSpanId AS parent_s,
        coalesce(sp.name, '') AS name, sp.startTimeUnixNano AS start_s,
        sp.endTimeUnixNano AS end_s, sp.status.code = '2' AS status_error,
        coalesce(sp.attributes, []) AS attrs,
        list_transform(coalesce(sp.attributes, []), lambda x: x.key) AS keys
    FROM sp
), b AS (
    SELECT *, {positions}, list_position(keys, {_lit(sc.OPERATION)}) AS p_op FROM a
), c AS (
    SELECT *, {values}, {_rest_json("attrs", mapped)} AS rest0 FROM b
)
SELECT g, ri, si, pi,
    coalesce({span_ok}, false) AS span_ok,
    {claude} AS claude,
    lower(span_id) AS span_id,
    lower(trace_id) AS trace_id,
    CASE WHEN parent_s IS NULL OR parent_s = '' OR parent_s = '{"0" * 16}' THEN NULL
         ELSE lower(parent_s) END AS parent_span_id,
    TRY_CAST(start_s AS BIGINT) // 1000 AS start_time,
    TRY_CAST(end_s AS BIGINT) // 1000 AS end_time,
    (TRY_CAST(end_s AS BIGINT) - TRY_CAST(start_s AS BIGINT))::DOUBLE / 1e6 AS duration_ms,
    {ttft} AS ttft_ms,
    service, environment,
    {feature} AS feature,
    {user_id} AS user_id,
    {conversation} AS conversation_id,
    {code_location} AS code_location,
    {operation} AS operation,
    {request_model} AS request_model,
    {response_model} AS response_model,
    {max_tokens} AS max_tokens,
    {stream} AS stream,
    {tier} AS service_tier,
    {geo} AS inference_geo,
    {speed} AS speed,
    {tokens(input_tokens)} AS input_tokens,
    {tokens(output)} AS output_tokens,
    {tokens(read)} AS cache_read_input_tokens,
    {tokens(write_all)} AS cache_creation_input_tokens,
    {tokens(w5)} AS cache_creation_5m_input_tokens,
    {tokens(w1)} AS cache_creation_1h_input_tokens,
    coalesce({stop}, {finish}) AS stop_reason,
    CASE WHEN status_error OR coalesce({error_type}, '') <> '' THEN 'error' ELSE 'ok' END
        AS status,
    {http_status} AS http_status,
    {error_type} AS error_type,
    coalesce({retries}, 0) AS retries,
    CASE WHEN scope_name = {_lit(sc.CLAUDITOR_SCOPE)}
              OR len(list_filter(keys, lambda k: starts_with(k, {_lit(nz._CLAUDITOR_PREFIX)}))) > 0
         THEN 'clauditor'
         WHEN scope_name = {_lit(sc.ANTHROPIC_SCOPE)} THEN 'anthropic-sdk'
         ELSE 'otel-genai' END AS source,
    {rest} AS attributes,
    resource,
    {col[sc.GEN_AI_RESPONSE_ID]}.stringValue AS response_id,
    {web_search} AS web_search_requests,
    {web_fetch} AS web_fetch_requests,
    {code_execution} AS code_execution_requests,
    {container} AS container_id,
    {cloud_region} AS cloud_region,
    NULL::DOUBLE AS reported_cost_usd
FROM c
"""
