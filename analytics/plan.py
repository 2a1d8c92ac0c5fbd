"""All analytics jobs over a period, planned so that DuckDB does the per-call work.

Loading every call into Polars costs more memory than 10M calls allow (2 GB) and more time
than the jobs themselves. Most jobs only need sums per hour, or counts per minute, so
:func:`load_analytics_inputs` asks DuckDB for those aggregates and reads per-call values only
where a job needs them, for the few calls it needs them for:

=================  =========================================================================
``hours``          per UTC hour, side of ``as_of``, feature, request/response model,
                   operation, status, error type and HTTP status: call counts and sums
                   (cost, tokens, retries, truncation, cache savings). Costs, spend by day,
                   retries, cost of failure, hit-ratio series, spikes and the budget read it.
``error_minutes``  calls per minute and (status, error type, HTTP status): the error windows.
``cached``         the successful calls that read or wrote the cache, per call: the
                   read/write sequence of :func:`~clauditor.analytics.cache.cache_economics`.
``spend``          spend rows for the budget: the ``hours`` rows, except that the hours in
                   which a budget threshold is crossed come as their single calls, so the
                   crossing time is the exact call.
``latency``        the latency percentiles, computed by DuckDB (``quantile_cont`` is the
                   same linear interpolation as Polars).
``candidates``     the caching candidates, per-call work done by DuckDB for qualifying groups.
``workloads``      per-workload figures of the audit (medians and p99s by DuckDB).
=================  =========================================================================

Every job result equals the one the per-call job gives on the same calls
(tests/analytics/test_plan.py checks it on the committed sample). :func:`run_all_jobs` is
the single entry point the benchmark times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from clauditor.analytics.costs import NO_KEY, PREPARED_KEY, UNTAGGED
from clauditor.analytics.frame import _model_keys, analytics_frame_from, prepare_calls
from clauditor.analytics.periods import Period
from clauditor.config import Config
from clauditor.pricing import (
    CACHE_READ_MULTIPLIER,
    CACHE_WRITE_1H_MULTIPLIER,
    CACHE_WRITE_5M_MULTIPLIER,
)
from clauditor.store import read_connection

__all__ = [
    "AnalyticsInputs",
    "analytics_inputs_from",
    "load_analytics_inputs",
    "run_all_jobs",
    "run_all_jobs_on",
]

# SQL twins of analytics.errors.failed_expr and of the cache job's base input price: the
# aggregates must select exactly the calls the Polars jobs select.
FAILED_SQL = (
    "(coalesce(status = 'error', false) OR error_type IS NOT NULL "
    "OR coalesce(http_status >= 400, false))"
)
_READ = "coalesce(cache_read_input_tokens, 0)"
_WRITE = "coalesce(cache_creation_input_tokens, 0)"
_W1H = f"least(coalesce(cache_creation_1h_input_tokens, 0), {_WRITE})"
_W5M = f"({_WRITE} - {_W1H})"
UNIT_IN_SQL = (
    f"CASE WHEN {_READ} > 0 THEN cost_cache_read_usd / ({CACHE_READ_MULTIPLIER} * {_READ}) "
    f"WHEN {_WRITE} > 0 THEN cost_cache_write_usd / "
    f"({CACHE_WRITE_5M_MULTIPLIER} * {_W5M} + {CACHE_WRITE_1H_MULTIPLIER} * {_W1H}) "
    "WHEN coalesce(input_tokens, 0) > 0 THEN cost_input_usd / coalesce(input_tokens, 0) END"
)
_SAVED_SQL = (
    f"(1.0 / {CACHE_READ_MULTIPLIER} - 1.0) * coalesce(cost_cache_read_usd, 0.0) - coalesce("
    f"({CACHE_WRITE_5M_MULTIPLIER} - 1.0) * {_W5M} * ({UNIT_IN_SQL}) "
    f"+ ({CACHE_WRITE_1H_MULTIPLIER} - 1.0) * {_W1H} * ({UNIT_IN_SQL}), 0.0)"
)

_HOURS_SQL = f"""
SELECT epoch_us(start_time) // 3600000000 AS hour, start_time < $as_of AS _before,
    min(start_time) AS start_time, feature, request_model, response_model, operation,
    status, error_type, http_status,
    count(*) AS calls, count(cost_usd) AS _priced, sum(cost_usd) AS cost_usd,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(coalesce(retries, 0)) AS retries, count_if(coalesce(retries, 0) > 0) AS _retried,
    sum(coalesce(cost_usd, 0.0) * coalesce(retries, 0)) AS _retry_usd,
    count_if(stop_reason = 'max_tokens') AS _truncated,
    coalesce(sum(cost_usd) FILTER (stop_reason = 'max_tokens'), 0.0) AS _truncated_usd,
    sum({_SAVED_SQL}) AS _saved, sum(coalesce(cost_cache_write_usd, 0.0)) AS _write_usd,
    sum(coalesce(cost_input_usd, 0.0)) AS _input_usd, max(duration_ms) AS _max_duration_ms
