"""Latency percentiles: how long calls take and how long users wait for the first token.

``duration_ms`` is the whole call (retries and stream reading included); ``ttft_ms`` exists
only for streamed calls. By default only successful ``chat`` calls count: a failed call's
duration measures the failure (often a client timeout), a ``count_tokens`` call is not a
generation, and a Batch API result's span measures fetching the result, not generating it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from clauditor.analytics.costs import with_group_keys

__all__ = ["PERCENTILES", "check_bucket", "latency_percentiles"]

PERCENTILES = (0.5, 0.95, 0.99)
_BUCKET = re.compile(r"[1-9][0-9]*(?:h|d|w|mo)")


def check_bucket(every: str) -> None:
    """Raise :class:`ValueError` unless ``every`` is a latency bucket (``1h``, ``6h``, ``1d``,
    ``1w``, ``1mo``: a whole number and a unit)."""
    if not _BUCKET.fullmatch(every):
        raise ValueError(
            f"--every {every!r} is not a bucket; use a whole number and a unit: 1h, 6h, 1d, 1w, 1mo"
        )


def latency_percentiles(
    calls: pl.DataFrame,
    *,
    by: Sequence[str] = ("feature", "model"),
    every: str | None = "1d",
    tz: str = "UTC",
    include_errors: bool = False,
) -> pl.DataFrame:
    """p50/p95/p99 of ``duration_ms`` and ``ttft_ms`` per group of ``by`` keys and per ``every``.

    ``by`` takes the keys of :func:`~clauditor.analytics.costs.cost_breakdown`. ``every`` is a
    Polars duration (``1h``, ``1d``, ``1w``) cut in the calendar of ``tz``; None gives one row
    per group for the whole frame. Columns: ``period`` (the bucket start, in ``tz``; absent
    when ``every`` is None), ``*by``, ``calls``, ``duration_p50_ms``, ``duration_p95_ms``,
    ``duration_p99_ms``, ``streamed_calls``, ``ttft_p50_ms``, ``ttft_p95_ms``, ``ttft_p99_ms``
    (NULL without streamed calls). Percentiles interpolate linearly between observations.
    """
    by = list(by)
    if every is not None:
        check_bucket(every)
    lf = calls.lazy()
    keep = pl.col("operation").fill_null("chat") == "chat"
    if not include_errors:
        keep = keep & (pl.col("status").fill_null("ok") == "ok")
    lf = with_group_keys(lf.filter(keep), by)
    keys = list(by)
    if every is not None:
        lf = lf.with_columns(
            pl.col("start_time").dt.convert_time_zone(tz).dt.truncate(every).alias("period")
        )
        keys = ["period", *by]
    aggs = [pl.len().cast(pl.Int64).alias("calls")]
    for q in PERCENTILES:
        aggs.append(
            pl.col("duration_ms").quantile(q, "linear").alias(f"duration_p{round(q * 100)}_ms")
        )
    aggs.append(pl.col("ttft_ms").count().cast(pl.Int64).alias("streamed_calls"))
    for q in PERCENTILES:
        aggs.append(pl.col("ttft_ms").quantile(q, "linear").alias(f"ttft_p{round(q * 100)}_ms"))
    grouped = lf.group_by(keys).agg(aggs) if keys else lf.select(aggs)
    grouped = grouped.with_columns([pl.col(k).cast(pl.String) for k in by])
    return grouped.sort(keys or ["calls"]).collect()
