"""The cache jobs' per-call sequence and reuse buckets, reduced by DuckDB for the engine.

:func:`caching_candidates_from` needs, per qualifying feature and model, the 10th percentile
of input size and the calls that follow another one within 5 minutes. The second needs no
per-call data in Python: inside a 5-minute bucket every call but the first follows another
one by less than 5 minutes, so per bucket DuckDB sums the calls and their base input prices
and keeps the first and last call time and the first call's price; whether a bucket's first
call is a reuse is then one comparison with the previous bucket's last call.

:func:`cache_economics_sql` follows the read/write sequence of the cached calls one by one
with DuckDB window functions (next read after each write, previous cached call) and reads only
their sums per raw feature and model.

The Polars around the statements (:func:`caching_candidates_with`, :func:`economics_from_terms`)
takes the statements' results from any engine: the ClickHouse engine runs its own SQL.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import polars as pl

from clauditor.analytics.cache import CANDIDATE_COLUMNS, economics_table
from clauditor.analytics.costs import PREPARED_KEY, UNTAGGED, with_group_keys
from clauditor.analytics.errors import failed_expr
from clauditor.analytics.periods import Period
from clauditor.analytics.rollup import (
    FAILED_SQL,
    RAW_HASH_SQL,
    RAW_KEYS,
    READ_SQL,
    U_1H_SQL,
    U_5M_SQL,
    U_IN_SQL,
    U_READ_SQL,
    W1H_SQL,
    W5M_SQL,
    WRITE_SQL,
    extra_key_columns,
    key_sql,
    model_mapping,
    raw_hash_sql,
    raw_keys,
    raw_names,
    where_sql,
)

__all__ = [
    "cache_economics_sql",
    "caching_candidates_from",
    "caching_candidates_with",
    "economics_from_terms",
    "features_sql",
]

_TTL_5M_US = 300_000_000

_CANDIDATE_CALLS = "coalesce(operation, 'chat') != 'count_tokens' AND coalesce(status, 'ok') = 'ok'"

_BUCKETS_SQL = f"""
WITH c AS (
    SELECT {{keys}}, epoch_us(start_time) AS t,
        coalesce({U_IN_SQL} - {U_READ_SQL}, 0.0) AS g, coalesce({U_5M_SQL} - {U_IN_SQL}, 0.0) AS l
    FROM calls{{where}}
)
SELECT {{names}}, t // {_TTL_5M_US} AS _bucket, count(*) AS n, min(t) AS t0, max(t) AS t1,
    sum(g) AS sg, arg_min(g, t) AS g0, arg_min(l, t) AS l0
