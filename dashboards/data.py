"""What the report is drawn from: every section's figures, computed exactly by the analytics jobs.

The report opens the source as an engine (:func:`~clauditor.analytics.engine.open_engine`) and
finishes the engine's reductions with the job modules' functions, as the job commands do, so each
of its figures equals what the command says, at any number of calls, and it never holds per-call
rows:

* the hour rollup of the period gives the feature x model table, spend, calls and tokens
  (``clauditor costs --by feature,model``), the model mix, untagged spend per code location, the
  hit-ratio series and regressions, spend spikes, the cost of failure (``clauditor failures``)
  and, with the engine's cache and audit reductions, cache economics and candidates
  (``clauditor cache``) and the checklist (``clauditor audit``); the rollup of the period before
  gives the change;
* the engine's error minutes give the error windows (at the report's bucket), the episodes
  (``clauditor errors``) and the error rate;
* the engine's quantiles give the latency tables (``clauditor latency``);
* the budget reads the month so far and 35 days before it, as ``clauditor budget`` does
  (:func:`~clauditor.analytics.runner.budget_spend`: slot sums, and the calls themselves where a
  threshold is crossed, so crossing times are exact).

Spend per local day and the budget read the rollup at the zone's grain
(:func:`~clauditor.analytics.runner.rollup_at_zone`: whole hours in a zone a whole number of
hours from UTC, 15 minutes in the others): one path, a finer grain.

The error rate is failed calls over calls of the period, ``count_tokens`` calls left out (they are
free and not generations), as in the error windows. This module is the only one of
:mod:`clauditor.dashboards` that calls the analytics jobs. The spend notes and the newest span's
time are read on the DuckDB engine's connection (they are not engine reductions yet).

:func:`report_data_from_frame` opens a Polars frame of calls the same way (registered as
``calls`` in an in-memory DuckDB). :func:`load_digest_figures` reads the daily digest's figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from clauditor.analytics.audit_figures import audit_from_figures
from clauditor.analytics.budget import budget_status_of, threshold_crossings
from clauditor.analytics.cache import (
    cache_hit_ratio_series_from_hours,
    cache_regressions_from_hours,
)
from clauditor.analytics.costs import (
    APP_SOURCES,
    NO_KEY,
    UNTAGGED,
    SourceFilter,
    cost_breakdown_from_hours,
    free_call_expr,
    spend_by_day_from_hours,
    with_group_keys,
)
from clauditor.analytics.engine import DuckDBEngine, Source, open_engine
from clauditor.analytics.errors import (
    error_episodes_from_minutes,
    error_windows_from_minutes,
    failed_expr,
)
from clauditor.analytics.failure import cost_of_failure_from_hours
from clauditor.analytics.periods import Period, resolve_period
from clauditor.analytics.runner import budget_levels, budget_spend, rollup_at_zone
from clauditor.analytics.spend_notes import SpendNotes, spend_notes
from clauditor.analytics.spikes import hourly_spend_from_hours, spike_episodes_from_hours
from clauditor.analytics.trends import change_table
from clauditor.config import Config
from clauditor.pricing import PriceTable
from clauditor.schema import conform

__all__ = [
    "ERROR_THRESHOLD",
    "UNTAGGED",
    "DigestFigures",
    "ReportData",
    "load_digest_figures",
    "load_report_data",
    "report_data_from_frame",
]

# The error rate above which a sustained stretch is an episode (``clauditor errors``' default).
ERROR_THRESHOLD = 0.01
# The budget's window: the month so far and the forecast's look-back before it (``budget``).
BUDGET_HISTORY = dt.timedelta(days=35)

_NEWEST_SQL = "SELECT epoch_us(max(start_time)) FROM calls WHERE start_time <= $as_of"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ReportData:
    """Everything the report sections are drawn from (see the module docstring); plain frames.

    ``breakdown``/``previous_breakdown``: :func:`~clauditor.analytics.costs.cost_breakdown` by
    feature and model of the period and of the one before it. ``untagged``: ``code_location``,
    ``calls``, ``cost_usd`` of the untagged calls. ``daily``: spend per local day and feature.
    ``budget``: :func:`~clauditor.analytics.budget.budget_status` at ``as_of``; ``month_spend``:
    the month's spend rows (``start_time``, ``feature``, ``cost_usd``) for the burn-up;
    ``crossings``: the whole account's thresholds crossed this month (``threshold``,
    ``crossed_at``, ``spent_usd``). ``cache_every``/``error_every``: the buckets of the series.
    ``newest``: the newest span at or before ``as_of`` (None: no spans at all).
    """

    period: Period
    previous: Period
    as_of: dt.datetime
    newest: dt.datetime | None
    breakdown: pl.DataFrame
    previous_breakdown: pl.DataFrame
    untagged: pl.DataFrame
    daily: pl.DataFrame
    budget: pl.DataFrame
    month_spend: pl.DataFrame
    crossings: pl.DataFrame
    cache_every: str
    cache_series: pl.DataFrame
    cache_regressions: pl.DataFrame
    cache_economics: pl.DataFrame
    caching_candidates: pl.DataFrame
    error_every: str
    error_windows: pl.DataFrame
    error_episodes: pl.DataFrame
    error_rate: float
    latency_daily: pl.DataFrame
    latency_features: pl.DataFrame
    spikes: pl.DataFrame
    spike_hours: pl.DataFrame
    failure: pl.DataFrame
    audit: pl.DataFrame
    notes: SpendNotes = SpendNotes()

    @property
    def calls(self) -> int:
        """Calls of the period (``count_tokens`` calls apart, as ``clauditor costs`` counts)."""
        return int(self.breakdown["calls"].sum() or 0)


def _from_epoch_us(micros: object) -> dt.datetime | None:
    if micros is None:
        return None
    return _EPOCH + dt.timedelta(microseconds=int(micros))  # type: ignore[call-overload]


def _untagged(hours: pl.DataFrame) -> pl.DataFrame:
    """Calls and spend of the untagged calls per code location (``_location`` of the rows)."""
    rows = with_group_keys(hours, ["feature"]).filter(pl.col("feature") == UNTAGGED)
    return (
        rows.group_by(pl.col("_location").fill_null(NO_KEY).cast(pl.String).alias("code_location"))
        .agg(
            pl.col("calls").filter(~free_call_expr()).sum().cast(pl.Int64),
            pl.col("cost_usd").sum(),
        )
        .collect()
    )


def _budget(
    engine: DuckDBEngine, config: Config, as_of: dt.datetime, tz: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``clauditor budget`` at ``as_of``, the month's spend rows and its account crossings."""
    month = resolve_period("mtd", as_of=as_of, tz=tz)
    window = Period(month.start - BUDGET_HISTORY, month.end, month.label, tz)
    rows, grain = rollup_at_zone(engine, window, as_of=as_of, tz=tz)
    spend = budget_spend(engine, window, rows, grain, budget_levels(config, {}), tz)
    status = budget_status_of(spend, config.budget, as_of=month.end, tz=tz)
    in_month = spend.filter(pl.col("start_time") >= month.start).sort("start_time")
    crossings = pl.DataFrame(
        schema={"threshold": pl.Float64, "crossed_at": pl.Datetime("us", "UTC"),
                "spent_usd": pl.Float64}
    )  # fmt: skip
    if config.budget.monthly_usd:
        found = threshold_crossings(
            in_month,
            monthly_usd=config.budget.monthly_usd,
            thresholds=config.budget.thresholds,
            tz=tz,
        )
        if found.height:
            crossings = found.select("threshold", "crossed_at", "spent_usd")
    return status, in_month, crossings


