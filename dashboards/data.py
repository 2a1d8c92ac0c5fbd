"""What the report is drawn from, read in as few passes over ``calls`` as the sections allow.

The report must take seconds and stay a few MB whatever the number of calls, so it never holds
more per-call rows than it can afford:

* **Money and tokens are exact, aggregated in DuckDB.** One ``GROUP BY`` over the period and the
  one before it gives calls, the four token counts and priced spend per 15-minute bucket,
  feature, model and (for untagged calls) code location: :attr:`ReportData.rollup`. Every
  headline figure, the spend-over-time chart, the feature x model table, the model mix and the
  untagged spend come from it. Fifteen minutes divides every UTC offset in use, so the rollup
  cuts into calendar days of any zone exactly.
* **The budget's dollars are exact, its crossing times exact to 15 minutes.** The budget job
  reads ``start_time``, ``feature`` and ``cost_usd``; it gets one row per 15 minutes and feature
  from the same rollup (which also covers the budget month and its look-back), holding that
  quarter hour's spend and stamped with its first call's start
  (:attr:`ReportData.budget_calls`). Sums, forecasts and daily series are unchanged by this; a
  threshold crossing is dated to the first call of the quarter hour in which it happened.
* **The per-call jobs see every call of the period up to** ``sample_limit`` **calls**, and above
  that a deterministic sample (``hash(span_id) % k = 0``, about ``sample_limit`` calls):
  :attr:`ReportData.calls` with :attr:`ReportData.sample_every` = ``k``. Rates, ratios and
  percentiles (errors, latency, cache hit ratios, the audit) are estimates from the sample;
  dollar figures of those sections are scaled by ``k`` and the report says so.

The SQL reads a relation named ``calls``: the table in the database file, or (for
:func:`report_data_from_frame`) a Polars frame registered under that name in an in-memory DuckDB,
so both paths aggregate with the same statements.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from clauditor.analytics.costs import APP_SOURCES, NO_KEY, UNTAGGED, restrict_to_sources
from clauditor.analytics.periods import Period
from clauditor.analytics.spend_notes import SpendNotes, spend_notes
from clauditor.pricing import PriceTable, load_price_table, model_key_sql
from clauditor.schema import conform
from clauditor.store import read_connection

__all__ = ["DEFAULT_SAMPLE_LIMIT", "ReportData", "load_report_data", "report_data_from_frame"]

DEFAULT_SAMPLE_LIMIT = 200_000
BUDGET_LOOKBACK_DAYS = 28  # budget_status's default look-back for the run rate

_BUCKET_US = 15 * 60 * 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Keys as clauditor.analytics.costs names them: an empty tag is no tag. ``which`` is NULL for
# rows read only for the budget (its month and look-back reach beyond the two periods).
# Models by their canonical undated id, as everywhere else (clauditor.pricing.normalize_model_id).
_MODEL_KEY = model_key_sql("coalesce(nullif(response_model, ''), nullif(request_model, ''))")
_ROLLUP_SQL = f"""
SELECT
    CASE WHEN start_time >= $cur_start AND start_time < $cur_end THEN 'current'
         WHEN start_time >= $prev_start AND start_time < $prev_end THEN 'previous'
    END AS which,
    start_time < $as_of AS before_as_of,
    epoch_us(start_time) // {_BUCKET_US} AS bucket,
    coalesce(nullif(feature, ''), '{UNTAGGED}') AS feature,
    coalesce({_MODEL_KEY}, '{NO_KEY}') AS model,
    CASE WHEN nullif(feature, '') IS NULL THEN coalesce(nullif(code_location, ''), '{NO_KEY}')
    END AS code_location,
    epoch_us(min(start_time)) AS first_call,
    -- count_tokens calls are free: out of call counts and cost per call, counted apart.
    count(*) FILTER (WHERE coalesce(operation, 'chat') <> 'count_tokens') AS calls,
    count(*) FILTER (WHERE operation = 'count_tokens') AS count_tokens_calls,
    CAST(coalesce(sum(input_tokens), 0) AS BIGINT) AS input_tokens,
    CAST(coalesce(sum(output_tokens), 0) AS BIGINT) AS output_tokens,
    CAST(coalesce(sum(cache_read_input_tokens), 0) AS BIGINT) AS cache_read_input_tokens,
    CAST(coalesce(sum(cache_creation_input_tokens), 0) AS BIGINT) AS cache_creation_input_tokens,
    sum(cost_usd) AS cost_usd,
    count(cost_usd) FILTER (WHERE coalesce(operation, 'chat') <> 'count_tokens') AS priced_calls
