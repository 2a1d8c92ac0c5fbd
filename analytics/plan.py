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
    "hours_on",
    "latency_from_sql",
    "on_aggregates",
    "run_all_jobs",
    "run_all_jobs_on",
    "run_audit",
    "run_budget",
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