FROM calls{{where}}
GROUP BY ALL
"""

_MINUTES_SQL = """
SELECT epoch_us(start_time) // 60000000 AS bucket, status, error_type, http_status,
    count(*) AS calls
FROM calls{where}
GROUP BY ALL
"""


_UTC = pl.Datetime("us", "UTC")

# Integer sums of the hourly aggregate (DuckDB returns them as 128-bit or decimals).
_INT_SUMS = (
    "calls", "_priced", "input_tokens", "output_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "retries", "_retried", "_truncated",
)  # fmt: skip


@dataclass(frozen=True)
class AnalyticsInputs:
    """The aggregates and per-call extracts the jobs read (see the module docstring).

    Plain frames; every job function that takes one of them is pure. ``as_of`` is where
    ``hours`` rows are split (``_before``), so that the budget sees only earlier calls.
    """

    hours: pl.DataFrame
    error_minutes: pl.DataFrame
    cached: pl.DataFrame
    spend: pl.DataFrame
    latency: pl.DataFrame
    as_of: dt.datetime


def _where(period: Period | None, extra: str = "") -> tuple[str, list[object]]:
    parts, params = [], []
    if period is not None:
        parts.append("start_time >= ? AND start_time < ?")
        params = [period.start, period.end]
    if extra:
        parts.append(extra)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def _hours(
    con: duckdb.DuckDBPyConnection, period: Period | None, as_of: dt.datetime
) -> pl.DataFrame:
    where = ""
    params: dict[str, object] = {"as_of": as_of}
    if period is not None:
        where = " WHERE start_time >= $start AND start_time < $end"
        params |= {"start": period.start, "end": period.end}
    frame = con.sql(_HOURS_SQL.format(where=where), params=params).pl()
    frame = frame.with_columns(
        # Integer hours since the epoch: date_trunc on a TIMESTAMPTZ goes through ICU, slowly.
        pl.from_epoch(pl.col("hour") * 3600, "s").dt.replace_time_zone("UTC").cast(_UTC),
        pl.col("start_time").dt.convert_time_zone("UTC"),
        *[pl.col(c).cast(pl.Int64) for c in _INT_SUMS],
    )
    return prepare_calls(frame)


def _model_mapping(hours: pl.DataFrame) -> tuple[list[str], list[str]]:
    """Distinct model ids as answered (NULL/empty skipped) and their group keys."""
    raw = pl.coalesce(
        pl.col("response_model").replace("", None), pl.col("request_model").replace("", None)
    )
    ids = sorted(hours.select(raw.unique().alias("id"))["id"].drop_nulls().to_list())
    return ids, _model_keys(ids)


def _key_sql(ids: list[str]) -> str:
    """SQL of the feature and model group keys (model ids mapped by list position)."""
    model = "coalesce(nullif(response_model, ''), nullif(request_model, ''))"
    return (
        f"coalesce(nullif(feature, ''), '{UNTAGGED}') AS fkey, "
        f"coalesce(list_extract($keys, list_position($ids, {model})), '{NO_KEY}') AS mkey"
    )


_LATENCY_SQL = """
WITH c AS (
    SELECT date_trunc('day', timezone($tz, start_time)) AS period, {keys}, duration_ms, ttft_ms
    FROM calls{where}
)
SELECT period, fkey AS feature, mkey AS model, count(*) AS calls,
    quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS _d, count(ttft_ms) AS streamed_calls,
    quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS _t