FROM calls
WHERE start_time >= $lo AND start_time < $hi
GROUP BY ALL
"""

# attributes and resource (JSON) are left out: no section reads them and they are the widest.
_CALL_COLUMNS = "* EXCLUDE (attributes, resource)"
_NEWEST_SQL = "SELECT epoch_us(max(start_time)) FROM calls WHERE start_time <= $as_of"


@dataclass(frozen=True)
class ReportData:
    """Everything the report sections are drawn from (see the module docstring).

    ``rollup`` (the two periods only) columns: ``which`` (``current``/``previous``), ``bucket``
    (UTC start of the 15 minutes, aware), ``feature``, ``model``, ``code_location`` (untagged
    calls only), ``calls``, the four token counts, ``cost_usd`` (NULL when no call of the row
    is priced), ``priced_calls``. ``calls``: per-call rows of the period (a 1-in-
    ``sample_every`` sample when that is above 1). ``budget_calls``: ``start_time``,
    ``feature``, ``cost_usd`` rows for the budget month and its look-back, one per 15 minutes
    and feature, stamped with the first call's start. ``newest``: the newest span at or before
    ``as_of`` (None: no spans at all). ``notes``: the period's server-tool, assumed-TTL and
    code-execution figures (:mod:`clauditor.analytics.spend_notes`).
    """

    period: Period
    previous: Period
    as_of: dt.datetime
    rollup: pl.DataFrame
    calls: pl.DataFrame
    sample_every: int
    period_calls: int
    budget_calls: pl.DataFrame
    newest: dt.datetime | None
    notes: SpendNotes = SpendNotes()

    @property
    def sampled(self) -> bool:
        """Whether the per-call sections see a sample rather than every call."""
        return self.sample_every > 1


def _exact_crossings(
    con: duckdb.DuckDBPyConnection,
    rows: pl.DataFrame,
    levels: Sequence[tuple[str | None, float]],
    as_of: dt.datetime,
    tz: str,
) -> pl.DataFrame:
    """``rows`` (quarter-hour spend, stamped with their first call) with the quarter hours in
    which a budget level is crossed this month replaced by their calls, so a crossing time is
    the exact call that crossed it, as ``clauditor budget`` reports it. ``levels``: (feature or
    None for the whole account, dollars)."""
    local = as_of.astimezone(ZoneInfo(tz))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = rows.filter(pl.col("start_time") >= month_start.astimezone(dt.UTC)).sort("start_time")
    crossing: set[int] = set()
    for feature, usd in levels:
        scoped = month if feature is None else month.filter(pl.col("feature") == feature)
        running = scoped.with_columns(pl.col("cost_usd").cum_sum().alias("_run"))
        hit = running.filter(pl.col("_run") >= usd).head(1)
        if hit.height:
            crossing.add(int(hit["start_time"][0].timestamp() * 1_000_000) // _BUCKET_US)
    if not crossing:
        return rows
    buckets = ", ".join(str(b) for b in sorted(crossing))
    calls = con.sql(
        "SELECT start_time, nullif(feature, '') AS feature, coalesce(cost_usd, 0.0) AS cost_usd "
        f"FROM calls WHERE start_time < $as_of AND epoch_us(start_time) // {_BUCKET_US} "
        f"IN ({buckets})",
        params={"as_of": as_of},
    ).pl()
    calls = calls.with_columns(pl.col("start_time").dt.convert_time_zone("UTC"))
    kept = rows.filter(~(pl.col("start_time").dt.epoch("us") // _BUCKET_US).is_in(sorted(crossing)))
    return pl.concat([kept, calls.cast(kept.schema)]).sort("start_time")  # type: ignore[arg-type]


def budget_window(as_of: dt.datetime, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC span the budget job needs: the month of ``as_of`` (in ``tz``) and its look-back."""
    local = as_of.astimezone(ZoneInfo(tz))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    lookback = day_start - dt.timedelta(days=BUDGET_LOOKBACK_DAYS + 1)
    return min(month_start, lookback).astimezone(dt.UTC), as_of.astimezone(dt.UTC)


def _from_epoch_us(micros: object) -> dt.datetime | None:
    if micros is None:
        return None
    return _EPOCH + dt.timedelta(microseconds=int(micros))  # type: ignore[call-overload]


def _epoch(column: str) -> pl.Expr:
    return pl.from_epoch(pl.col(column), time_unit="us").dt.replace_time_zone("UTC")


CallLoader = Callable[[int], pl.DataFrame]


