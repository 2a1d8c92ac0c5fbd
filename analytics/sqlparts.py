"""SQL pieces shared by the DuckDB side of :mod:`clauditor.analytics.plan`.

Each is the twin of a Polars expression of the per-call jobs, so that an aggregate DuckDB
computes selects and sums exactly what the per-call job would. Besides those:

* group keys: the per-call jobs group by the feature key (``(untagged)`` for NULL or empty)
  and the normalized model key. Building those strings on every row costs DuckDB more than the
  aggregate itself, so :func:`raw_keys` checks on the (small) hourly aggregate whether the raw
  columns map one-to-one onto the keys; then DuckDB groups by one hash of the raw columns
  (:data:`RAW_HASH_SQL`) and :func:`raw_names` gives the few result rows their keys.
  Otherwise :func:`key_sql` maps them row by row.
* local days: ``date_trunc`` in a time zone goes through ICU for every row. :func:`day_sql`
  writes the zone's UTC offsets over the period as a CASE on the epoch instead.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from clauditor.analytics.costs import NO_KEY, PREPARED_KEY, UNTAGGED
from clauditor.analytics.frame import _model_keys
from clauditor.analytics.periods import Period

__all__ = [
    "FAILED_SQL",
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
    "day_sql",
    "key_sql",
    "model_mapping",
    "raw_keys",
    "raw_names",
    "where_sql",
]

# SQL twins of analytics.errors.failed_expr and of the cache job's per-call terms.
FAILED_SQL = (
    "(coalesce(status = 'error', false) OR error_type IS NOT NULL "
    "OR coalesce(http_status >= 400, false))"
)
READ_SQL = "coalesce(cache_read_input_tokens, 0)"
WRITE_SQL = "coalesce(cache_creation_input_tokens, 0)"
# The 1-hour writes as pricing split them: reported, else the assumed TTL (cache._write_1h).
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
    return ids, _model_keys(ids)


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


def raw_names(con: duckdb.DuckDBPyConnection, hours: pl.DataFrame) -> pl.DataFrame:
    """``_raw`` (the :data:`RAW_HASH_SQL` of each distinct raw key combination in ``hours``),
    the raw columns, and their ``fkey`` and ``mkey``.

    Two combinations sharing a hash would be a 1-in-10^17 event for the few dozen a period
    holds; they would then count as one.
    """
    raw = hours.select(
        *[pl.col(c).cast(pl.String) for c in RAW_KEYS],
        pl.col(PREPARED_KEY + "feature").cast(pl.String).alias("fkey"),
        pl.col(PREPARED_KEY + "model").cast(pl.String).alias("mkey"),
    ).unique()
    hashes = con.sql(
        "SELECT hash(f, r, q) AS _raw FROM "
        "(SELECT unnest($f) AS f, unnest($r) AS r, unnest($q) AS q, unnest($i) AS i) ORDER BY i",
        params={
            "f": raw["feature"].to_list(),
            "r": raw["response_model"].to_list(),
            "q": raw["request_model"].to_list(),
            "i": list(range(raw.height)),
        },
    ).pl()
    return raw.with_columns(hashes["_raw"].cast(pl.UInt64).alias("_raw"))


def day_sql(tz: str, first: dt.datetime | None, last: dt.datetime | None) -> str:
    """SQL of the day (whole days since 1970-01-01 in ``tz``'s calendar) of ``start_time``,
    exact for calls between ``first`` and ``last``.

    The zone's UTC offset is sampled every 15 minutes over that span (offsets change on
    quarter hours) and written as a CASE over the epoch, which DuckDB evaluates far faster
    than a time zone conversion.
    """
    epoch = "epoch_us(start_time)"
    if first is None or last is None:
        return f"{epoch} // {_US_PER_DAY}"
    grid = pl.datetime_range(
        first.replace(minute=first.minute // 15 * 15, second=0, microsecond=0),
        last,
        "15m",
        time_zone="UTC",
        eager=True,
    ).alias("t")
    local = grid.dt.convert_time_zone(tz)
    offsets = pl.DataFrame(
        {
            "t": grid,
            "offset": (local.dt.base_utc_offset() + local.dt.dst_offset()).dt.total_microseconds(),
        }
    )
    changes = offsets.filter((pl.col("offset") != pl.col("offset").shift(1)).fill_null(True))
    times = [int(t.timestamp() * 1_000_000) for t in changes["t"]]
    values = changes["offset"].to_list()
    if len(values) == 1:
        return f"({epoch} + {values[0]}) // {_US_PER_DAY}"
    cases = " ".join(
        f"WHEN {epoch} < {t} THEN {v}" for t, v in zip(times[1:], values[:-1], strict=True)
    )
    return f"({epoch} + CASE {cases} ELSE {values[-1]} END) // {_US_PER_DAY}"