FROM c GROUP BY ALL
"""


def latency_from_sql(
    con: duckdb.DuckDBPyConnection, period: Period | None, hours: pl.DataFrame, tz: str = "UTC"
) -> pl.DataFrame:
    """:func:`~clauditor.analytics.latency.latency_percentiles` with its defaults (by feature
    and model, per day in ``tz``, successful chat calls), computed by DuckDB."""
    ids, keys = _model_mapping(hours)
    where, _ = _where(
        None,
        "coalesce(operation, 'chat') = 'chat' AND coalesce(status, 'ok') = 'ok'",
    )
    params: dict[str, object] = {"tz": tz, "ids": ids, "keys": keys}
    if period is not None:
        where += " AND start_time >= $start AND start_time < $end"
        params |= {"start": period.start, "end": period.end}
    sql = _LATENCY_SQL.format(keys=_key_sql(ids), where=where)
    out = con.sql(sql, params=params).pl()
    names = ("p50", "p95", "p99")
    return (
        out.with_columns(
            pl.col("period").dt.replace_time_zone(tz),
            pl.col("calls", "streamed_calls").cast(pl.Int64),
            *[pl.col("_d").list.get(i).alias(f"duration_{n}_ms") for i, n in enumerate(names)],
            *[pl.col("_t").list.get(i).alias(f"ttft_{n}_ms") for i, n in enumerate(names)],
        )
        .select(
            "period",
            "feature",
            "model",
            "calls",
            *[f"duration_{n}_ms" for n in names],
            "streamed_calls",
            *[f"ttft_{n}_ms" for n in names],
        )  # fmt: skip
        .sort("period", "feature", "model")
    )


def _crossing_hours(
    hours: pl.DataFrame, levels: Sequence[tuple[str | None, float]], tz: str
) -> list[dt.datetime]:
    """The hours in which a running monthly spend (total, or one feature's) reaches a level."""
    rows = hours.select(
        "hour", "start_time", "feature", pl.col("cost_usd").fill_null(0.0).alias("_cost")
    ).sort("start_time")
    month = pl.col("start_time").dt.convert_time_zone(tz).dt.date().dt.truncate("1mo")
    found: set[dt.datetime] = set()
    for feature in {f for f, _ in levels}:
        scoped = rows if feature is None else rows.filter(pl.col("feature") == feature)
        running = scoped.with_columns(pl.col("_cost").cum_sum().over(month).alias("_spent"))
        for _, level in (x for x in levels if x[0] == feature):
            hit = (
                running.filter(pl.col("_spent") >= level)
                .group_by(month.alias("_m"))
                .agg(pl.col("hour").first())
            )
            found.update(hit["hour"].to_list())
    return sorted(found)


def _spend_rows(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    levels: Sequence[tuple[str | None, float]],
    tz: str,
) -> pl.DataFrame:
    """``start_time``, ``feature``, ``cost_usd`` rows: hour aggregates, single calls in the
    hours where a level is crossed (so running totals are exact everywhere that matters)."""
    refine = _crossing_hours(hours, levels, tz)
    base = hours.filter(~pl.col("hour").is_in(refine)) if refine else hours
    base = base.select("start_time", "feature", "cost_usd")
    if not refine:
        return base
    where, params = _where(period, "epoch_us(start_time) // 3600000000 IN (SELECT unnest(?))")
    calls = con.sql(
        f"SELECT start_time, feature, cost_usd FROM calls{where}",
        params=[*params, [int(h.timestamp()) // 3600 for h in refine]],
    ).pl()
    calls = calls.with_columns(pl.col("start_time").dt.convert_time_zone("UTC"))
    return pl.concat([base, calls.cast(base.schema)]).sort("start_time")  # type: ignore[arg-type]


_CACHED_COLUMNS = (
    "start_time", "feature", "request_model", "response_model", "input_tokens",
    "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation_1h_input_tokens",
    "cost_input_usd", "cost_cache_read_usd", "cost_cache_write_usd",
)  # fmt: skip


def analytics_inputs_from(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    *,
    as_of: dt.datetime,
    budget_levels: Sequence[tuple[str | None, float]] = (),
    tz: str = "UTC",
) -> AnalyticsInputs:
    """:func:`load_analytics_inputs` on an open connection (session time zone must be UTC)."""
    hours = _hours(con, period, as_of)
    where, params = _where(period)
    minutes = con.sql(_MINUTES_SQL.format(where=where), params=params).pl()
    minutes = minutes.with_columns(
        pl.from_epoch(pl.col("bucket") * 60, "s").dt.replace_time_zone("UTC").cast(_UTC),
        pl.col("calls").cast(pl.Int64),
    )
    table = {row[0] for row in con.execute("DESCRIBE calls").fetchall()}
    cached = analytics_frame_from(
        con,
        period,
        columns=[c for c in _CACHED_COLUMNS if c in table],
        where=f"NOT {FAILED_SQL} AND {_READ} + {_WRITE} > 0",
    )
    return AnalyticsInputs(
        hours=hours,
        error_minutes=minutes,
        cached=cached,
        spend=_spend_rows(con, period, hours, budget_levels, tz),
        latency=latency_from_sql(con, period, hours, tz),
        as_of=as_of,
    )


def _levels(config: Config, extra: Mapping[str | None, float]) -> list[tuple[str | None, float]]:
    budgets: dict[str | None, float] = dict(extra)
    if config.budget.monthly_usd is not None:
        budgets[None] = config.budget.monthly_usd
    budgets |= dict(config.budget.features)
    return [(f, t * usd) for f, usd in budgets.items() for t in config.budget.thresholds]


def load_analytics_inputs(
    db: str | Path, period: Period | None, *, config: Config, as_of: dt.datetime
) -> AnalyticsInputs:
    """The :class:`AnalyticsInputs` of ``period`` (None: every call), read read-only.

    ``config`` gives the budgets and thresholds whose crossing hours are read call by call,
    and the time zone; ``as_of`` is the budget's evaluation moment.
    """
    with read_connection(db) as con:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        return analytics_inputs_from(
            con, period, as_of=as_of, budget_levels=_levels(config, {}), tz=config.timezone
        )


_CANDIDATES_SQL = """
WITH c AS (
    SELECT {keys}, start_time AS t, coalesce(input_tokens, 0) AS inp,
        coalesce({unit_in}, 0.0) AS unit_in
    FROM calls{where}
), q AS (
    SELECT * FROM c WHERE list_contains($pairs, fkey || chr(31) || mkey)
), r AS (
    SELECT fkey, mkey, inp, unit_in,
        coalesce(t - lag(t) OVER (PARTITION BY fkey, mkey ORDER BY t) <= INTERVAL 5 MINUTE, false)
            AS reuse
    FROM q
)
SELECT fkey AS feature, mkey AS model, quantile_disc(inp, 0.1) AS prefix_tokens,
    avg(reuse::INTEGER) AS reuse_share,
    sum(unit_in * CASE WHEN reuse THEN {gain} ELSE {loss} END) AS _per_token
FROM r GROUP BY ALL
"""


def caching_candidates_from(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    *,
    min_prompt_tokens: int = 1024,
    min_calls: int = 20,
    max_cached_share: float = 0.1,
) -> pl.DataFrame:
    """:func:`~clauditor.analytics.cache.caching_candidates`, the sums from ``hours`` and the
    per-call work (10th percentile, reuse sequence) by DuckDB for the qualifying groups."""
    keys = ["feature", "model"]
    ok = (pl.col("operation").fill_null("chat") != "count_tokens") & (
        pl.col("status").fill_null("ok") == "ok"
    )
    cached = pl.col("_cached")
    cached_share = cached / (cached + pl.col("_input_sum"))
    totals = (
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
        .with_columns(pl.col(keys).cast(pl.String))
        .collect()
    )  # fmt: skip
    schema = {"feature": pl.String, "model": pl.String, "prefix_tokens": pl.Int64,
              "reuse_share": pl.Float64, "dollars_at_stake": pl.Float64}  # fmt: skip
    per_call = pl.DataFrame(schema=schema)
    if totals.height:
        ids, model_keys = _model_mapping(hours)
        where, params = _where(
            None, "coalesce(operation, 'chat') != 'count_tokens' AND coalesce(status, 'ok') = 'ok'"
        )
        named: dict[str, object] = {
            "ids": ids, "keys": model_keys,
            "pairs": [f"{f}\x1f{m}" for f, m in totals.select(keys).iter_rows()],
        }  # fmt: skip
        if period is not None:
            where += " AND start_time >= $start AND start_time < $end"
            named |= {"start": period.start, "end": period.end}
        sql = _CANDIDATES_SQL.format(
            keys=_key_sql(ids), unit_in=UNIT_IN_SQL, where=where,
            gain=1.0 - CACHE_READ_MULTIPLIER, loss=-(CACHE_WRITE_5M_MULTIPLIER - 1.0),
        )  # fmt: skip
        per_call = (
            con.sql(sql, params=named)
            .pl()
            .select(
                "feature",
                "model",
                pl.col("prefix_tokens").cast(pl.Int64),
                "reuse_share",
                (pl.col("prefix_tokens") * pl.col("_per_token"))
                .clip(lower_bound=0.0)
                .alias("dollars_at_stake"),
            )  # fmt: skip
        )
    return (
        totals.join(per_call, on=keys, how="left", nulls_equal=True)
        .select(
            *keys,
            "calls",
            "avg_input_tokens",
            "prefix_tokens",
            "reuse_share",
            "input_cost_usd",
            "dollars_at_stake",
        )  # fmt: skip
        .sort(["dollars_at_stake", *keys], descending=[True, False, False])
    )


def run_all_jobs(
    db: str | Path,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
) -> dict[str, pl.DataFrame]:
    """Every analytics job over ``period`` (None: every call), keyed by job name.

    Results equal the per-call jobs' with their defaults, except where the config is used:
    budgets, thresholds and time zone come from ``config``; ``as_of`` is the budget's moment.
    The time zone must be a whole number of hours from UTC (daily sums come from hours).
    """
    with read_connection(db) as con:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        return run_all_jobs_on(con, period, config=config, as_of=as_of)


def run_all_jobs_on(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
) -> dict[str, pl.DataFrame]:
    """:func:`run_all_jobs` on an open connection whose session time zone is UTC."""
    from clauditor.analytics.audit import audit_from_inputs
    from clauditor.analytics.budget import budget_status, threshold_crossings
    from clauditor.analytics.cache import (
        cache_economics_from,
        cache_hit_ratio_series_from_hours,
        cache_regressions_from_hours,
    )
    from clauditor.analytics.costs import cost_breakdown_from_hours, spend_by_day_from_hours
    from clauditor.analytics.errors import (
        error_episodes_from_minutes,
        error_windows_from_minutes,
        retry_amplification_from_hours,
    )
    from clauditor.analytics.failure import cost_of_failure_from_hours
    from clauditor.analytics.spikes import spike_episodes_from_hours

    tz = config.timezone
    budget = config.budget
    inputs = analytics_inputs_from(
        con, period, as_of=as_of, budget_levels=_levels(config, {}), tz=tz
    )
    hours = inputs.hours
    results: dict[str, pl.DataFrame] = {
        "cost_breakdown": cost_breakdown_from_hours(hours, ["feature", "model"]),
        "spend_by_day": spend_by_day_from_hours(hours, tz=tz),
        "cache_economics": cache_economics_from(hours, inputs.cached),
        "caching_candidates": caching_candidates_from(con, period, hours),
        "cache_hit_ratio_series": cache_hit_ratio_series_from_hours(hours),
        "cache_regressions": cache_regressions_from_hours(hours),
        "error_windows": error_windows_from_minutes(inputs.error_minutes),
        "error_episodes": error_episodes_from_minutes(inputs.error_minutes),
        "retry_amplification": retry_amplification_from_hours(hours),
        "latency_percentiles": inputs.latency,
        "budget_status": budget_status(
            inputs.spend,
            monthly_usd=budget.monthly_usd,
            feature_budgets=budget.features,
            thresholds=budget.thresholds,
            as_of=as_of,
            tz=tz,
        ),
        "threshold_crossings": (
            threshold_crossings(
                inputs.spend,
                monthly_usd=budget.monthly_usd,
                thresholds=budget.thresholds,
                tz=tz,
            )
            if budget.monthly_usd is not None
            else pl.DataFrame()
        ),
        "spike_episodes": spike_episodes_from_hours(hours),
        "cost_of_failure": cost_of_failure_from_hours(hours),
    }
    results["audit"] = audit_from_inputs(con, period, inputs, config=config, results=results)
    return results
