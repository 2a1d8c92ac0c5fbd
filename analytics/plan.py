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

from clauditor.analytics.frame import analytics_frame_from, prepare_calls
from clauditor.analytics.periods import Period
from clauditor.analytics.sqlparts import (
    FAILED_SQL,
    RAW_KEYS,
    READ_SQL,
    UNIT_IN_SQL,
    W1H_SQL,
    W5M_SQL,
    WRITE_SQL,
    attach_keys,
    day_sql,
    key_sql,
    model_mapping,
    raw_keys,
    where_sql,
)
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

_SAVED_SQL = (
    f"(1.0 / {CACHE_READ_MULTIPLIER} - 1.0) * coalesce(cost_cache_read_usd, 0.0) - coalesce("
    f"({CACHE_WRITE_5M_MULTIPLIER} - 1.0) * {W5M_SQL} * ({UNIT_IN_SQL}) "
    f"+ ({CACHE_WRITE_1H_MULTIPLIER} - 1.0) * {W1H_SQL} * ({UNIT_IN_SQL}), 0.0)"
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
    sum(coalesce(cost_input_usd, 0.0)) AS _input_usd, max(duration_ms) AS _max_duration_ms,
    count_if(coalesce(input_tokens, 0) + coalesce(cache_read_input_tokens, 0)
        + coalesce(cache_creation_input_tokens, 0) > 0 AND output_tokens IS NOT NULL)
        AS _usage_logged,
    max(start_time) AS _end_time
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
    "cache_creation_input_tokens", "retries", "_retried", "_truncated", "_usage_logged",
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
        pl.col("start_time", "_end_time").dt.convert_time_zone("UTC"),
        *[pl.col(c).cast(pl.Int64) for c in _INT_SUMS],
    )
    return prepare_calls(frame)


_LATENCY_SQL = """
SELECT {day} AS _day, {keys}, count(*) AS calls,
    quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS _d, count(ttft_ms) AS streamed_calls,
    quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS _t
FROM calls{where} GROUP BY ALL
"""


def latency_from_sql(
    con: duckdb.DuckDBPyConnection, period: Period | None, hours: pl.DataFrame, tz: str = "UTC"
) -> pl.DataFrame:
    """:func:`~clauditor.analytics.latency.latency_percentiles` with its defaults (by feature
    and model, per day in ``tz``, successful chat calls), computed by DuckDB."""
    subset = (pl.col("operation").fill_null("chat") == "chat") & (
        pl.col("status").fill_null("ok") == "ok"
    )
    mapping = raw_keys(hours, subset)
    where, params = where_sql(
        period, "coalesce(operation, 'chat') = 'chat' AND coalesce(status, 'ok') = 'ok'"
    )
    first = hours["start_time"].min() if hours.height else None
    day = day_sql(tz, first, hours["_end_time"].max() if hours.height else None)  # type: ignore[arg-type]
    if mapping is not None:
        sql = _LATENCY_SQL.format(day=day, keys=", ".join(RAW_KEYS), where=where)
        out = con.sql(sql, params=params).pl()
        out = attach_keys(out.with_columns(pl.col(RAW_KEYS).cast(pl.String)), mapping)
    else:
        ids, keys = model_mapping(hours)
        sql = _LATENCY_SQL.format(day=day, keys=key_sql(ids), where=where)
        out = con.sql(sql, params=params | {"ids": ids, "keys": keys}).pl()
    names = ("p50", "p95", "p99")
    return (
        out.with_columns(
            pl.from_epoch(pl.col("_day") * 86400, "s")
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone(tz)
            .alias("period"),
            pl.col("calls", "streamed_calls").cast(pl.Int64),
            *[pl.col("_d").list.get(i).alias(f"duration_{n}_ms") for i, n in enumerate(names)],
            *[pl.col("_t").list.get(i).alias(f"ttft_{n}_ms") for i, n in enumerate(names)],
        )
        .select(
            "period",
            pl.col("fkey").alias("feature"),
            pl.col("mkey").alias("model"),
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
        where=f"NOT {FAILED_SQL} AND {READ_SQL} + {WRITE_SQL} > 0",
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
    from clauditor.analytics.audit_sql import audit_from_aggregates
    from clauditor.analytics.budget import budget_status, threshold_crossings
    from clauditor.analytics.cache import (
        cache_economics_from,
        cache_hit_ratio_series_from_hours,
        cache_regressions_from_hours,
    )
    from clauditor.analytics.cache_sql import caching_candidates_from
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
    results["audit"] = audit_from_aggregates(con, period, hours, config=config, results=results)
    return results
