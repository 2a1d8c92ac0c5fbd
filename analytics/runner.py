"""The runner: every analytics job from the reductions of :mod:`clauditor.analytics.engine`.

One path from the calls to each answer. A consumer names a source (a DuckDB file, a Parquet
folder or a frame of calls), a period and the job's options; the runner asks the engine for the
reductions the job needs and finishes them with the job's pure Polars function (the
``*_from_hours`` and ``*_from_minutes`` functions of the job modules). No per-call frame reaches
Python, so memory does not grow with the number of calls.

* :func:`run_jobs` runs every job (or those named) with the defaults, keyed by job name
  (:data:`JOB_NAMES`): what the benchmark times.
* One function per command (:func:`costs_table`, :func:`cache_tables`, :func:`errors_tables`,
  :func:`latency_table`, :func:`budget_table`, :func:`spikes_table`, :func:`failures_table`,
  :func:`audit_table`) runs that command's jobs with its options; :func:`error_windows_table`
  gives error windows of any length (the report's 1h, 3h, 1d).

Local calendars (spend per day, cost per bucket, the budget's months and days) are cut from
rollup slots; the grain is an hour when the configured zone is a whole number of hours from UTC
over the period and 15 minutes otherwise (:func:`clauditor.analytics.rollup.grain_for`), so
half-hour and 45-minute zones take the same path at a finer grain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl

from clauditor.analytics.audit_figures import audit_from_figures
from clauditor.analytics.budget import budget_status_of, threshold_crossings
from clauditor.analytics.cache import (
    cache_hit_ratio_series_from_hours,
    cache_regressions_from_hours,
)
from clauditor.analytics.costs import (
    APP_SOURCES,
    SourceFilter,
    cost_breakdown_from_hours,
    spend_by_day_from_hours,
)
from clauditor.analytics.engine import Engine, Source, open_engine
from clauditor.analytics.errors import (
    error_episodes_from_minutes,
    error_windows_from_minutes,
    retry_amplification_from_hours,
)
from clauditor.analytics.failure import cost_of_failure_from_hours
from clauditor.analytics.latency import check_bucket
from clauditor.analytics.periods import Period
from clauditor.analytics.rollup import grain_for
from clauditor.analytics.spikes import spike_episodes_from_hours
from clauditor.analytics.trends import change_table, cost_by_bucket_from_hours
from clauditor.config import Config

__all__ = [
    "JOB_NAMES",
    "PARALLEL_STATEMENTS",
    "audit_table",
    "budget_levels",
    "budget_spend",
    "budget_table",
    "cache_tables",
    "costs_table",
    "error_windows_table",
    "errors_tables",
    "failures_table",
    "latency_table",
    "rollup_at_zone",
    "run_jobs",
    "run_jobs_on",
    "spikes_table",
]

JOB_NAMES = (
    "cost_breakdown", "spend_by_day", "cache_economics", "caching_candidates",
    "cache_hit_ratio_series", "cache_regressions", "error_windows", "error_episodes",
    "retry_amplification", "latency_percentiles", "budget_status", "threshold_crossings",
    "spike_episodes", "cost_of_failure", "audit",
)  # fmt: skip

# The statements after the rollup run on engines of their own in worker threads, this many at
# a time, while the Polars finishing runs in the calling thread. DuckDB already spreads each
# statement over every core; two statements at once measured slower (7.2-8.3 s against
# 9.3-9.8 s) on the shared 2-core benchmark machine, one at a time still overlaps the Polars
# work with DuckDB's.
PARALLEL_STATEMENTS = 1


def rollup_at_zone(
    engine: Engine,
    period: Period | None,
    *,
    as_of: dt.datetime,
    tz: str,
    keys: Sequence[str] = (),
) -> tuple[pl.DataFrame, int]:
    """The rollup of ``period`` at the grain local calendars of ``tz`` need, and that grain.

    With no period the grain is checked over the calls' own time span (hour slots first; a
    15-minute rollup only when the zone is off whole hours somewhere in it)."""
    if period is not None:
        grain = grain_for(tz, period.start, period.end)
        return engine.rollup(period, as_of=as_of, keys=keys, grain=grain), grain
    hours = engine.rollup(None, as_of=as_of, keys=keys, grain=60)
    if hours.height and grain_for(tz, hours["start_time"].min(), hours["_end_time"].max()) != 60:  # type: ignore[arg-type]
        return engine.rollup(None, as_of=as_of, keys=keys, grain=15), 15
    return hours, 60


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


def _crossing_slots(
    hours: pl.DataFrame, levels: Sequence[tuple[str | None, float]], tz: str
) -> list[dt.datetime]:
    """The slots in which a running monthly spend (total, or one feature's) reaches a level."""
    rows = hours.select(
        "slot", "start_time", "feature", pl.col("cost_usd").fill_null(0.0).alias("_cost")
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
                .agg(pl.col("slot").first())
            )
            found.update(hit["slot"].to_list())
    return sorted(found)


def budget_spend(
    engine: Engine,
    period: Period | None,
    hours: pl.DataFrame,
    grain: int,
    levels: Sequence[tuple[str | None, float]],
    tz: str,
) -> pl.DataFrame:
    """``start_time``, ``feature``, ``cost_usd`` rows for the budget: the rollup's slots, and
    the single calls of the slots where a level is crossed (so the crossing time is exact)."""
    refine = _crossing_slots(hours, levels, tz)
    base = hours.filter(~pl.col("slot").is_in(refine)) if refine else hours
    base = base.select("start_time", "feature", pl.col("cost_usd").cast(pl.Float64))
    if not refine:
        return base
    calls = engine.slot_calls(period, refine, grain)
    return pl.concat([base, calls.cast(base.schema)]).sort("start_time")  # type: ignore[arg-type]


def _budget_status(spend: pl.DataFrame, config: Config, as_of: dt.datetime) -> pl.DataFrame:
    return budget_status_of(spend, config.budget, as_of=as_of, tz=config.timezone)


def _submit(pool: ThreadPoolExecutor, engine: Engine, method: str, *args: Any, **kw: Any) -> Any:
    """``engine.<method>(*args, **kw)`` on a fork of ``engine``, in ``pool``."""
    fork = engine.fork()

    def run() -> Any:
        try:
            return getattr(fork, method)(*args, **kw)
        finally:
            fork.close()

    return pool.submit(run)


def run_jobs_on(
    engine: Engine,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
    jobs: Sequence[str] | None = None,
) -> dict[str, pl.DataFrame]:
    """:func:`run_jobs` on an open engine."""
    wanted = list(JOB_NAMES if jobs is None else jobs)
    unknown = [j for j in wanted if j not in JOB_NAMES]
    if unknown:
        raise ValueError(f"unknown job(s) {unknown}; jobs: {', '.join(JOB_NAMES)}")
    need = set(wanted) | ({"cache_economics", "caching_candidates", "cost_of_failure"}
                          if "audit" in wanted else set())  # fmt: skip
    tz, budget = config.timezone, config.budget
    hours, grain = rollup_at_zone(engine, period, as_of=as_of, tz=tz)
    finish = {
        "cost_breakdown": lambda: cost_breakdown_from_hours(hours, ["feature", "model"]),
        "spend_by_day": lambda: spend_by_day_from_hours(hours, tz=tz),
        "cache_hit_ratio_series": lambda: cache_hit_ratio_series_from_hours(hours),
        "cache_regressions": lambda: cache_regressions_from_hours(hours),
        "retry_amplification": lambda: retry_amplification_from_hours(hours),
        "spike_episodes": lambda: spike_episodes_from_hours(hours),
        "cost_of_failure": lambda: cost_of_failure_from_hours(hours),
    }
    results: dict[str, pl.DataFrame] = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_STATEMENTS) as pool:
        # Longest first, so that the short ones fill in at the end.
        pending = {}
        if "audit" in need:
            pending["audit"] = _submit(pool, engine, "audit_figures", period, hours, config=config)
        if "cache_economics" in need:
            pending["cache_economics"] = _submit(
                pool, engine, "cache_economics", period, hours, by=["feature", "model"]
            )
        if "caching_candidates" in need:
            pending["caching_candidates"] = _submit(
                pool, engine, "caching_candidates", period, hours
            )
        if "latency_percentiles" in need:
            pending["latency_percentiles"] = _submit(
                pool, engine, "latency", period, hours, tz=tz, by=["feature", "model"], every="1d"
            )
        if need & {"error_windows", "error_episodes"}:
            pending["minutes"] = _submit(pool, engine, "error_minutes", period)
        for name, job in finish.items():
            if name in need:
                results[name] = job()
        if need & {"budget_status", "threshold_crossings"}:
            spend = budget_spend(engine, period, hours, grain, budget_levels(config, {}), tz)
            results["budget_status"] = _budget_status(spend, config, as_of)
            results["threshold_crossings"] = (
                threshold_crossings(
                    spend, monthly_usd=budget.monthly_usd, thresholds=budget.thresholds, tz=tz
                )
                if budget.monthly_usd is not None
                else pl.DataFrame()
            )
        done = {name: future.result() for name, future in pending.items()}
    if "minutes" in done:
        results["error_windows"] = error_windows_from_minutes(done["minutes"])
        results["error_episodes"] = error_episodes_from_minutes(done["minutes"])
    for name in ("latency_percentiles", "cache_economics", "caching_candidates"):
        if name in done:
            results[name] = done[name]
    if "audit" in done:
        results["audit"] = audit_from_figures(
            hours, config=config, results=results, figures=done["audit"]
        )
    return {name: results[name] for name in JOB_NAMES if name in wanted}


