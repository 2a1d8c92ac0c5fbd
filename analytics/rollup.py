"""The rollup: calls reduced to slots of a grain (an hour, or 15 minutes) over the requested
group keys, and the SQL pieces the other reductions of :mod:`clauditor.analytics.engine` share.

:func:`rollup_on` is the reduction most jobs finish from: per slot (UTC, :data:`GRAINS`), side
of ``as_of``, feature, request/response model, operation, status, error type, HTTP status, the
audit's workload flags and the raw columns of any further group keys, it counts and sums what
the jobs read. A slot never straddles a local day, week or month of the configured zone: the
grain is an hour when the zone is a whole number of hours from UTC all through the period, and
15 minutes otherwise (:func:`grain_for`; every zone's offset is a whole number of quarter
hours). Each row carries ``slot`` (its start) and ``hour`` (the UTC hour it lies in).

The SQL pieces select and sum exactly what the jobs' rules say (a call failed, a cache write
was for one hour...). Besides those:

* group keys: the jobs group by the feature key (``(untagged)`` for NULL or empty)
  and the normalized model key. Building those strings on every row costs DuckDB more than the
  aggregate itself, so :func:`raw_keys` checks on the (small) rollup whether the raw
  columns map one-to-one onto the keys; then DuckDB groups by one hash of the raw columns
  (:data:`RAW_HASH_SQL`) and :func:`raw_names` gives the few result rows their keys.
  Otherwise :func:`key_sql` maps them row by row.
* local buckets: ``date_trunc`` in a time zone goes through ICU for every row.
  :func:`bucket_lookup` maps each 15-minute UTC slot of the period to its local bucket (as
  Polars truncates it) once, and DuckDB reads a call's bucket from that list by index.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

import duckdb
import polars as pl

from clauditor.analytics.costs import NO_KEY, PREPARED_KEY, UNTAGGED, check_keys
from clauditor.analytics.frame import model_keys, prepare_calls
from clauditor.analytics.periods import Period

__all__ = [
    "EXTRA_KEY_COLUMNS",
    "FAILED_SQL",
    "GRAINS",
    "RAW_HASH_SQL",
    "RAW_KEYS",
    "READ_SQL",
    "U_1H_SQL",
    "U_5M_SQL",
    "U_IN_SQL",
    "U_READ_SQL",
    "W1H_SQL",
    "W5M_SQL",
    "WRITE_SQL",
    "bucket_lookup",
    "error_minutes_on",
    "extra_key_columns",
    "grain_for",
    "group_keys_sql",
    "key_sql",
    "model_mapping",
    "raw_hash_sql",
    "raw_keys",
    "raw_names",
    "rollup_on",
    "slot_calls_on",
    "unpriced_runs_on",
    "where_sql",
]

# SQL twins of analytics.errors.failed_expr and of the cache job's per-call terms.
FAILED_SQL = (
    "(coalesce(status = 'error', false) OR error_type IS NOT NULL "
    "OR coalesce(http_status >= 400, false))"
)
READ_SQL = "coalesce(cache_read_input_tokens, 0)"
WRITE_SQL = "coalesce(cache_creation_input_tokens, 0)"
# The 1-hour writes as pricing split them: reported, else the assumed TTL.
W1H_SQL = (
    "least(greatest(CASE WHEN cache_creation_1h_input_tokens IS NOT NULL "
    "THEN cache_creation_1h_input_tokens "
    f"WHEN cache_creation_5m_input_tokens IS NOT NULL THEN {WRITE_SQL} - "
    "cache_creation_5m_input_tokens "
    f"WHEN cache_ttl_assumed = '1h' THEN {WRITE_SQL} ELSE 0 END, 0), {WRITE_SQL})"
)
W5M_SQL = f"({WRITE_SQL} - {W1H_SQL})"
# The call's own rates per token (the rate_* columns are $ per million tokens).
U_IN_SQL = "(rate_input * 1e-6)"
U_READ_SQL = "(rate_cache_read * 1e-6)"
U_5M_SQL = "(rate_cache_write_5m * 1e-6)"
U_1H_SQL = "(rate_cache_write_1h * 1e-6)"

# The raw columns the feature and model keys come from.
RAW_KEYS = ("feature", "response_model", "request_model")

_US_PER_DAY = 86_400_000_000


def where_sql(period: Period | None, *conditions: str) -> tuple[str, dict[str, object]]:
    """`` WHERE ...`` of ``conditions`` and the period (named parameters ``start``, ``end``)."""
    parts, params = [c for c in conditions if c], {}
    if period is not None:
        parts.append("start_time >= $start AND start_time < $end")
        params = {"start": period.start, "end": period.end}
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def model_mapping(hours: pl.DataFrame) -> tuple[list[str], list[str]]:
    """Distinct model ids as answered (NULL/empty skipped) and their group keys."""
    raw = pl.coalesce(
        pl.col("response_model").replace("", None), pl.col("request_model").replace("", None)
    )
    ids = sorted(hours.select(raw.unique().alias("id"))["id"].drop_nulls().to_list())
    return ids, model_keys(ids)


def key_sql(ids: list[str]) -> str:
    """SQL of the feature and model keys (``fkey``, ``mkey``), mapped row by row; needs the
    parameters ``ids`` and ``keys`` of :func:`model_mapping`."""
    model = "coalesce(nullif(response_model, ''), nullif(request_model, ''))"
    return (
        f"coalesce(nullif(feature, ''), '{UNTAGGED}') AS fkey, "
        f"coalesce(list_extract($keys, list_position($ids, {model})), '{NO_KEY}') AS mkey"
    )


def raw_keys(hours: pl.DataFrame, subset: pl.Expr) -> pl.DataFrame | None:
    """The distinct raw key columns of the ``subset`` of ``hours`` with their ``fkey`` and
    ``mkey``; None when two raw combinations share keys (their rows must group together)."""
    mapping = (
        hours.filter(subset)
        .select(
            *[pl.col(c).cast(pl.String) for c in RAW_KEYS],
            pl.col(PREPARED_KEY + "feature").cast(pl.String).alias("fkey"),
            pl.col(PREPARED_KEY + "model").cast(pl.String).alias("mkey"),
        )
        .unique()
    )
    if mapping.select("fkey", "mkey").n_unique() < mapping.height:
        return None
    return mapping


# The raw key columns of a call as one 64-bit DuckDB hash: cheaper to group and sort on than
# three strings. :func:`raw_names` names the hashes again.
RAW_HASH_SQL = "hash(feature, response_model, request_model)"


def raw_hash_sql(columns: Sequence[str] = RAW_KEYS) -> str:
    """:data:`RAW_HASH_SQL` over ``columns`` (the raw key columns and those of further keys)."""
    return f"hash({', '.join(columns)})"


def raw_names(
    con: duckdb.DuckDBPyConnection, hours: pl.DataFrame, columns: Sequence[str] = RAW_KEYS
) -> pl.DataFrame:
    """``_raw`` (the :func:`raw_hash_sql` of ``columns`` of each distinct raw key combination
    in ``hours``), those raw columns, and their ``fkey`` and ``mkey``.

    Two combinations sharing a hash would be a 1-in-10^17 event for the few dozen a period
    holds; they would then count as one.
    """
    columns = list(columns)
    raw = hours.select(
        *[pl.col(c).cast(pl.String) for c in columns],
        pl.col(PREPARED_KEY + "feature").cast(pl.String).alias("fkey"),
        pl.col(PREPARED_KEY + "model").cast(pl.String).alias("mkey"),
    ).unique()
    names = [f"c{i}" for i in range(len(columns))]
    values = ", ".join(f"unnest(${n}) AS {n}" for n in names)
    hashes = con.sql(
        f"SELECT hash({', '.join(names)}) AS _raw FROM (SELECT {values}, unnest($i) AS i) "
        "ORDER BY i",
        params={n: raw[c].to_list() for n, c in zip(names, columns, strict=True)}
        | {"i": list(range(raw.height))},
    ).pl()
    return raw.with_columns(hashes["_raw"].cast(pl.UInt64).alias("_raw"))


def group_keys_sql(ids: list[str], by: Sequence[str]) -> str:
    """SQL of the group keys ``by`` of a call, each aliased by its name, as
    :func:`~clauditor.analytics.costs.group_key_expr` computes them; needs the parameters
    ``ids`` and ``keys`` of :func:`model_mapping` when ``by`` holds ``model``."""
    items = []
    for key in by:
        if key == "feature":
            items.append(f"coalesce(nullif(feature, ''), '{UNTAGGED}') AS feature")
        elif key == "model":
            model = "coalesce(nullif(response_model, ''), nullif(request_model, ''))"
            items.append(
                f"coalesce(list_extract($keys, list_position($ids, {model})), '{NO_KEY}') AS model"
            )
        else:
            items.append(f"coalesce(nullif({EXTRA_KEY_COLUMNS[key]}, ''), '{NO_KEY}') AS {key}")
    return ", ".join(items)


def bucket_lookup(
    tz: str, every: str, first: dt.datetime | None, last: dt.datetime | None
) -> tuple[str, dict[str, object], pl.DataFrame]:
    """SQL of a call's local bucket, its parameters, and the buckets it numbers.

    ``every`` is a Polars calendar duration (``1h``, ``1d``, ``1w``, ``1mo``) cut in ``tz``, as
    ``dt.truncate`` cuts it; calls between ``first`` and ``last`` get the index (from 1) of their
    bucket in the frame returned (columns ``_b`` and ``period``, a Datetime in ``tz``). Each
    15-minute UTC slot lies in one bucket of any zone, so the slots are mapped once and DuckDB
    reads a call's bucket from a list by the slot's offset.
    """
    if first is None or last is None:
        empty = pl.DataFrame(schema={"_b": pl.Int64, "period": pl.Datetime("us", tz)})
        return "NULL::BIGINT", {}, empty
    origin = int(first.timestamp()) // 900
    slots = pl.datetime_range(
        dt.datetime.fromtimestamp(origin * 900, dt.UTC), last, "15m", time_zone="UTC", eager=True
    )
    local = slots.dt.convert_time_zone(tz).dt.truncate(every)
    buckets = local.unique().sort()
    index = local.to_frame("period").join(
        pl.DataFrame({"period": buckets, "_b": pl.int_range(1, buckets.len() + 1, eager=True)}),
        on="period",
        how="left",
        maintain_order="left",
    )["_b"]
    offset = f"epoch_us(start_time) // {_US_PER_SLOT} - {origin} + 1"
    sql = f"list_extract($_slot_bucket, ({offset})::BIGINT)"
    names = pl.DataFrame({"_b": pl.int_range(1, buckets.len() + 1, eager=True), "period": buckets})
    return sql, {"_slot_bucket": index.to_list()}, names


# Grains of the rollup, in minutes: an hour, or a quarter hour for zones off whole hours.
GRAINS = (60, 15)

_US_PER_SLOT = 900_000_000


def grain_for(tz: str, start: dt.datetime, end: dt.datetime) -> int:
    """The rollup grain (minutes) for local calendars of ``tz`` over ``[start, end]``: 60 when
    the zone is a whole number of hours from UTC all through it (no UTC hour then straddles two
    local days), else 15. Checked once a day and at the end: offsets change at most twice a
    year."""
    zone = zoneinfo.ZoneInfo(tz)
    moment = start
    while True:
        offset = moment.astimezone(zone).utcoffset()
        if offset is None or offset % dt.timedelta(hours=1):
            return 15
        if moment >= end:
            return 60
        moment = min(moment + dt.timedelta(days=1), end)


# Raw columns of the group keys beyond feature and model that a rollup can carry.
EXTRA_KEY_COLUMNS = {"service": "service", "environment": "environment", "user": "user_id",
                     "code_location": "code_location"}  # fmt: skip

_ROLLUP_SQL = """
SELECT epoch_us(start_time) // {grain_us} AS _slot, start_time < $as_of AS _before,
    min(start_time) AS start_time, feature, request_model, response_model, operation,
    status, error_type, http_status,
    CASE WHEN coalesce(feature, '') = '' THEN code_location END AS _location, stream,
    user_id IS NOT NULL AS _has_user, service_tier, max_tokens IS NOT NULL AS _capped,
    max(max_tokens) AS _cap,{extra}
    count(*) AS calls, count(cost_usd) AS _priced, sum(cost_usd) AS cost_usd,
    sum(cost_tools_usd) AS cost_tools_usd, sum(web_search_requests) AS web_search_requests,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(coalesce(retries, 0)) AS retries, count_if(coalesce(retries, 0) > 0) AS _retried,
    count_if(stop_reason = 'max_tokens') AS _truncated,
    coalesce(sum(cost_usd) FILTER (stop_reason = 'max_tokens'), 0.0) AS _truncated_usd,
    count_if(coalesce(stream, false) AND stop_reason IS NULL) AS _abandoned,
    coalesce(sum(cost_usd) FILTER (coalesce(stream, false) AND stop_reason IS NULL), 0.0)
        AS _abandoned_usd,
    sum(coalesce(cost_input_usd, 0.0)) AS _input_usd, max(duration_ms) AS _max_duration_ms,
    count_if(coalesce(input_tokens, 0) + coalesce(cache_read_input_tokens, 0)
        + coalesce(cache_creation_input_tokens, 0) > 0 AND output_tokens IS NOT NULL)
        AS _usage_logged,
    max(start_time) AS _end_time