def _read(
    engine: DuckDBEngine,
    period: Period,
    as_of: dt.datetime,
    config: Config,
    prices: PriceTable | None = None,
) -> ReportData:
    """The shared body of both loaders, on an open engine."""
    engine.con.execute("SET enable_progress_bar = false").fetchall()
    tz = period.tz
    previous = period.previous()
    local, grain = rollup_at_zone(engine, period, as_of=period.end, tz=tz)
    hours = local if grain == 60 else engine.rollup(period, as_of=period.end)
    status, month_spend, crossings = _budget(engine, config, as_of, tz)

    days = period.duration / dt.timedelta(days=1)
    # Hourly rates over a month are mostly the noise of quiet night hours; 3 h buckets keep a
    # 45-minute storm visible while smoothing that out.
    error_every = "1h" if days <= 8 else "3h" if days <= 40 else "1d"
    cache_every = "1h" if days <= 8 else "6h"
    minutes_frame = engine.error_minutes(period)
    failed = minutes_frame.filter(failed_expr())["calls"].sum() or 0
    total = minutes_frame["calls"].sum() or 0

    economics = engine.cache_economics(period, hours, by=["feature"])
    candidates = engine.caching_candidates(period, hours)
    failure = cost_of_failure_from_hours(hours)
    # The audit sums the rows of cache_economics and cost_of_failure, whatever their keys.
    results = {
        "cache_economics": economics,
        "caching_candidates": candidates,
        "cost_of_failure": failure,
    }
    newest = engine.con.execute(_NEWEST_SQL, {"as_of": as_of}).fetchall()[0][0]
    return ReportData(
        period=period,
        previous=previous,
        as_of=as_of,
        newest=_from_epoch_us(newest),
        breakdown=cost_breakdown_from_hours(hours, ["feature", "model"]),
        previous_breakdown=cost_breakdown_from_hours(
            engine.rollup(previous, as_of=previous.end), ["feature", "model"]
        ),
        untagged=_untagged(hours),
        daily=spend_by_day_from_hours(local, tz=tz),
        budget=status,
        month_spend=month_spend,
        crossings=crossings,
        cache_every=cache_every,
        cache_series=cache_hit_ratio_series_from_hours(hours, every=cache_every),
        cache_regressions=cache_regressions_from_hours(hours),
        cache_economics=economics,
        caching_candidates=candidates,
        error_every=error_every,
        error_windows=error_windows_from_minutes(
            minutes_frame, window=error_every, every=error_every
        ),
        error_episodes=error_episodes_from_minutes(minutes_frame, threshold=ERROR_THRESHOLD),
        error_rate=float(failed) / float(total) if total else 0.0,
        latency_daily=engine.latency(period, hours, tz=tz, by=[], every="1d"),
        latency_features=engine.latency(period, hours, tz=tz, by=["feature"], every=None),
        spikes=spike_episodes_from_hours(hours),
        spike_hours=hourly_spend_from_hours(hours, by="feature"),
        failure=failure,
        audit=audit_from_figures(
            hours,
            config=config,
            results=results,
            figures=engine.audit_figures(period, hours, config=config),
        ),
        notes=spend_notes(engine.con, period.start, period.end, prices or config.price_table()),
    )


