"""Former names of the runner and the engine's reductions, kept only while dashboards/ and
alerts/ still import them; they move to :mod:`clauditor.analytics.runner`,
:mod:`clauditor.analytics.engine` and :mod:`clauditor.analytics.rollup`, and this module goes.

Old name → new name:

====================  ==========================================================================
``run_all_jobs``      :func:`clauditor.analytics.runner.run_jobs`
``run_all_jobs_on``   :func:`~clauditor.analytics.runner.run_jobs_on` on ``DuckDBEngine(con)``
``hours_on``          :func:`clauditor.analytics.rollup.rollup_on` (``grain=60``)
``error_minutes_on``  :func:`clauditor.analytics.rollup.error_minutes_on`
``latency_from_sql``  :func:`clauditor.analytics.engine.latency_on` (``every="1d"`` or None)
``budget_levels``     :func:`clauditor.analytics.runner.budget_levels`
``run_budget``        :func:`clauditor.analytics.runner.budget_table`
``run_audit``         :func:`clauditor.analytics.runner.audit_table`
``whole_hour_zone``   ``clauditor.analytics.rollup.grain_for(tz, start, end) == 60``
``on_aggregates``     :func:`~clauditor.analytics.engine.open_engine` and ``engine.rollup``
====================  ==========================================================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl

from clauditor.analytics.costs import APP_SOURCES, SourceFilter
from clauditor.analytics.engine import DuckDBEngine, latency_on, open_engine
from clauditor.analytics.periods import Period
from clauditor.analytics.rollup import error_minutes_on, grain_for, rollup_on
from clauditor.analytics.runner import audit_table, budget_levels, budget_table, run_jobs_on
from clauditor.config import Config

__all__ = [
    "budget_levels",
    "error_minutes_on",
    "grain_minutes",
    "hours_by_key_on",
    "hours_on",
    "latency_from_sql",
    "on_aggregates",
    "run_all_jobs",
    "run_all_jobs_on",
    "run_audit",
    "run_budget",
    "spend_rollup_on",
    "spend_rows_on",
    "unpriced_runs_on",
    "whole_hour_zone",
]

T = TypeVar("T")


def hours_on(
    con: duckdb.DuckDBPyConnection, period: Period | None, as_of: dt.datetime
) -> pl.DataFrame:
    """:func:`clauditor.analytics.rollup.rollup_on` at the hour grain."""
    return rollup_on(con, period, as_of)


def latency_from_sql(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    tz: str = "UTC",
    *,
    by: Sequence[str] = ("feature", "model"),
    daily: bool = True,
) -> pl.DataFrame:
    """:func:`clauditor.analytics.engine.latency_on` per day (``daily``) or for the period."""
    return latency_on(con, period, hours, tz=tz, by=by, every="1d" if daily else None)


def run_all_jobs_on(
    con: duckdb.DuckDBPyConnection, period: Period | None, *, config: Config, as_of: dt.datetime
) -> dict[str, pl.DataFrame]:
    """:func:`clauditor.analytics.runner.run_jobs_on` on ``con``."""
    return run_jobs_on(DuckDBEngine(con), period, config=config, as_of=as_of)


def run_all_jobs(
    db: str | Path,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
    sources: SourceFilter | None = APP_SOURCES,
) -> dict[str, pl.DataFrame]:
    """:func:`clauditor.analytics.runner.run_jobs`."""
    from clauditor.analytics.runner import run_jobs

    return run_jobs(db, period, config=config, as_of=as_of, sources=sources)


def on_aggregates(
    db: str | Path,
    period: Period | None,
    job: Callable[[duckdb.DuckDBPyConnection, pl.DataFrame], T],
    *,
    as_of: dt.datetime | None = None,
    sources: SourceFilter | None = APP_SOURCES,
) -> T:
    """``job(con, hours)`` with the hour rollup of ``period`` on a read-only connection."""
    moment = as_of or (period.end if period is not None else dt.datetime.now(dt.UTC))
    with open_engine(db, sources=sources) as engine:
        return job(engine.con, engine.rollup(period, as_of=moment))


def whole_hour_zone(tz: str, start: dt.datetime, end: dt.datetime) -> bool:
    """Whether ``tz`` is a whole number of hours from UTC all through ``[start, end]``."""
    return grain_for(tz, start, end) == 60


def run_budget(
    db: str | Path,
    period: Period,
    *,
    config: Config,
    as_of: dt.datetime,
    sources: SourceFilter | None = APP_SOURCES,
) -> pl.DataFrame:
    """:func:`clauditor.analytics.runner.budget_table`."""
    return budget_table(db, period, config=config, as_of=as_of, sources=sources)


def run_audit(
    db: str | Path, period: Period | None, *, config: Config, as_of: dt.datetime
) -> pl.DataFrame:
    """:func:`clauditor.analytics.runner.audit_table`."""
    return audit_table(db, period, config=config, as_of=as_of)


# --- The report's and the alerts' reductions (to move onto the engine) ---------------------

_UTC = pl.Datetime("us", "UTC")


def _where(period: Period | None, extra: str = "") -> tuple[str, list[object]]:
    parts, params = [], []
    if period is not None:
        parts.append("start_time >= ? AND start_time < ?")
        params = [period.start, period.end]
    if extra:
        parts.append(extra)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


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
    ).with_columns(pl.col("hour").alias("slot"))


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
