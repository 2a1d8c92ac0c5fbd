"""Cache economics: is prompt caching paying off, where is it wasted, where is it missing.

Token meanings follow the ``calls`` table: ``input_tokens`` is the UNCACHED input, cache reads
and writes are counted apart, so the hit ratio is ``read / (input + read + write)``.

Dollars come from each call's own rates (the ``rate_*`` columns pricing stored: the rates of
the call's rate card after its tier, fast mode, batch discount and regional multipliers), so a
model whose cache reads cost 0.05x input is judged at 0.05x, not at a global multiplier. Per
call, with ``in``, ``read``, ``5m`` and ``1h`` its rates per token:

* saved = what the read tokens would have cost uncached minus what they cost (``in - read``
  each), minus the write premium (``5m - in`` per 5-minute write token, ``1h - in`` per 1-hour
  one); * a write is *wasted* when the same feature and model make no cache read within the
  write's TTL after it (5 minutes, or 1 hour for 1-hour writes); its premium is the wasted
  money. The telemetry does not say which prefix a read hit, so this is an estimate from the
  sequence of reads and writes: a read by another conversation of the same feature counts as a
  reuse; * the 1h-vs-5m verdict replays the feature's cached calls under each TTL: a call's
  cached prefix is a write (at ``5m`` or ``1h``) when the previous cached call of the feature
  and model is older than the TTL, a read (at ``read``) otherwise. 1h wins when reuse intervals
  fall between 5 minutes and an hour often enough to pay for its dearer writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import polars as pl

from clauditor.analytics.costs import with_group_keys

__all__ = [
    "CANDIDATE_COLUMNS",
    "cache_hit_ratio_series_from_hours",
    "cache_regressions_from_hours",
    "economics_table",
]


def economics_table(grouped: pl.LazyFrame, terms: pl.LazyFrame, by: list[str]) -> pl.DataFrame:
    """The cache-economics table (the module docstring's figures) from the group sums and the
    sequence terms (:mod:`clauditor.analytics.cache_sequence` computes both from an engine)."""
    seq_sums = [
        pl.col("_wasted").sum().alias("wasted_write_usd"),
        pl.col("_unread").sum().cast(pl.Int64).alias("unread_write_tokens"),
        pl.col("_ttl_gain").sum().alias("ttl_1h_saving_usd"),
    ]
    if by:
        # Keys may be Categorical on one side and String on the other: join on strings.
        strings = [pl.col(k).cast(pl.String) for k in by]
        grouped = grouped.with_columns(strings).join(
            terms.group_by(by).agg(seq_sums).with_columns(strings),
            on=by,
            how="left",
            nulls_equal=True,
        )
    else:
        grouped = pl.concat([grouped, terms.select(seq_sums)], how="horizontal")
    total = (
        pl.col("input_tokens")
        + pl.col("cache_read_input_tokens")
        + pl.col("cache_creation_input_tokens")
    )
    return (
        grouped.with_columns(
            pl.col("wasted_write_usd").fill_null(0.0),
            pl.col("unread_write_tokens").fill_null(0),
            pl.col("ttl_1h_saving_usd").fill_null(0.0),
        )
        .with_columns(
            pl.when(total > 0).then(pl.col("cache_read_input_tokens") / total).alias("hit_ratio"),
            (pl.col("ttl_1h_saving_usd") > 0).alias("recommend_1h"),
            *[pl.col(k).cast(pl.String) for k in by],
        )
        .select(
            *by,
            "calls",
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "hit_ratio",
            "saved_usd",
            "write_cost_usd",
            "wasted_write_usd",
            "unread_write_tokens",
            "ttl_1h_saving_usd",
            "recommend_1h",
        )
        .sort(["saved_usd", *by], descending=[True, *([False] * len(by))])
        .collect()
    )


# The columns of a caching-candidates table after its keys (clauditor.analytics.cache_sequence).
CANDIDATE_COLUMNS = (
    "calls",
    "avg_input_tokens",
    "prefix_tokens",
    "reuse_share",
    "input_cost_usd",
    "dollars_at_stake",
)


def _dense(sums: pl.DataFrame, every: str) -> pl.DataFrame:
    """Per-key sums on a dense grid of ``every`` buckets (missing ones 0), with the ratio."""
    schema = sums.schema
    if sums.height == 0:
        return sums.with_columns(
            pl.lit(None, pl.Float64).alias("hit_ratio"), pl.lit(True).alias("_dense")
        )
    first = cast(datetime, sums["bucket"].min())  # a Datetime column with rows
    last = cast(datetime, sums["bucket"].max())
    grid = pl.datetime_range(first, last, every, eager=True)
    dense = (
        sums.select("key")
        .unique()
        .join(pl.DataFrame({"bucket": grid}).cast({"bucket": schema["bucket"]}), how="cross")
        .join(sums, on=["key", "bucket"], how="left")
        .fill_null(0)
        .sort("key", "bucket")
    )
    total = (
        pl.col("input_tokens")
        + pl.col("cache_read_input_tokens")
        + pl.col("cache_creation_input_tokens")
    )
    return dense.with_columns(
        pl.when(total > 0).then(pl.col("cache_read_input_tokens") / total).alias("hit_ratio"),
        pl.lit(True).alias("_dense"),
    )


def _regressions(
    dense: pl.DataFrame,
    *,
    drop: float = 0.5,
    min_calls: int = 20,
    window: int = 24,
    min_before_ratio: float = 0.2,
) -> pl.DataFrame:
    """:func:`cache_regressions_from_hours` on the dense per-key series of :func:`_dense`."""
    cols = ["calls", "cache_read_input_tokens", "_total"]
    dense = dense.with_columns(
        (
            pl.col("input_tokens")
            + pl.col("cache_read_input_tokens")
            + pl.col("cache_creation_input_tokens")
        ).alias("_total")
    )
    min_buckets = max(1, window // 4)
    before = [
        pl.col(c)
        .rolling_sum(window_size=window, min_samples=1)
        .shift(1)
        .over("key")
        .alias(f"b_{c}")
        for c in cols
    ] + [
        pl.col("hit_ratio")
        .rolling_median(window_size=window, min_samples=min_buckets)
        .shift(1)
        .over("key")
        .alias("b_median")
    ]
    after = [
        pl.col(c)
        .reverse()
        .rolling_sum(window_size=window, min_samples=1)
        .reverse()
        .over("key")
        .alias(f"a_{c}")
        for c in cols
    ] + [
        pl.col("hit_ratio")
        .reverse()
        .rolling_median(window_size=window, min_samples=min_buckets)
        .reverse()
        .over("key")
        .alias("a_median")
    ]
    f = dense.select("key", "bucket", "hit_ratio", *cols).with_columns(*before, *after)
    f = f.with_columns(
        (pl.col("b_cache_read_input_tokens") / pl.col("b__total")).alias("before_ratio"),
        (pl.col("a_cache_read_input_tokens") / pl.col("a__total")).alias("after_ratio"),
    )
    # Qualify on the medians of the bucket ratios, so that a few odd hours (a burst of
    # uncached traffic) cannot fake a lasting fall; locate on the token-weighted ratios, which
    # change most sharply at the bucket where the fall began.
    hit = (
        (pl.col("b_calls") >= min_calls)
        & (pl.col("a_calls") >= min_calls)
        & (pl.col("b_median") >= min_before_ratio)
        & (pl.col("a_median") <= (1.0 - drop) * pl.col("b_median"))
        & (pl.col("after_ratio") <= (1.0 - drop) * pl.col("before_ratio"))
    ).fill_null(False)
    f = f.with_columns(hit.alias("_hit"))
    f = f.with_columns(
        (pl.col("_hit") != pl.col("_hit").shift(1))
        .fill_null(True)
        .cum_sum()
        .over("key")
        .alias("_run")
    ).filter(pl.col("_hit"))
    fall = pl.col("before_ratio") - pl.col("after_ratio")
    return (
        f.sort("key", "_run", fall, descending=[False, False, True])
        .group_by("key", "_run", maintain_order=True)
        .first()
        .select(
            "key",
            pl.col("bucket").alias("start"),
            "before_ratio",
            "after_ratio",
            pl.col("b_calls").cast(pl.Int64).alias("calls_before"),
            pl.col("a_calls").cast(pl.Int64).alias("calls_after"),
        )
        .sort("start", "key")
    )


def _sums_from_hours(hours: pl.DataFrame, every: str, by: str) -> pl.DataFrame:
    """Per ``every`` bucket (whole hours) and key: calls and token sums, from ``hours``."""
    return (
        with_group_keys(hours, [by])
        .with_columns(pl.col("hour").dt.truncate(every).alias("bucket"), pl.col(by).alias("key"))
        .group_by("key", "bucket")
        .agg(
            pl.col("calls").sum().cast(pl.Int64),
            pl.col("input_tokens").fill_null(0).sum().cast(pl.Int64),
            pl.col("cache_read_input_tokens").fill_null(0).sum().cast(pl.Int64),
            pl.col("cache_creation_input_tokens").fill_null(0).sum().cast(pl.Int64),
        )
        .with_columns(pl.col("key").cast(pl.String))
        .collect()
    )


def cache_hit_ratio_series_from_hours(
    hours: pl.DataFrame, *, every: str = "1h", by: str = "feature"
) -> pl.DataFrame:
    """Hit ratio per ``every`` bucket (UTC, whole hours) and per value of the group key ``by``,
    from a rollup.

    Columns: ``bucket``, ``key`` (the value of ``by``), ``calls``, ``input_tokens``,
    ``cache_read_input_tokens``, ``cache_creation_input_tokens``, ``hit_ratio`` (NULL when the
    bucket had no input tokens). Buckets without calls are absent.
    """
    return (
        _dense(_sums_from_hours(hours, every, by), every)
        .filter(pl.col("calls") > 0)
        .drop("_dense")
        .sort("key", "bucket")
    )


def cache_regressions_from_hours(
    hours: pl.DataFrame, *, every: str = "1h", by: str = "feature", **kw: Any
) -> pl.DataFrame:
    """From a rollup: moments when a key's cache hit ratio fell by at least ``drop`` (a
    fraction) and stayed.

    Each ``every`` bucket is a candidate split: the hit ratio over the ``window`` buckets before
    it is compared with the ratio over the ``window`` buckets from it on (token-weighted, so one
    busy hour is not outvoted by quiet ones). A split qualifies when both sides hold
    ``min_calls`` calls, the ratio before is at least ``min_before_ratio`` and the ratio after
    is at most ``(1 - drop)`` times it; of each run of qualifying buckets the one with the
    largest fall is reported. Columns: ``key``, ``start`` (the first bucket of the lower
    ratio), ``before_ratio``, ``after_ratio``, ``calls_before``, ``calls_after``.

    ``kw``: ``drop`` (0.5), ``min_calls`` (20), ``window`` (24), ``min_before_ratio`` (0.2).
    """
    return _regressions(_dense(_sums_from_hours(hours, every, by), every), **kw)
