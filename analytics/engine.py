"""The engine seam: the few reductions of the calls every analytics job is finished from.

A *source* is a DuckDB file, a Parquet dataset folder (:mod:`clauditor.dataset`), or a Polars
frame of calls (registered as the table ``calls``). :func:`open_engine` opens one as an
:class:`Engine`; the jobs never read a call themselves, only what these reductions return:

=====================  =====================================================================
``rollup``             counts and sums per slot of a grain (an hour, or 15 minutes for zones
                       off whole hours), side of ``as_of`` and raw key columns
                       (:func:`clauditor.analytics.rollup.rollup_on`).
``error_minutes``      calls per minute and (status, error type, HTTP status).
``latency``            exact ``quantile_cont`` of duration and time to first token per local
                       bucket and group keys (the linear interpolation Polars uses).
``cache_economics``    the per-call cache sequence (next read after each write, previous
                       cached call) summed per raw key, finished with the rollup's sums.
``caching_candidates`` the 10th percentile of input and the 5-minute reuse buckets.
``audit_figures``      the audit's workload medians and p99, conversations, Opus repriced.
``slot_calls``         the single calls of a few slots (where a running budget total must be
                       exact to the call).
``unpriced_runs``      runs of calls without a price per model, calls at most a gap apart
                       (:func:`clauditor.analytics.rollup.unpriced_runs_on`).
=====================  =====================================================================

:class:`DuckDBEngine` implements them on a DuckDB connection; a second engine (ClickHouse)
implements the same methods and nothing else: the finishing functions and
:mod:`clauditor.analytics.runner` are engine-agnostic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl

from clauditor.analytics.audit_figures import audit_figures
from clauditor.analytics.cache_sequence import cache_economics_sql, caching_candidates_from
from clauditor.analytics.costs import APP_SOURCES, SourceFilter, restrict_to_sources
from clauditor.analytics.periods import Period
from clauditor.analytics.rollup import (
    RAW_HASH_SQL,
    bucket_lookup,
    error_minutes_on,
    group_keys_sql,
    model_mapping,
    raw_keys,
    raw_names,
    rollup_on,
    slot_calls_on,
    unpriced_runs_on,
    where_sql,
)
from clauditor.config import Config
from clauditor.schema import CALLS_SCHEMA
from clauditor.store import read_connection

__all__ = [
    "CLICKHOUSE_SCHEMES",
    "DuckDBEngine",
    "Engine",
    "Source",
    "is_clickhouse",
    "open_engine",
]

Source = str | Path | pl.DataFrame


class Engine(Protocol):
    """The reductions of one source's calls (see the module docstring).

    Every method reads the calls of ``period`` (None: every call) that the engine admits (its
    source filter) and returns a small Polars frame; ``hours`` is the engine's own
    :meth:`rollup` of the same period.
    """

    def rollup(
        self,
        period: Period | None,
        *,
        as_of: dt.datetime,
        keys: Sequence[str] = (),
        grain: int = 60,
    ) -> pl.DataFrame: ...

    def error_minutes(self, period: Period | None) -> pl.DataFrame: ...

    def latency(
        self,
        period: Period | None,
        hours: pl.DataFrame,
        *,
        tz: str,
        by: Sequence[str],
        every: str | None,
    ) -> pl.DataFrame: ...

    def cache_economics(
        self, period: Period | None, hours: pl.DataFrame, *, by: Sequence[str]
    ) -> pl.DataFrame: ...

    def caching_candidates(self, period: Period | None, hours: pl.DataFrame) -> pl.DataFrame: ...

    def audit_figures(
        self, period: Period | None, hours: pl.DataFrame, *, config: Config | None
    ) -> dict[str, Any]: ...

    def slot_calls(
        self, period: Period | None, slots: Sequence[dt.datetime], grain: int
    ) -> pl.DataFrame: ...

    def unpriced_runs(self, period: Period | None, gap: dt.timedelta) -> pl.DataFrame: ...

    def fork(self) -> Engine:
        """An engine over the same calls for another thread (closed by :meth:`close`)."""
        ...

    def close(self) -> None: ...


class DuckDBEngine:
    """:class:`Engine` on an open DuckDB connection whose ``calls`` are the source's (already
    restricted to the admitted sources); sets the session time zone to UTC."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        con.execute("SET TimeZone = 'UTC'").fetchall()

    def rollup(
        self,
        period: Period | None,
        *,
        as_of: dt.datetime,
        keys: Sequence[str] = (),
        grain: int = 60,
    ) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.rollup_on`."""
        return rollup_on(self.con, period, as_of, keys=keys, grain=grain)

    def error_minutes(self, period: Period | None) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.error_minutes_on`."""
        return error_minutes_on(self.con, period)

    def latency(
        self,
        period: Period | None,
        hours: pl.DataFrame,
        *,
        tz: str,
        by: Sequence[str],
        every: str | None,
    ) -> pl.DataFrame:
        """:func:`latency_on`."""
        return latency_on(self.con, period, hours, tz=tz, by=by, every=every)

    def cache_economics(
        self, period: Period | None, hours: pl.DataFrame, *, by: Sequence[str]
    ) -> pl.DataFrame:
        """:func:`clauditor.analytics.cache_sequence.cache_economics_sql`."""
        return cache_economics_sql(self.con, period, hours, by=list(by))

    def caching_candidates(self, period: Period | None, hours: pl.DataFrame) -> pl.DataFrame:
        """:func:`clauditor.analytics.cache_sequence.caching_candidates_from`."""
        return caching_candidates_from(self.con, period, hours)

    def audit_figures(
        self, period: Period | None, hours: pl.DataFrame, *, config: Config | None
    ) -> dict[str, Any]:
        """:func:`clauditor.analytics.audit_figures.audit_figures`."""
        return audit_figures(self.con, period, hours, config=config)

    def slot_calls(
        self, period: Period | None, slots: Sequence[dt.datetime], grain: int
    ) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.slot_calls_on`."""
        return slot_calls_on(self.con, period, slots, grain)

    def unpriced_runs(self, period: Period | None, gap: dt.timedelta) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.unpriced_runs_on`."""
        return unpriced_runs_on(self.con, period, gap)

    def fork(self) -> DuckDBEngine:
        """An engine on a fresh cursor of the connection: a session of its own, shown the same
        calls (the temporary view of :func:`~clauditor.analytics.costs.restrict_to_sources`
        is repeated on it)."""
        views = self.con.execute(
            "SELECT sql FROM duckdb_views() WHERE temporary AND view_name = 'calls'"
        ).fetchall()
        cursor = self.con.cursor()
        for (view,) in views:
            cursor.execute(view).fetchall()
        return DuckDBEngine(cursor)

    def close(self) -> None:
        """Close the connection (or cursor)."""
        self.con.close()


def _frame_connection(calls: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose table ``calls`` holds ``calls`` (missing columns NULL, typed as
    in :data:`~clauditor.schema.CALLS_SCHEMA`; Categorical columns as strings; naive times
    read as UTC)."""
    columns = []
    for name, dtype in CALLS_SCHEMA.items():
        if name not in calls.columns:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
        elif name == "start_time":
            start = pl.col(name)
            if getattr(calls.schema[name], "time_zone", None) is None:
                start = start.dt.replace_time_zone("UTC")
            columns.append(start.dt.convert_time_zone("UTC").alias(name))
        else:
            columns.append(pl.col(name).cast(dtype))
    frame = calls.select(columns)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'").fetchall()
    con.register("_frame", frame.to_arrow())
    con.execute("CREATE TABLE calls AS SELECT * FROM _frame").fetchall()
    con.unregister("_frame")
    return con


# ``--db`` values that name a ClickHouse server or an embedded chDB folder, not a file.
CLICKHOUSE_SCHEMES = ("clickhouse://", "clickhouse+http://", "chdb://")


def is_clickhouse(source: Source) -> bool:
    """Whether ``source`` is a ClickHouse URL (``clickhouse://...`` or ``chdb://...``)."""
    return isinstance(source, str) and source.lower().startswith(CLICKHOUSE_SCHEMES)


def _empty_engine() -> AbstractContextManager[Engine]:
    """DuckDB's engine over no calls: the output schemas another engine's frames take."""
    return open_engine(pl.DataFrame(schema=CALLS_SCHEMA), sources=None)


@contextmanager
def open_engine(source: Source, *, sources: SourceFilter | None = APP_SOURCES) -> Iterator[Engine]:
    """The :class:`Engine` of ``source`` (a DuckDB file, opened read-only; a Parquet dataset
    folder; a frame of calls; or a ClickHouse URL, :func:`is_clickhouse`: the
    :class:`~clauditor.clickhouse.engine.ClickHouseEngine` of its ``calls``), showing only the
    calls of ``sources`` (default the app's: developers' Claude Code calls kept apart; None:
    every call)."""
    if is_clickhouse(source):
        from clauditor.clickhouse import connect
        from clauditor.clickhouse.engine import ClickHouseEngine

        engine = ClickHouseEngine(
            connect(str(source)), sources=sources, owns=True, empty=_empty_engine
        )
        try:
            yield engine
        finally:
            engine.close()
        return
    if isinstance(source, pl.DataFrame):
        con = _frame_connection(source)
        try:
            restrict_to_sources(con, sources)
            yield DuckDBEngine(con)
        finally:
            con.close()
        return
    with read_connection(source) as con:
        restrict_to_sources(con, sources)
        yield DuckDBEngine(con)


_LATENCY_SQL = """
SELECT {bucket} AS _b, {keys}, count(*) AS calls,
    quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS _d, count(ttft_ms) AS streamed_calls,
    quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS _t
FROM calls{where} GROUP BY ALL
"""

_KEYED_LATENCY_SQL = """
SELECT {outer}count(*) AS calls,
    quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS _d, count(ttft_ms) AS streamed_calls,
    quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS _t
FROM (SELECT {bucket} AS _b, {keys}duration_ms, ttft_ms FROM calls{where}){group}
"""


def latency_on(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    *,
    tz: str = "UTC",
    by: Sequence[str] = ("feature", "model"),
    every: str | None = "1d",
) -> pl.DataFrame:
    """p50/p95/p99 of duration and time to first token of the successful chat calls of
    ``period`` by the group keys ``by`` and per ``every`` bucket cut in ``tz`` (None: the whole
    period), computed by DuckDB; the columns listed in :mod:`clauditor.analytics.latency`.
    ``hours`` is the rollup of the same calls (it names the groups and bounds the buckets)."""
    by = list(by)
    subset = (pl.col("operation").fill_null("chat") == "chat") & (
        pl.col("status").fill_null("ok") == "ok"
    )
    where, params = where_sql(
        period, "coalesce(operation, 'chat') = 'chat' AND coalesce(status, 'ok') = 'ok'"
    )
    buckets = None
    bucket = "0"
    if every is not None:
        first = hours["start_time"].min() if hours.height else None
        last = hours["_end_time"].max() if hours.height else None
        bucket, lookup, buckets = bucket_lookup(tz, every, first, last)  # type: ignore[arg-type]
        params |= lookup
    mapping = raw_keys(hours, subset) if by == ["feature", "model"] else None
    if mapping is not None:  # group on the raw columns' hash, name the groups afterwards
        sql = _LATENCY_SQL.format(bucket=bucket, keys=f"{RAW_HASH_SQL} AS _raw", where=where)
        names = raw_names(con, hours).select(
            "_raw", pl.col("fkey").alias("feature"), pl.col("mkey").alias("model")
        )
        out = con.sql(sql, params=params).pl().with_columns(pl.col("_raw").cast(pl.UInt64))
        out = out.join(names, on="_raw", how="left")
    else:
        ids, keys = model_mapping(hours)
        groups = [*(["_b"] if every is not None else []), *by]
        sql = _KEYED_LATENCY_SQL.format(
            outer="".join(f"{g}, " for g in groups),
            bucket=bucket,
            keys=f"{group_keys_sql(ids, by)}, " if by else "",
            where=where,
            group=" GROUP BY " + ", ".join(groups) if groups else "",
        )
        if "model" in by:
            params |= {"ids": ids, "keys": keys}
        out = con.sql(sql, params=params).pl()
    names_q = ("p50", "p95", "p99")
    out = out.with_columns(
        pl.col("calls", "streamed_calls").cast(pl.Int64),
        *[pl.col("_d").list.get(i).alias(f"duration_{n}_ms") for i, n in enumerate(names_q)],
        *[pl.col("_t").list.get(i).alias(f"ttft_{n}_ms") for i, n in enumerate(names_q)],
        *[pl.col(k).cast(pl.String) for k in by],
    )
    if buckets is not None:
        out = out.with_columns(pl.col("_b").cast(pl.Int64)).join(buckets, on="_b", how="left")
    keys_out = [*(["period"] if every is not None else []), *by]
    columns = [
        *keys_out,
        "calls",
        *[f"duration_{n}_ms" for n in names_q],
        "streamed_calls",
        *[f"ttft_{n}_ms" for n in names_q],
    ]
    return out.select(columns).sort(keys_out or ["calls"])
