"""All analytics jobs over a period, planned so that DuckDB does the per-call work.

Loading every call into Polars costs more memory than 10M calls allow (2 GB) and more time
than the jobs themselves. So :func:`run_all_jobs` asks DuckDB for small aggregates, each the
reduction one or more jobs need, and runs the Polars jobs on those (thousands of rows, not
millions). No per-call frame reaches Python:

=====================  =====================================================================
``hours``              per UTC hour, side of ``as_of``, feature, request/response model,
                       operation, status, error type, HTTP status, and the audit's workload
                       flags (code location of untagged calls, stream, user, tier, capped):
                       counts and sums (cost, tokens, retries, truncation, output dollars).
                       Costs, spend by day, retries, cost of failure, hit-ratio series,
                       spikes, the budget, the cache sums and most audit items read it.
``error_minutes``      calls per minute and (status, error type, HTTP status): error windows.
``spend``              spend rows for the budget: the ``hours`` rows, except that the hours in
                       which a budget threshold is crossed come as their single calls, so the
                       crossing time is the exact call.
``latency``            the latency percentiles, by DuckDB (``quantile_cont`` is the same
                       linear interpolation as Polars), days cut by :func:`.sqlparts.day_sql`.
cache sequence         :func:`.cache_sql.cache_economics_sql`: window functions over the
                       cached calls give the wasted writes and the 1h-vs-5m replay.
candidates             :func:`.cache_sql.caching_candidates_from`: 10th percentile of input
                       and the reuse sequence from 5-minute buckets.
audit                  :func:`.audit_sql.audit_from_aggregates`: workload medians and p99,
                       conversation growth, Opus repriced from per-day sums.
=====================  =====================================================================

Every job result equals the one the per-call job gives on the same calls
(tests/analytics/test_plan.py checks it on the committed sample, in UTC and in a zone whose
offset changes inside it; tests/analytics/test_audit.py on hand-made calls). Group keys are
computed on the distinct raw values, not per call (:mod:`clauditor.analytics.sqlparts`).
:func:`run_all_jobs` is the single entry point the benchmark times.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from clauditor.analytics.costs import APP_SOURCES, SourceFilter, restrict_to_sources
from clauditor.analytics.frame import prepare_calls
from clauditor.analytics.periods import Period
from clauditor.analytics.sqlparts import (
    RAW_HASH_SQL,
    day_sql,
    key_sql,
    model_mapping,
    raw_keys,
    raw_names,
    where_sql,
)
from clauditor.config import Config
from clauditor.store import read_connection

__all__ = [
    "AnalyticsInputs",
    "analytics_inputs_from",
    "budget_levels",
    "error_minutes_on",
    "hours_on",
    "load_analytics_inputs",
    "on_aggregates",
    "run_all_jobs",
    "run_audit",
    "run_budget",
    "whole_hour_zone",
    "run_all_jobs_on",
]

_HOURS_SQL = """
SELECT epoch_us(start_time) // 3600000000 AS hour, start_time < $as_of AS _before,
    min(start_time) AS start_time, feature, request_model, response_model, operation,
    status, error_type, http_status,
    CASE WHEN coalesce(feature, '') = '' THEN code_location END AS _location, stream,
    user_id IS NOT NULL AS _has_user, service_tier, max_tokens IS NOT NULL AS _capped,
    max(max_tokens) AS _cap,
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

_MINUTES_SQL = """
SELECT epoch_us(start_time) // 60000000 AS bucket, status, error_type, http_status,
    count(*) AS calls
FROM calls{where}
GROUP BY ALL
"""


_UTC = pl.Datetime("us", "UTC")
T = TypeVar("T")

# Integer sums of the hourly aggregate (DuckDB returns them as 128-bit or decimals).
_INT_SUMS = (
    "calls", "_priced", "input_tokens", "output_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "retries", "_retried", "_truncated", "_usage_logged",
    "web_search_requests", "_abandoned",
)  # fmt: skip


@dataclass(frozen=True)
class AnalyticsInputs:
    """The aggregates and per-call extracts the jobs read (see the module docstring).

    Plain frames; every job function that takes one of them is pure. ``as_of`` is where
    ``hours`` rows are split (``_before``), so that the budget sees only earlier calls.
    """

    hours: pl.DataFrame
    error_minutes: pl.DataFrame
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