FROM calls{where}
GROUP BY ALL
"""

_UTC = pl.Datetime("us", "UTC")

# Integer sums of the rollup (DuckDB returns them as 128-bit or decimals).
_INT_SUMS = (
    "calls", "_priced", "input_tokens", "output_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "retries", "_retried", "_truncated", "_usage_logged",
    "web_search_requests", "_abandoned",
)  # fmt: skip


def extra_key_columns(keys: Sequence[str]) -> list[str]:
    """The raw columns a rollup must carry for the group ``keys`` (beyond feature and model);
    unknown keys raise :class:`ValueError` naming the known ones."""
    check_keys(keys)
    return [EXTRA_KEY_COLUMNS[k] for k in keys if k in EXTRA_KEY_COLUMNS]


def rollup_on(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    as_of: dt.datetime,
    *,
    keys: Sequence[str] = (),
    grain: int = 60,
) -> pl.DataFrame:
    """The rollup of ``period`` (None: every call) at ``grain`` minutes (:data:`GRAINS`), with
    the raw columns of the group ``keys``, rows split at ``as_of`` (``_before``); on an open
    connection whose session time zone is UTC. The result is prepared
    (:func:`~clauditor.analytics.frame.prepare_calls`)."""
    if grain not in GRAINS:
        raise ValueError(f"rollup grain {grain!r} minutes is not one of {GRAINS}")
    extra = "".join(f" {c}," for c in extra_key_columns(keys) if c != "code_location")
    if "code_location" in keys:
        extra += " code_location,"
    where, params = where_sql(period)
    sql = _ROLLUP_SQL.format(grain_us=grain * 60_000_000, extra=extra, where=where)
    frame = con.sql(sql, params=params | {"as_of": as_of}).pl()
    slot = pl.from_epoch(pl.col("_slot") * grain * 60, "s").dt.replace_time_zone("UTC").cast(_UTC)
    frame = frame.with_columns(
        # Integer slots since the epoch: date_trunc on a TIMESTAMPTZ goes through ICU, slowly.
        slot.alias("slot"),
        slot.dt.truncate("1h").alias("hour"),
        pl.col("start_time", "_end_time").dt.convert_time_zone("UTC"),
        *[pl.col(c).cast(pl.Int64) for c in _INT_SUMS],
    ).drop("_slot")
    return prepare_calls(frame)


_MINUTES_SQL = """
SELECT epoch_us(start_time) // 60000000 AS bucket, status, error_type, http_status,
    count(*) AS calls