def _load(
    source: Source,
    period: Period,
    as_of: dt.datetime,
    config: Config | None,
    prices: PriceTable | None = None,
    *,
    sources: SourceFilter | None = APP_SOURCES,
) -> ReportData:
    with open_engine(source, sources=sources) as engine:
        return _read(engine, period, as_of, config or Config(), prices)


def load_report_data(
    db: str | Path,
    period: Period,
    *,
    as_of: dt.datetime,
    config: Config | None = None,
    prices: PriceTable | None = None,
) -> ReportData:
    """Read what the report of ``period`` needs from the database file ``db`` (read-only).

    ``config`` gives the budgets, thresholds and checklist settings (default: none);
    ``as_of`` (aware) bounds the freshness and budget reads; ``prices`` (default: the
    config's) prices the spend notes. Developers' Claude Code calls are kept apart, as in
    every job command. Raises :class:`~clauditor.errors.StoreError` when the file cannot be
    read.
    """
    return _load(db, period, as_of, config, prices)


def report_data_from_frame(
    calls: pl.DataFrame,
    period: Period,
    *,
    as_of: dt.datetime,
    config: Config | None = None,
) -> ReportData:
    """:class:`ReportData` from an in-memory frame of calls (any subset of the columns).

    The frame may hold more than ``period``: the previous period and the budget month are read
    from it too. Missing columns are NULL. Every call counts (no source filter). Nothing is
    written anywhere.
    """
    return _load(conform(calls), period, as_of, config, sources=None)


@dataclass(frozen=True)
class DigestFigures:
    """The daily digest's figures: ``clauditor costs --by feature`` of the day, the day before
    and the same weekday a week earlier, ``--by model`` of the day, the day's change against
    the day before (:func:`~clauditor.analytics.trends.change_table`) and ``clauditor
    budget`` at ``as_of``."""

    features: pl.DataFrame
    features_before: pl.DataFrame
    features_week: pl.DataFrame
    models: pl.DataFrame
    change: pl.DataFrame
    budget: pl.DataFrame


def load_digest_figures(
    db: str | Path,
    config: Config,
    *,
    day: Period,
    before: Period,
    week: Period,
    as_of: dt.datetime,
) -> DigestFigures:
    """:class:`DigestFigures` from the database ``db`` (read-only, the app's calls)."""
    with open_engine(db, sources=APP_SOURCES) as engine:
        hours = engine.rollup(day, as_of=day.end)
        features = cost_breakdown_from_hours(hours, ["feature"])
        before_hours = engine.rollup(before, as_of=before.end)
        features_before = cost_breakdown_from_hours(before_hours, ["feature"])
        week_hours = engine.rollup(week, as_of=week.end)
        return DigestFigures(
            features=features,
            features_before=features_before,
            features_week=cost_breakdown_from_hours(week_hours, ["feature"]),
            models=cost_breakdown_from_hours(hours, ["model"]),
            change=change_table(features, features_before, ["feature"]),
            budget=_budget(engine, config, as_of, config.timezone)[0],
        )