def hours_on(
    con: duckdb.DuckDBPyConnection, period: Period | None, as_of: dt.datetime
) -> pl.DataFrame:
    """The ``hours`` aggregate of ``period`` (module docstring), rows split at ``as_of``, on an
    open connection whose session time zone is UTC."""
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


# The key columns the SQL of :func:`.sqlparts.key_sql` names.
_KEY_ALIAS = {"feature": "fkey", "model": "mkey"}

_KEYED_LATENCY_SQL = """
SELECT {outer}count(*) AS calls,
    quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS _d, count(ttft_ms) AS streamed_calls,
    quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS _t
FROM (SELECT {day} AS _day, {keys}, duration_ms, ttft_ms FROM calls{where}){group}
"""


def latency_from_sql(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    tz: str = "UTC",
    *,
    by: Sequence[str] = ("feature", "model"),
    daily: bool = True,
) -> pl.DataFrame:
    """:func:`~clauditor.analytics.latency.latency_percentiles` of successful chat calls by
    ``by`` (among feature and model) and per day in ``tz`` (``daily``) or for the whole
    period (``every=None``), computed by DuckDB."""
    by = list(by)
    if not set(by) <= set(_KEY_ALIAS):
        raise ValueError(f"latency on aggregates groups by feature and model only, not {by}")
    subset = (pl.col("operation").fill_null("chat") == "chat") & (
        pl.col("status").fill_null("ok") == "ok"
    )
    where, params = where_sql(
        period, "coalesce(operation, 'chat') = 'chat' AND coalesce(status, 'ok') = 'ok'"
    )
    first = hours["start_time"].min() if hours.height else None
    day = day_sql(tz, first, hours["_end_time"].max() if hours.height else None)  # type: ignore[arg-type]
    full = by == ["feature", "model"] and daily
    mapping = raw_keys(hours, subset) if full else None
    if mapping is not None:  # group on the raw columns' hash, name the groups afterwards
        sql = _LATENCY_SQL.format(day=day, keys=f"{RAW_HASH_SQL} AS _raw", where=where)
        names = raw_names(con, hours).select("_raw", "fkey", "mkey")
        out = con.sql(sql, params=params).pl().with_columns(pl.col("_raw").cast(pl.UInt64))
        out = out.join(names, on="_raw", how="left")
    else:
        ids, keys = model_mapping(hours)
        groups = [*(["_day"] if daily else []), *[_KEY_ALIAS[k] for k in by]]
        sql = _KEYED_LATENCY_SQL.format(
            outer="".join(f"{g}, " for g in groups),
            day=day,
            keys=key_sql(ids),
            where=where,
            group=" GROUP BY " + ", ".join(groups) if groups else "",
        )
        out = con.sql(sql, params=params | {"ids": ids, "keys": keys}).pl()
    names = ("p50", "p95", "p99")
    columns = [
        *(["period"] if daily else []),
        *[pl.col(_KEY_ALIAS[k]).alias(k) for k in by],
        "calls",
        *[f"duration_{n}_ms" for n in names],
        "streamed_calls",
        *[f"ttft_{n}_ms" for n in names],
    ]
    out = out.with_columns(
        pl.col("calls", "streamed_calls").cast(pl.Int64),
        *[pl.col("_d").list.get(i).alias(f"duration_{n}_ms") for i, n in enumerate(names)],
        *[pl.col("_t").list.get(i).alias(f"ttft_{n}_ms") for i, n in enumerate(names)],
    )
    if daily:
        out = out.with_columns(
            pl.from_epoch(pl.col("_day") * 86400, "s")
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone(tz)
            .alias("period")
        )
    keys_out = [*(["period"] if daily else []), *by]
    return out.select(columns).sort(keys_out or ["calls"])


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
    # Integer hours inline, and the time range around them, which DuckDB can skip blocks on.
    numbers = ", ".join(str(int(h.timestamp()) // 3600) for h in refine)
    where, params = _where(
        period,
        f"start_time >= ? AND start_time < ? AND epoch_us(start_time) // 3600000000 IN ({numbers})",
    )
    calls = con.sql(
        f"SELECT start_time, feature, cost_usd FROM calls{where}",
        params=[*params, min(refine), max(refine) + dt.timedelta(hours=1)],
    ).pl()
    calls = calls.with_columns(pl.col("start_time").dt.convert_time_zone("UTC"))
    return pl.concat([base, calls.cast(base.schema)]).sort("start_time")  # type: ignore[arg-type]


def analytics_inputs_from(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    *,
    as_of: dt.datetime,
    budget_levels: Sequence[tuple[str | None, float]] = (),
    tz: str = "UTC",
) -> AnalyticsInputs:
    """:func:`load_analytics_inputs` on an open connection (session time zone must be UTC)."""
    hours = hours_on(con, period, as_of)
    return AnalyticsInputs(
        hours=hours,
        error_minutes=error_minutes_on(con, period),
        spend=_spend_rows(con, period, hours, budget_levels, tz),
        latency=latency_from_sql(con, period, hours, tz),
        as_of=as_of,
    )


def budget_levels(
    config: Config, extra: Mapping[str | None, float] | None = None
) -> list[tuple[str | None, float]]:
    """Every budget threshold of ``config`` (and ``extra`` budgets) as (feature or None for the
    whole account, dollars): where running spend must be exact."""
    budgets: dict[str | None, float] = dict(extra or {})
    if config.budget.monthly_usd is not None:
        budgets[None] = config.budget.monthly_usd
    budgets.update(config.budget.features.items())
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
            con, period, as_of=as_of, budget_levels=budget_levels(config, {}), tz=config.timezone
        )


def run_all_jobs(
    db: str | Path,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
    sources: SourceFilter | None = APP_SOURCES,
) -> dict[str, pl.DataFrame]:
    """Every analytics job over ``period`` (None: every call), keyed by job name.

    Results equal the per-call jobs' with their defaults, except where the config is used:
    budgets, thresholds and time zone come from ``config``; ``as_of`` is the budget's moment.
    The time zone must be a whole number of hours from UTC (daily sums come from hours).
    ``sources``: whose calls (default the app's: developers' Claude Code calls kept apart).
    """
    with read_connection(db) as con:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        restrict_to_sources(con, sources)
        return run_all_jobs_on(con, period, config=config, as_of=as_of)


def on_aggregates(
    db: str | Path,
    period: Period | None,
    job: Callable[[duckdb.DuckDBPyConnection, pl.DataFrame], T],
    *,
    as_of: dt.datetime | None = None,
    sources: SourceFilter | None = APP_SOURCES,
) -> T:
    """``job(con, hours)`` on a read-only connection (session time zone UTC) with the hourly
    aggregate of ``period``: how a job command runs one job on DuckDB aggregates instead of a
    frame of the period's calls (memory that does not grow with the number of calls).

    ``as_of`` splits the aggregate's rows (``_before``); default: the end of ``period``.
    ``sources``: only those sources' calls (default the app's), for the aggregate and for
    whatever ``job`` runs on ``con`` (see :func:`~clauditor.analytics.costs.restrict_to_sources`).
    """
    moment = as_of or (period.end if period is not None else dt.datetime.now(dt.UTC))
    with read_connection(db) as con:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        restrict_to_sources(con, sources)
        return job(con, hours_on(con, period, moment))


def whole_hour_zone(tz: str, start: dt.datetime, end: dt.datetime) -> bool:
    """Whether ``tz`` is a whole number of hours from UTC all through ``[start, end]`` (then
    no UTC hour straddles two of its local days, and hourly sums cut into its days exactly).

    Checked once a day and at the end: a zone's offset changes at most twice a year."""
    zone = zoneinfo.ZoneInfo(tz)
    moment = start
    while True:
        offset = moment.astimezone(zone).utcoffset()
        if offset is None or offset % dt.timedelta(hours=1):
            return False
        if moment >= end:
            return True
        moment = min(moment + dt.timedelta(days=1), end)


def run_budget(
    db: str | Path,
    period: Period,
    *,
    config: Config,
    as_of: dt.datetime,
    sources: SourceFilter | None = APP_SOURCES,
) -> pl.DataFrame:
    """:func:`clauditor.analytics.budget.budget_status` of the calls of ``period`` (the month so
    far and the look-back before it) with the budgets, thresholds and time zone of ``config``:
    hour sums, and the calls themselves only in the hours where a threshold is crossed (so the
    crossing time is the exact call). Equal to the per-call job when the zone is a whole number
    of hours from UTC (:func:`whole_hour_zone`); callers check that first."""

    def job(con: duckdb.DuckDBPyConnection, hours: pl.DataFrame) -> pl.DataFrame:
        spend = _spend_rows(con, period, hours, budget_levels(config, {}), config.timezone)
        return _budget_status(spend, config, as_of)

    return on_aggregates(db, period, job, as_of=as_of, sources=sources)


def _budget_status(spend: pl.DataFrame, config: Config, as_of: dt.datetime) -> pl.DataFrame:
    from clauditor.analytics.budget import budget_status_of

    return budget_status_of(spend, config.budget, as_of=as_of, tz=config.timezone)


def run_audit(
    db: str | Path, period: Period | None, *, config: Config, as_of: dt.datetime
) -> pl.DataFrame:
    """:func:`clauditor.analytics.audit.audit` of ``period`` (None: every call), planned as in
    :func:`run_all_jobs`: the hourly aggregate, the cache statements and the audit's own,
    so its memory does not grow with the number of calls. Equal to the per-call audit in
    any time zone (the audit reads UTC days and hours only)."""
    from clauditor.analytics.audit_sql import audit_from_aggregates
    from clauditor.analytics.cache_sql import cache_economics_sql, caching_candidates_from
    from clauditor.analytics.failure import cost_of_failure_from_hours

    def job(con: duckdb.DuckDBPyConnection, hours: pl.DataFrame) -> pl.DataFrame:
        results = {
            "cache_economics": cache_economics_sql(con, period, hours),
            "caching_candidates": caching_candidates_from(con, period, hours),
            "cost_of_failure": cost_of_failure_from_hours(hours),
        }
        return audit_from_aggregates(con, period, hours, config=config, results=results)

    return on_aggregates(db, period, job, as_of=as_of)


# The DuckDB statements after the hourly aggregate run on cursors of their own in worker
# threads, this many at a time, while the Polars jobs on ``hours`` run in the calling thread.
# DuckDB already spreads each statement over every core; two statements at once measured
# slower (7.2-8.3 s against 9.3-9.8 s) on the shared 2-core benchmark machine, one at a time
# still overlaps the Polars work with DuckDB's.
PARALLEL_STATEMENTS = 1


def _on_cursor(con: duckdb.DuckDBPyConnection, job: Callable[..., Any]) -> Callable[..., Any]:
    """``job(cursor, *args)`` on a fresh cursor of ``con`` (its own session: time zone UTC)."""
    cursor = con.cursor()
    # A cursor is a session of its own: it sees the same calls as ``con`` (restrict_to_sources).
    shadow = con.execute(
        "SELECT sql FROM duckdb_views() WHERE temporary AND view_name = 'calls'"
    ).fetchall()

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            for (view,) in shadow:
                cursor.execute(view).fetchall()
            cursor.execute("SET TimeZone = 'UTC'").fetchall()
            return job(cursor, *args, **kwargs)
        finally:
            cursor.close()

    return run


def error_minutes_on(con: duckdb.DuckDBPyConnection, period: Period | None) -> pl.DataFrame:
    """Calls per minute and error class of ``period`` (what the error jobs read), on an open
    connection whose session time zone is UTC."""
    # count_tokens calls are free and not generations: they take no part in error rates.
    where, params = _where(period, "coalesce(operation, 'chat') <> 'count_tokens'")
    minutes = con.sql(_MINUTES_SQL.format(where=where), params=params).pl()
    return minutes.with_columns(
        pl.from_epoch(pl.col("bucket") * 60, "s").dt.replace_time_zone("UTC").cast(_UTC),
        pl.col("calls").cast(pl.Int64),
    )


def run_all_jobs_on(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
) -> dict[str, pl.DataFrame]:
    """:func:`run_all_jobs` on an open connection whose session time zone is UTC.

    ``con`` must accept ``cursor()`` (any DuckDB connection does): the statements after the
    hourly aggregate run on cursors of their own, :data:`PARALLEL_STATEMENTS` at a time.
    """
    from clauditor.analytics.audit_sql import audit_figures, audit_from_aggregates
    from clauditor.analytics.budget import threshold_crossings
    from clauditor.analytics.cache import (
        cache_hit_ratio_series_from_hours,
        cache_regressions_from_hours,
    )
    from clauditor.analytics.cache_sql import cache_economics_sql, caching_candidates_from
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
    hours = hours_on(con, period, as_of)
    with ThreadPoolExecutor(max_workers=PARALLEL_STATEMENTS) as pool:
        # Longest first, so that the short ones fill in at the end.
        pending = {
            "audit": pool.submit(_on_cursor(con, audit_figures), period, hours, config=config),
            "cache_economics": pool.submit(_on_cursor(con, cache_economics_sql), period, hours),
            "caching_candidates": pool.submit(
                _on_cursor(con, caching_candidates_from), period, hours
            ),
            "latency": pool.submit(_on_cursor(con, latency_from_sql), period, hours, tz),
            "minutes": pool.submit(_on_cursor(con, error_minutes_on), period),
        }
        results: dict[str, pl.DataFrame] = {
            "cost_breakdown": cost_breakdown_from_hours(hours, ["feature", "model"]),
            "spend_by_day": spend_by_day_from_hours(hours, tz=tz),
            "cache_hit_ratio_series": cache_hit_ratio_series_from_hours(hours),
            "cache_regressions": cache_regressions_from_hours(hours),
            "retry_amplification": retry_amplification_from_hours(hours),
            "spike_episodes": spike_episodes_from_hours(hours),
            "cost_of_failure": cost_of_failure_from_hours(hours),
        }
        spend = _spend_rows(con, period, hours, budget_levels(config, {}), tz)
        results["budget_status"] = _budget_status(spend, config, as_of)
        results["threshold_crossings"] = (
            threshold_crossings(
                spend, monthly_usd=budget.monthly_usd, thresholds=budget.thresholds, tz=tz
            )
            if budget.monthly_usd is not None
            else pl.DataFrame()
        )
        done = {name: future.result() for name, future in pending.items()}
    minutes = done["minutes"]
    results["error_windows"] = error_windows_from_minutes(minutes)
    results["error_episodes"] = error_episodes_from_minutes(minutes)
    results["latency_percentiles"] = done["latency"]
    results["cache_economics"] = done["cache_economics"]
    results["caching_candidates"] = done["caching_candidates"]
    results["audit"] = audit_from_aggregates(
        con, period, hours, config=config, results=results, figures=done["audit"]
    )
    order = ("cost_breakdown", "spend_by_day", "cache_economics", "caching_candidates",
             "cache_hit_ratio_series", "cache_regressions", "error_windows", "error_episodes",
             "retry_amplification", "latency_percentiles", "budget_status",
             "threshold_crossings", "spike_episodes", "cost_of_failure", "audit")  # fmt: skip
    return {name: results[name] for name in order}


# --- A finer grain for zones whose offset is not a whole hour (the report, the alerts) ------


def grain_minutes(tz: str, start: dt.datetime, end: dt.datetime) -> int:
    """The bucket (minutes) whose sums cut into ``tz``'s local days exactly over
    ``[start, end]``: 60 in a zone a whole number of hours from UTC, else 15 (every UTC
    offset in use is a multiple of 15 minutes)."""
    return 60 if whole_hour_zone(tz, start, end) else 15


_SPEND_SQL = """
SELECT epoch_us(start_time) // {size} AS hour, min(start_time) AS start_time, feature,
    count(*) AS calls, count(cost_usd) AS _priced, sum(cost_usd) AS cost_usd
FROM calls{where}
GROUP BY ALL
"""


def spend_rollup_on(
    con: duckdb.DuckDBPyConnection, period: Period | None, minutes: int = 60
) -> pl.DataFrame:
    """Calls, priced calls and spend per bucket of ``minutes`` (60 or 15) and raw feature:
    ``hour`` (the bucket's UTC start), ``start_time`` (its first call), ``feature``,
    ``calls``, ``_priced``, ``cost_usd``. The columns of :func:`hours_on` that spend by local
    day (:func:`~clauditor.analytics.costs.spend_by_day_from_hours`) and the budget
    (:func:`spend_rows_on`) read, in buckets that cut any zone's days exactly."""
    if minutes not in (60, 15):
        raise ValueError(f"buckets of 60 or 15 minutes, not {minutes}")
    size = minutes * 60
    where, params = _where(period)
    frame = con.sql(_SPEND_SQL.format(size=size * 1_000_000, where=where), params=params).pl()
    return frame.with_columns(
        pl.from_epoch(pl.col("hour") * size, "s").dt.replace_time_zone("UTC").cast(_UTC),
        pl.col("start_time").dt.convert_time_zone("UTC"),
        pl.col("calls", "_priced").cast(pl.Int64),
    )


def spend_rows_on(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    rows: pl.DataFrame,
    levels: Sequence[tuple[str | None, float]],
    tz: str,
    minutes: int = 60,
) -> pl.DataFrame:
    """The budget's spend rows (as ``_spend_rows``) from :func:`hours_on` or
    :func:`spend_rollup_on` rows of ``minutes``: bucket sums, and the calls themselves in the
    buckets where a level of ``levels`` is crossed, so a crossing time is the exact call in
    any zone."""
    refine = _crossing_hours(rows, levels, tz)
    base = rows.filter(~pl.col("hour").is_in(refine)) if refine else rows
    base = base.select("start_time", "feature", "cost_usd")
    if not refine:
        return base
    size = minutes * 60
    numbers = ", ".join(str(int(h.timestamp()) // size) for h in refine)
    where, params = _where(
        period,
        "start_time >= ? AND start_time < ? "
        f"AND epoch_us(start_time) // {size * 1_000_000} IN ({numbers})",
    )
    calls = con.sql(
        f"SELECT start_time, feature, cost_usd FROM calls{where}",
        params=[*params, min(refine), max(refine) + dt.timedelta(seconds=size)],
    ).pl()
    calls = calls.with_columns(pl.col("start_time").dt.convert_time_zone("UTC"))
    return pl.concat([base, calls.cast(base.schema)]).sort("start_time")  # type: ignore[arg-type]


# --- What the alert rules read beyond the hourly aggregate ------------------------------------


def hours_by_key_on(con: duckdb.DuckDBPyConnection, period: Period | None, by: str) -> pl.DataFrame:
    """Calls, spend and the three input token sums per UTC ``hour``, request/response model and
    the source columns of group key ``by`` (any of :data:`~clauditor.analytics.costs.GROUP_KEYS`):
    the few columns of :func:`hours_on` that
    :func:`~clauditor.analytics.spikes.spike_episodes_from_hours` and the cache hit-ratio jobs
    read, for any key (hours_on keeps feature and model only), at a fraction of its cost."""
    from clauditor.analytics.costs import key_columns

    columns = ", ".join(dict.fromkeys([*key_columns([by]), "request_model", "response_model"]))
    where, params = _where(period)
    frame = con.sql(
        f"SELECT epoch_us(start_time) // 3600000000 AS hour, {columns}, count(*) AS calls, "
        "sum(cost_usd) AS cost_usd, sum(input_tokens) AS input_tokens, "
        "sum(cache_read_input_tokens) AS cache_read_input_tokens, "
        f"sum(cache_creation_input_tokens) AS cache_creation_input_tokens FROM calls{where} "
        "GROUP BY ALL",
        params=params,
    ).pl()
    return frame.with_columns(
        pl.from_epoch(pl.col("hour") * 3600, "s").dt.replace_time_zone("UTC").cast(_UTC),
        pl.col("calls", *_TOKEN_SUMS).cast(pl.Int64),
    )


_TOKEN_SUMS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
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
    ``first``, ``last`` (UTC), ``calls``; sorted by ``first``."""
    where, params = _where(period, "cost_usd IS NULL")
    # The period's positional parameters come first in the text, then the gap.
    sql = _UNPRICED_RUNS_SQL.format(where=where).replace("$gap", "?")
    frame = con.sql(sql, params=[*params, int(gap.total_seconds() * 1_000_000)]).pl()
    return frame.select(
        "model",
        *[
            pl.from_epoch(pl.col(c), time_unit="us").dt.replace_time_zone("UTC").alias(c)
            for c in ("first", "last")
        ],
        pl.col("calls").cast(pl.Int64),
    )