def run_jobs(
    source: Source,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
    sources: SourceFilter | None = APP_SOURCES,
    jobs: Sequence[str] | None = None,
) -> dict[str, pl.DataFrame]:
    """Every analytics job over ``period`` (None: every call) of ``source``, keyed by job name
    (:data:`JOB_NAMES`; ``jobs`` names a subset).

    Each job runs with its defaults, except where the config is used: budgets, thresholds and
    time zone come from ``config``; ``as_of`` is the budget's moment. ``sources``: whose calls
    (default the app's: developers' Claude Code calls kept apart).
    """
    with open_engine(source, sources=sources) as engine:
        return run_jobs_on(engine, period, config=config, as_of=as_of, jobs=jobs)


def costs_table(
    source: Source,
    period: Period,
    by: Sequence[str],
    *,
    every: str | None = None,
    tz: str = "UTC",
    sources: SourceFilter | None = APP_SOURCES,
) -> pl.DataFrame:
    """The ``costs`` command's table: the breakdown by ``by`` against the period before
    (:func:`~clauditor.analytics.trends.change_table`), or per calendar ``every`` (hour, day,
    week, month) in ``tz`` (:func:`~clauditor.analytics.trends.cost_by_bucket_from_hours`)."""
    by = list(by)
    with open_engine(source, sources=sources) as engine:
        if every:
            hours, _ = rollup_at_zone(engine, period, as_of=period.end, tz=tz, keys=by)
            return cost_by_bucket_from_hours(hours, by, every=every, tz=tz)
        now = engine.rollup(period, as_of=period.end, keys=by)
        before = engine.rollup(period.previous(), as_of=period.previous().end, keys=by)
    now_table, before_table = (cost_breakdown_from_hours(h, by) for h in (now, before))
    return change_table(now_table, before_table, by)