def _read(
    con: duckdb.DuckDBPyConnection,
    period: Period,
    as_of: dt.datetime,
    sample_limit: int,
    load_calls: CallLoader,
    prices: PriceTable | None = None,
    budget_levels: Sequence[tuple[str | None, float]] = (),
) -> ReportData:
    """The shared body of both loaders; ``load_calls(k)`` reads the period's calls (1-in-k)."""
    con.execute("SET enable_progress_bar = false").fetchall()
    previous = period.previous()
    budget_start, budget_end = budget_window(as_of, period.tz)
    rows = con.sql(
        _ROLLUP_SQL,
        params={
            "lo": min(previous.start, period.start, budget_start),
            "hi": max(period.end, budget_end),
            "prev_start": previous.start,
            "prev_end": previous.end,
            "cur_start": period.start,
            "cur_end": period.end,
            "as_of": as_of,
        },
    ).pl()
    rows = rows.with_columns(
        pl.from_epoch(pl.col("bucket") * _BUCKET_US, time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("bucket"),
        _epoch("first_call").alias("first_call"),
        pl.col("calls").cast(pl.Int64),
        pl.col("priced_calls").cast(pl.Int64),
    )
    rollup = rows.filter(pl.col("which").is_not_null()).drop("before_as_of", "first_call")
    budget_calls = (
        rows.filter(pl.col("before_as_of") & (pl.col("first_call") >= budget_start))
        .group_by("bucket", "feature")
        .agg(
            pl.col("first_call").min().alias("start_time"),
            pl.col("cost_usd").fill_null(0.0).sum(),
        )
        .with_columns(  # budget_status matches raw feature names; untagged is no feature
            pl.when(pl.col("feature") == UNTAGGED)
            .then(None)
            .otherwise(pl.col("feature"))
            .alias("feature")
        )
        .select("start_time", "feature", "cost_usd")
        .sort("start_time")
    )
    if budget_levels:
        budget_calls = _exact_crossings(con, budget_calls, budget_levels, as_of, period.tz)
    count = int(rollup.filter(pl.col("which") == "current")["calls"].sum() or 0)
    every = max(1, math.ceil(count / sample_limit)) if sample_limit > 0 else 1
    newest = _from_epoch_us(con.execute(_NEWEST_SQL, {"as_of": as_of}).fetchall()[0][0])
    return ReportData(
        period=period,
        previous=previous,
        as_of=as_of,
        rollup=rollup,
        calls=load_calls(every),
        sample_every=every,
        period_calls=count,
        budget_calls=budget_calls,
        newest=newest,
        notes=spend_notes(con, period.start, period.end, prices or load_price_table()),
    )


def _calls_sql(every: int) -> str:
    sample = f" AND hash(span_id) % {int(every)} = 0" if every > 1 else ""
    return (
        f"SELECT {_CALL_COLUMNS} FROM calls "
        f"WHERE start_time >= $start AND start_time < $end{sample}"
    )


def _conformed(frame: pl.DataFrame) -> pl.DataFrame:
    # Back to the full calls schema (JSON columns NULL) with UTC times, as the jobs expect.
    return conform(frame).with_columns(
        [pl.col(c).dt.convert_time_zone("UTC") for c in ("start_time", "end_time")]
    )


def load_report_data(
    db: str | Path,
    period: Period,
    *,
    as_of: dt.datetime,
    sample_limit: int = DEFAULT_SAMPLE_LIMIT,
    prices: PriceTable | None = None,
    budget_levels: Sequence[tuple[str | None, float]] = (),
) -> ReportData:
    """Read what the report of ``period`` needs from the database file ``db`` (read-only).

    ``budget_levels`` ((feature or None, dollars) of every budget threshold) makes the budget
    rows exact where a level is crossed (:func:`clauditor.analytics.plan.budget_levels` gives them
    for a config).

    ``as_of`` (aware) bounds the freshness and budget reads. ``sample_limit`` caps the
    per-call rows read (0: read every call). Raises
    :class:`~clauditor.errors.StoreError` when the file cannot be read.
    """
    with read_connection(db) as con:
        restrict_to_sources(con, APP_SOURCES)  # developers' Claude Code calls are kept apart

        def calls(every: int) -> pl.DataFrame:
            params = {"start": period.start, "end": period.end}
            return _conformed(con.sql(_calls_sql(every), params=params).pl())

        return _read(con, period, as_of, sample_limit, calls, prices, budget_levels)


def report_data_from_frame(
    calls: pl.DataFrame,
    period: Period,
    *,
    as_of: dt.datetime,
    sample_limit: int = 0,
) -> ReportData:
    """:class:`ReportData` from an in-memory frame of calls (any subset of the columns).

    The frame may hold more than ``period``: the previous period and the budget month are read
    from it too. Missing columns are NULL. Nothing is written anywhere.
    """
    frame = conform(calls)  # noqa: F841  (DuckDB reads the local by name below)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        con.register("calls", frame)

        def load(every: int) -> pl.DataFrame:
            params = {"start": period.start, "end": period.end}
            return _conformed(con.sql(_calls_sql(every), params=params).pl())

        return _read(con, period, as_of, sample_limit, load)
    finally:
        con.close()
