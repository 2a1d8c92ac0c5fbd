"""Cost over time and against the previous period (issue 5, item 1), finished from rollups.

Built on :func:`clauditor.analytics.costs.cost_breakdown_from_hours`, so the group keys, the
``(untagged)`` and ``(none)`` labels and the NULL-for-unpriced rule are the same everywhere.

* :func:`cost_by_bucket_from_hours` splits a period into hours, days, weeks or months (calendar
  buckets in the configured time zone; weeks start on Monday) and breaks each bucket down by
  the keys. Columns: ``bucket`` (the bucket's start, a datetime in the zone), then the
  breakdown's columns, with ``share`` taken within each bucket; sorted by bucket, then cost.
* :func:`change_table` puts a period next to the one before it: ``previous_cost_usd`` and
  ``change`` (current / previous - 1; NULL when the group had no priced spend before, so "new"
  spend is never shown as an infinite increase; groups that spent only before appear with zero
  calls and ``change`` -1).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from clauditor.analytics.costs import cost_breakdown_from_hours

__all__ = ["BUCKETS", "change_table", "cost_by_bucket_from_hours"]

# CLI names of the buckets and the Polars calendar duration each one truncates to.
BUCKETS = {"hour": "1h", "day": "1d", "week": "1w", "month": "1mo"}


def cost_by_bucket_from_hours(
    hours: pl.DataFrame, by: Sequence[str], *, every: str = "day", tz: str = "UTC"
) -> pl.DataFrame:
    """The breakdown by ``by`` per calendar ``every`` (hour, day, week, month) in ``tz``, from a
    rollup at the grain of ``tz`` (:func:`clauditor.analytics.rollup.grain_for`: no slot
    straddles two local buckets)."""
    if every not in BUCKETS:
        raise ValueError(f"unknown bucket {every!r}; use one of: {', '.join(BUCKETS)}")
    dtype = pl.Datetime("us", tz)
    if hours.height == 0:
        empty = cost_breakdown_from_hours(hours, by).clear()
        return empty.select(pl.lit(None, dtype=dtype).alias("bucket"), pl.all())
    bucketed = hours.with_columns(
        pl.col("slot").dt.convert_time_zone(tz).dt.truncate(BUCKETS[every]).alias("bucket")
    )
    # One breakdown per bucket (a loop over buckets, never over calls): shares are per bucket.
    parts = [
        cost_breakdown_from_hours(group, by).select(
            pl.lit(bucket, dtype=dtype).alias("bucket"), pl.all()
        )
        for (bucket,), group in bucketed.sort("slot").group_by("bucket", maintain_order=True)
    ]
    return pl.concat(parts, how="vertical").sort("bucket", maintain_order=True)


def change_table(now: pl.DataFrame, before: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """The breakdown ``now`` with ``previous_cost_usd`` and ``change`` against ``before`` (the
    breakdowns of a period and of the one before it, by the same keys ``by``)."""
    before = before.select(*by, pl.col("cost_usd").alias("previous_cost_usd"))
    if not by:
        joined = now.with_columns(before.get_column("previous_cost_usd"))
    else:
        joined = now.join(before, on=list(by), how="full", coalesce=True)
    filled = joined.with_columns(
        pl.col("calls").fill_null(0),
        pl.col("unpriced_calls").fill_null(0),
        *[
            pl.col(c).fill_null(0)
            for c in ("input_tokens", "output_tokens", "web_searches", "count_tokens_calls")
        ],
    )
    change = (
        pl.when(pl.col("previous_cost_usd") > 0)
        .then(pl.col("cost_usd").fill_null(0.0) / pl.col("previous_cost_usd") - 1.0)
        .otherwise(None)
    )
    return filled.with_columns(change.alias("change")).sort(
        ["cost_usd", "previous_cost_usd"], descending=True, nulls_last=True
    )