def cache_tables(
    source: Source,
    period: Period,
    by: Sequence[str],
    *,
    candidates: bool = True,
    sources: SourceFilter | None = APP_SOURCES,
) -> tuple[pl.DataFrame, ...]:
    """The ``cache`` command's tables: cache economics by ``by``, then (``candidates``) the
    caching candidates and the hit-ratio regressions."""
    with open_engine(source, sources=sources) as engine:
        hours = engine.rollup(period, as_of=period.end, keys=by)
        tables: tuple[pl.DataFrame, ...] = (engine.cache_economics(period, hours, by=by),)
        if candidates:
            tables += (
                engine.caching_candidates(period, hours),
                cache_regressions_from_hours(hours),
            )
    return tables


def errors_tables(
    source: Source,
    period: Period,
    *,
    window: str = "5m",
    threshold: float = 0.01,
    min_duration: str = "5m",
    min_calls: int = 20,
    sources: SourceFilter | None = APP_SOURCES,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ``errors`` command's tables: error episodes with its options, retry amplification."""
    with open_engine(source, sources=sources) as engine:
        minutes = engine.error_minutes(period)
        hours = engine.rollup(period, as_of=period.end)
    episodes = error_episodes_from_minutes(
        minutes,
        window=window,
        threshold=threshold,
        min_duration=min_duration,
        min_calls=min_calls,
    )
    return episodes, retry_amplification_from_hours(hours)


def error_windows_table(
    source: Source,
    period: Period,
    *,
    window: str = "5m",
    every: str = "1m",
    sources: SourceFilter | None = APP_SOURCES,
) -> pl.DataFrame:
    """Rolling error rates per class over ``window``-long windows starting every ``every``
    (``1h``/``1h``, ``3h``/``1h``, ``1d``/``1h`` ...; ``window`` a whole number of ``every``),
    from the engine's error minutes."""
    with open_engine(source, sources=sources) as engine:
        minutes = engine.error_minutes(period)
    return error_windows_from_minutes(minutes, window=window, every=every)


def latency_table(
    source: Source,
    period: Period,
    by: Sequence[str],
    *,
    every: str | None = "1d",
    tz: str = "UTC",
    sources: SourceFilter | None = APP_SOURCES,
) -> pl.DataFrame:
    """The ``latency`` command's table: percentiles by ``by`` per ``every`` bucket cut in
    ``tz`` (None: the whole period)."""
    if every is not None:
        check_bucket(every)
    with open_engine(source, sources=sources) as engine:
        hours = engine.rollup(period, as_of=period.end, keys=by)
        return engine.latency(period, hours, tz=tz, by=by, every=every)


def budget_table(
    source: Source,
    window: Period,
    *,
    config: Config,
    as_of: dt.datetime,
    sources: SourceFilter | None = APP_SOURCES,
) -> pl.DataFrame:
    """The ``budget`` command's table over ``window`` (the month so far and the forecast's
    look-back before it), with the budgets, thresholds and zone of ``config``."""
    tz = config.timezone
    with open_engine(source, sources=sources) as engine:
        hours, grain = rollup_at_zone(engine, window, as_of=as_of, tz=tz)
        spend = budget_spend(engine, window, hours, grain, budget_levels(config, {}), tz)
    return _budget_status(spend, config, as_of)


def spikes_table(
    source: Source, period: Period, by: str, *, sources: SourceFilter | None = APP_SOURCES
) -> pl.DataFrame:
    """Spike episodes by ``by`` over ``period`` (which must hold the baseline's look-back)."""
    with open_engine(source, sources=sources) as engine:
        hours = engine.rollup(period, as_of=period.end, keys=[by])
    return spike_episodes_from_hours(hours, by=by)


def failures_table(
    source: Source, period: Period, by: Sequence[str], *, sources: SourceFilter | None = APP_SOURCES
) -> pl.DataFrame:
    """The cost of failure by ``by`` over ``period``."""
    with open_engine(source, sources=sources) as engine:
        hours = engine.rollup(period, as_of=period.end, keys=by)
    return cost_of_failure_from_hours(hours, by=list(by))


def audit_table(
    source: Source,
    period: Period | None,
    *,
    config: Config,
    as_of: dt.datetime,
    sources: SourceFilter | None = APP_SOURCES,
) -> pl.DataFrame:
    """The checklist audit of ``period`` (None: every call)."""
    return run_jobs(source, period, config=config, as_of=as_of, sources=sources, jobs=["audit"])[
        "audit"
    ]