FROM c GROUP BY ALL
"""

_PREFIX_SQL = """
SELECT {keys}, quantile_disc(coalesce(input_tokens, 0), 0.1) AS prefix_tokens
FROM calls{where} GROUP BY ALL
"""


def _candidate_totals(
    hours: pl.DataFrame, min_prompt_tokens: int, min_calls: int, max_cached_share: float
) -> pl.DataFrame:
    ok = (pl.col("operation").fill_null("chat") != "count_tokens") & (
        pl.col("status").fill_null("ok") == "ok"
    )
    cached = pl.col("_cached")
    cached_share = cached / (cached + pl.col("_input_sum"))
    return (
        hours.lazy()
        .filter(ok)
        .group_by(pl.col(PREPARED_KEY + "feature").alias("feature"),
                  pl.col(PREPARED_KEY + "model").alias("model"))
        .agg(
            pl.col("calls").sum().cast(pl.Int64),
            pl.col("input_tokens").fill_null(0).sum().alias("_input_sum"),
            (pl.col("cache_read_input_tokens").fill_null(0)
             + pl.col("cache_creation_input_tokens").fill_null(0)).sum().alias("_cached"),
            pl.col("_input_usd").sum().alias("input_cost_usd"),
        )
        .with_columns((pl.col("_input_sum") / pl.col("calls")).alias("avg_input_tokens"))
        .filter(
            (pl.col("calls") >= min_calls)
            & (pl.col("avg_input_tokens") >= min_prompt_tokens)
            & (cached_share.fill_nan(0.0) < max_cached_share)
        )
        .with_columns(pl.col("feature", "model").cast(pl.String))
        .collect()
    )  # fmt: skip


def _keyed(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    period: Period | None,
    hours: pl.DataFrame,
    mergeable: bool,
    features: list[str],
) -> pl.DataFrame:
    """Run ``sql`` (``{keys}``, ``{names}``, ``{where}`` placeholders) over the candidate
    calls of the feature keys ``features``, grouped by feature and model keys; result has
    ``fkey`` and ``mkey``.

    The raw columns (as one hash) are grouped on when they map one-to-one onto the keys, or
    when the caller merges rows of one key itself (``mergeable``).
    """
    subset = (pl.col("operation").fill_null("chat") != "count_tokens") & (
        pl.col("status").fill_null("ok") == "ok"
    )
    where, params = where_sql(period, _CANDIDATE_CALLS, features_sql(hours, features))
    if mergeable or raw_keys(hours, subset) is not None:
        out = con.sql(
            sql.format(keys=f"{RAW_HASH_SQL} AS _raw", names="_raw", where=where), params=params
        ).pl()
        names = raw_names(con, hours).select("_raw", "fkey", "mkey")
        return (
            out.with_columns(pl.col("_raw").cast(pl.UInt64))
            .join(names, on="_raw", how="left")
            .drop("_raw")
        )
    ids, keys = model_mapping(hours)
    return con.sql(
        sql.format(keys=key_sql(ids), names="fkey, mkey", where=where),
        params=params | {"ids": ids, "keys": keys},
    ).pl()


def features_sql(hours: pl.DataFrame, features: list[str]) -> str:
    """SQL keeping the calls of the feature keys ``features`` ("" when that is every call)."""
    present = set(hours[PREPARED_KEY + "feature"].cast(pl.String).unique().to_list())
    if present <= set(features):
        return ""
    # The key "(untagged)" also stands for a feature literally named so: keep those too.
    parts = [f"feature IN ({', '.join(_literal(f) for f in sorted(features))})"]
    if UNTAGGED in features:
        parts.append("coalesce(feature, '') = ''")
    return "(" + " OR ".join(parts) + ")"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _reuse(buckets: pl.DataFrame) -> pl.DataFrame:
    """Per key: reuse share and the per-token value of caching a prefix on every call."""
    buckets = (
        buckets.group_by("fkey", "mkey", "_bucket")
        .agg(
            pl.col("n").sum(),
            pl.col("t0").min().alias("_t0"),
            pl.col("t1").max(),
            pl.col("sg").sum(),
            pl.col("g0").sort_by("t0").first(),
            pl.col("l0").sort_by("t0").first(),
        )
        .rename({"_t0": "t0"})
        .sort("fkey", "mkey", "_bucket")
    )
    same_key = (pl.col("fkey") == pl.col("fkey").shift(1)) & (
        pl.col("mkey") == pl.col("mkey").shift(1)
    )
    first_reused = (same_key & (pl.col("t0") - pl.col("t1").shift(1) <= _TTL_5M_US)).fill_null(
        False
    )
    # Within a bucket every call but the first reuses the prefix; the first does when the
    # previous bucket's last call is within 5 minutes of it. A reuse gains (in - read) per prefix
    # token, a first write loses (5m - in).
    fresh = ~first_reused
    gain = pl.col("sg") - pl.when(fresh).then(pl.col("g0")).otherwise(0.0)
    loss = pl.when(fresh).then(pl.col("l0")).otherwise(0.0)
    return (
        buckets.with_columns(first_reused.alias("_first_reused"))
        .with_columns(
            (pl.col("n") - 1 + pl.col("_first_reused").cast(pl.Int64)).alias("_reused"),
            (gain - loss).alias("_per_token"),
        )
        .group_by("fkey", "mkey")
        .agg(
            (pl.col("_reused").sum() / pl.col("n").sum()).alias("reuse_share"),
            pl.col("_per_token").sum(),
        )
    )


def caching_candidates_from(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    *,
    min_prompt_tokens: int = 1024,
    min_calls: int = 20,
    max_cached_share: float = 0.1,
) -> pl.DataFrame:
    """:func:`~clauditor.analytics.cache.caching_candidates` over ``period`` of ``con``:
    the sums from the rollup ``hours``, the 10th percentile and the reuse sequence from
    DuckDB aggregates (module docstring)."""

    def keyed(sql: str, mergeable: bool, features: list[str]) -> pl.DataFrame:
        return _keyed(con, sql, period, hours, mergeable, features)

    return caching_candidates_with(
        hours,
        lambda features: keyed(_PREFIX_SQL, False, features),
        lambda features: keyed(_BUCKETS_SQL, True, features),
        min_prompt_tokens=min_prompt_tokens,
        min_calls=min_calls,
        max_cached_share=max_cached_share,
    )


def caching_candidates_with(
    hours: pl.DataFrame,
    prefix_of: Callable[[list[str]], pl.DataFrame],
    buckets_of: Callable[[list[str]], pl.DataFrame],
    *,
    min_prompt_tokens: int = 1024,
    min_calls: int = 20,
    max_cached_share: float = 0.1,
) -> pl.DataFrame:
    """:func:`caching_candidates_from` with the two statements given by the engine, each over
    the successful non-``count_tokens`` calls of the feature keys it is passed
    (:func:`features_sql`): ``prefix_of`` gives ``fkey``, ``mkey`` and ``prefix_tokens`` (the
    discrete 10th percentile of input tokens, NULL as 0); ``buckets_of`` per ``fkey``,
    ``mkey`` (or finer: rows of one key are merged) and 5-minute ``_bucket``: ``n``, ``t0``,
    ``t1`` (first and last epoch microseconds), ``sg`` (summed input-minus-read price per
    token), ``g0`` and ``l0`` (the first call's gain and 5-minute write loss per token)."""
    keys = ["feature", "model"]
    totals = _candidate_totals(hours, min_prompt_tokens, min_calls, max_cached_share)
    schema = {"feature": pl.String, "model": pl.String, "prefix_tokens": pl.Int64,
              "reuse_share": pl.Float64, "dollars_at_stake": pl.Float64}  # fmt: skip
    per_call = pl.DataFrame(schema=schema)
    if totals.height:
        wanted = totals.select(pl.col("feature").alias("fkey"), pl.col("model").alias("mkey"))
        # Only the qualifying features' calls are read (the models are sorted out after).
        features = sorted(set(totals["feature"].to_list()))
        prefix = prefix_of(features)
        buckets = buckets_of(features)
        buckets = buckets.join(wanted, on=["fkey", "mkey"], how="semi", nulls_equal=True)
        per_call = (
            _reuse(buckets)
            .join(prefix, on=["fkey", "mkey"], how="left", nulls_equal=True)
            .select(
                pl.col("fkey").alias("feature"),
                pl.col("mkey").alias("model"),
                pl.col("prefix_tokens").cast(pl.Int64),
                "reuse_share",
                (pl.col("prefix_tokens") * pl.col("_per_token"))
                .clip(lower_bound=0.0)
                .alias("dollars_at_stake"),
            )
        )
    return (
        totals.join(per_call, on=keys, how="left", nulls_equal=True)
        .select(*keys, *CANDIDATE_COLUMNS)
        .sort(["dollars_at_stake", *keys], descending=[True, False, False])
    )


_US_5M, _US_1H = 300_000_000, 3_600_000_000

# The waste and TTL-replay terms (analytics.cache's module docstring), by window functions over
# the cached calls of each feature and model as recorded (time order within the group). The
# window sorts every cached call: it carries only numbers, the sequence (feature and model as
# recorded) and the raw key columns as 64-bit hashes (the raw columns are named again from the
# few distinct values in the rollup; two different keys sharing a hash is a 1-in-10^17 event).
_SEQUENCE_SQL = f"""
WITH c AS (
    SELECT hash(feature, coalesce(response_model, request_model)) AS g,
        {{raw}} AS _raw, epoch_us(start_time) AS t,
        {READ_SQL} AS rd, {WRITE_SQL} AS wr, {W5M_SQL} AS w5, {W1H_SQL} AS w1,
        {U_IN_SQL} AS u, {U_READ_SQL} AS ur, {U_5M_SQL} AS u5, {U_1H_SQL} AS u1,
        cost_cache_write_usd
    FROM calls{{where}}
), s AS (
    SELECT *,
        first_value(CASE WHEN rd > 0 THEN t END IGNORE NULLS) OVER (
            PARTITION BY g ORDER BY t ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) - t
            AS to_read,
        t - lag(t) OVER (PARTITION BY g ORDER BY t) AS gap,
        w5 > 0 AND coalesce(to_read > {_US_5M}, true) AS unread5,
        w1 > 0 AND coalesce(to_read > {_US_1H}, true) AS unread1,
        rd + wr AS prefix
    FROM c
)
SELECT _raw,
    sum(coalesce(rd * (u - ur), 0.0) - coalesce(w5 * (u5 - u) + w1 * (u1 - u), 0.0)) AS _saved,
    sum(coalesce(cost_cache_write_usd, 0.0)) AS _write_usd,
    sum(CASE WHEN unread5 THEN w5 * (u5 - u) ELSE 0.0 END
        + CASE WHEN unread1 THEN w1 * (u1 - u) ELSE 0.0 END) AS _wasted,
    sum(CASE WHEN unread5 THEN w5 ELSE 0 END + CASE WHEN unread1 THEN w1 ELSE 0 END) AS _unread,
    sum(prefix * CASE WHEN coalesce(gap > {_US_5M}, true) THEN u5 ELSE ur END
        - prefix * CASE WHEN coalesce(gap > {_US_1H}, true) THEN u1 ELSE ur END) AS _ttl_gain
FROM s GROUP BY ALL
"""


def cache_economics_sql(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    *,
    by: tuple[str, ...] | list[str] = ("feature", "model"),
) -> pl.DataFrame:
    """:func:`~clauditor.analytics.cache.cache_economics` over ``period`` of ``con``: sums
    from the rollup ``hours`` (which must carry the raw columns of ``by``), the waste and TTL
    replay from the cached calls' numbers (module docstring)."""
    by = list(by)
    columns = [*RAW_KEYS, *extra_key_columns(by)]
    where, params = where_sql(period, f"NOT {FAILED_SQL}", f"{READ_SQL} + {WRITE_SQL} > 0")
    sql = _SEQUENCE_SQL.format(where=where, raw=raw_hash_sql(columns))
    terms = con.sql(sql, params=params).pl()
    names = raw_names(con, hours, columns).drop("fkey", "mkey")
    terms = terms.with_columns(pl.col("_raw").cast(pl.UInt64)).join(names, on="_raw", how="left")
    return economics_from_terms(terms, hours, by)


def economics_from_terms(terms: pl.DataFrame, hours: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """:func:`cache_economics_sql` finished from the sequence sums ``terms`` (``_saved``,
    ``_write_usd``, ``_wasted``, ``_unread``, ``_ttl_gain`` per raw key: the raw columns of
    ``by`` as strings) and the rollup ``hours`` of the same calls."""
    terms = with_group_keys(terms, by)
    # Savings and write costs are 0 on calls that neither read nor wrote the cache, so their
    # sums over the cached calls are the sums over all successful calls.
    cached_sums = [pl.col("_saved").sum().alias("saved_usd"),
                   pl.col("_write_usd").sum().alias("write_cost_usd")]  # fmt: skip
    ok = with_group_keys(hours.lazy().filter(~failed_expr()), by)
    sums = [
        pl.col("calls").sum().cast(pl.Int64).alias("calls"),
        pl.col("input_tokens").fill_null(0).sum().cast(pl.Int64).alias("input_tokens"),
        pl.col("cache_read_input_tokens").fill_null(0).sum().cast(pl.Int64),
        pl.col("cache_creation_input_tokens").fill_null(0).sum().cast(pl.Int64),
    ]
    if by:
        strings = [pl.col(k).cast(pl.String) for k in by]
        grouped = (
            ok.group_by(by)
            .agg(sums)
            .with_columns(strings)
            .join(
                terms.group_by(by).agg(cached_sums).with_columns(strings),
                on=by,
                how="left",
                nulls_equal=True,
            )
            .with_columns(pl.col("saved_usd", "write_cost_usd").fill_null(0.0))
        )
    else:
        grouped = pl.concat([ok.select(sums), terms.select(cached_sums)], how="horizontal")
    return economics_table(grouped, terms, by)