FROM calls{where}
GROUP BY ALL
"""


def error_minutes_on(con: duckdb.DuckDBPyConnection, period: Period | None) -> pl.DataFrame:
    """Calls per minute and (status, error type, HTTP status) of ``period``: what the error
    jobs read; on an open connection whose session time zone is UTC."""
    # count_tokens calls are free and not generations: they take no part in error rates.
    where, params = where_sql(period, "coalesce(operation, 'chat') <> 'count_tokens'")
    minutes = con.sql(_MINUTES_SQL.format(where=where), params=params).pl()
    return minutes.with_columns(
        pl.from_epoch(pl.col("bucket") * 60, "s").dt.replace_time_zone("UTC").cast(_UTC),
        pl.col("calls").cast(pl.Int64),
    )


def slot_calls_on(
    con: duckdb.DuckDBPyConnection, period: Period | None, slots: Sequence[dt.datetime], grain: int
) -> pl.DataFrame:
    """``start_time``, ``feature``, ``cost_usd`` of the single calls in the rollup ``slots``
    (of ``grain`` minutes): where a running total must be exact to the call."""
    if not slots:
        return pl.DataFrame(
            schema={"start_time": _UTC, "feature": pl.String, "cost_usd": pl.Float64}
        )
    grain_us = grain * 60_000_000
    # Integer slots inline, and the time range around them, which DuckDB can skip blocks on.
    numbers = ", ".join(str(int(s.timestamp() * 1_000_000) // grain_us) for s in slots)
    where, params = where_sql(
        period,
        "start_time >= $first AND start_time < $last",
        f"epoch_us(start_time) // {grain_us} IN ({numbers})",
    )
    calls = con.sql(
        f"SELECT start_time, feature, cost_usd FROM calls{where}",
        params=params | {"first": min(slots), "last": max(slots) + dt.timedelta(minutes=grain)},
    ).pl()
    return calls.with_columns(pl.col("start_time").dt.convert_time_zone("UTC"))


_UNPRICED_RUNS_SQL = """
WITH unpriced AS (
    SELECT coalesce(response_model, request_model, '(no model)') AS model,
        epoch_us(start_time) AS t
    FROM calls{where}
), breaks AS (
    SELECT model, t,
        coalesce(t - lag(t) OVER (PARTITION BY model ORDER BY t) > $gap, false)::INT AS gap
    FROM unpriced
), runs AS (
    SELECT model, t, sum(gap) OVER (PARTITION BY model ORDER BY t ROWS UNBOUNDED PRECEDING) AS run
    FROM breaks
)
SELECT model, run, min(t) AS first, max(t) AS last, count(*) AS calls
FROM runs GROUP BY model, run ORDER BY first, model
"""


def unpriced_runs_on(
    con: duckdb.DuckDBPyConnection, period: Period | None, gap: dt.timedelta
) -> pl.DataFrame:
    """Runs of calls without a price per model (response model, else request model, else
    ``(no model)``): calls no more than ``gap`` apart make one run. Columns ``model``,
    ``first``, ``last`` (UTC), ``calls``; sorted by ``first``. A run's ends are single calls,
    so no rollup grain gives them: this is a reduction of its own."""
    where, params = where_sql(period, "cost_usd IS NULL")
    sql = _UNPRICED_RUNS_SQL.format(where=where)
    frame = con.sql(sql, params=params | {"gap": int(gap.total_seconds() * 1_000_000)}).pl()
    return frame.select(
        "model",
        *[
            pl.from_epoch(pl.col(c), time_unit="us").dt.replace_time_zone("UTC").alias(c)
            for c in ("first", "last")
        ],
        pl.col("calls").cast(pl.Int64),
    )
