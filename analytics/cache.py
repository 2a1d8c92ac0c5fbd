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

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import polars as pl

from clauditor.analytics.costs import with_group_keys
from clauditor.analytics.errors import failed_expr
from clauditor.pricing import PER_MTOK

__all__ = [
    "cache_economics",
    "cache_hit_ratio_series_from_hours",
    "cache_regressions_from_hours",
    "caching_candidates",
    "economics_table",
    "economics_table",
]

TTL_5M = timedelta(minutes=5)
TTL_1H = timedelta(hours=1)


def _tokens(name: str) -> pl.Expr:
    return pl.col(name).fill_null(0).cast(pl.Int64)


def _prepared(calls: pl.DataFrame | pl.LazyFrame, by: Sequence[str]) -> pl.LazyFrame:
    """Calls with group keys, token parts, and the call's own rates per token (``_u_*``).

    The 5m/1h split is the one pricing used: the reported split, else the assumed TTL.
    """
    read = _tokens("cache_read_input_tokens")
    write = _tokens("cache_creation_input_tokens")
    w1h = _write_1h(write)
    return with_group_keys(calls, by).with_columns(
        _tokens("input_tokens").alias("_input"),
        read.alias("_read"),
        write.alias("_write"),
        (write - w1h).alias("_w5m"),
        w1h.alias("_w1h"),
        *((pl.col(f"rate_{name}") * PER_MTOK).alias(f"_u_{short}") for name, short in _RATES),
    )


_RATES = (("input", "in"), ("cache_read", "read"), ("cache_write_5m", "5m"),
          ("cache_write_1h", "1h"))  # fmt: skip


def _write_1h(write: pl.Expr) -> pl.Expr:
    """The 1-hour part of the cache writes, as pricing split them (reported, else assumed)."""
    known_5m = pl.col("cache_creation_5m_input_tokens").cast(pl.Int64)
    known_1h = pl.col("cache_creation_1h_input_tokens").cast(pl.Int64)
    return (
        pl.when(known_1h.is_not_null())
        .then(known_1h)
        .when(known_5m.is_not_null())
        .then(write - known_5m)
        .when(pl.col("cache_ttl_assumed") == "1h")
        .then(write)
        .otherwise(0)
        .clip(0)
        .clip(upper_bound=write)
    )


def _premiums() -> tuple[pl.Expr, pl.Expr]:
    """What the 5-minute and 1-hour writes of a call cost above the same tokens uncached."""
    return (
        pl.col("_w5m") * (pl.col("_u_5m") - pl.col("_u_in")),
        pl.col("_w1h") * (pl.col("_u_1h") - pl.col("_u_in")),
    )


def _next_in_group(value: pl.Expr, gid: pl.Expr) -> pl.Expr:
    """The first non-NULL ``value`` strictly after each row within its group ``gid``, on a frame
    sorted by ``gid`` then time (one pass over the whole frame, no per-group work)."""
    found = value.shift(-1).backward_fill()
    found_gid = pl.when(value.is_not_null()).then(gid).shift(-1).backward_fill()
    return pl.when(found_gid == gid).then(found)


def _sequence_terms(cached: pl.LazyFrame) -> pl.LazyFrame:
    """Waste and TTL-replay terms of each cached call (reads or writes > 0).

    Only cached calls take part in the read/write sequence (a call without cache tokens is
    neither a read nor a write), so the sequence is followed on them alone: one sort by an
    integer group id (feature and model as recorded) and time, then shifts that do not cross
    group boundaries.
    """
    t = pl.col("start_time")
    gid = pl.col("_gid")
    seq = cached.with_columns(
        pl.struct(pl.col("_seq_feature").cast(pl.String), pl.col("_seq_model").cast(pl.String))
        .rank("dense")
        .alias("_gid")
    ).sort("_gid", "start_time")
    next_read = _next_in_group(pl.when(pl.col("_read") > 0).then(t), gid)
    gap_to_read = next_read - t
    unread_5m = (pl.col("_w5m") > 0) & (next_read.is_null() | (gap_to_read > TTL_5M))
    unread_1h = (pl.col("_w1h") > 0) & (next_read.is_null() | (gap_to_read > TTL_1H))
    premium_5m, premium_1h = _premiums()
    # Every row here is cached, so the previous cached call is the previous row of the group.
    prev_cached = pl.when(gid.shift(1) == gid).then(t.shift(1))
    gap = t - prev_cached
    prefix = pl.col("_read") + pl.col("_write")
    replay_5m = prefix * pl.when(gap.is_null() | (gap > TTL_5M)).then(pl.col("_u_5m")).otherwise(
        pl.col("_u_read")
    )
    replay_1h = prefix * pl.when(gap.is_null() | (gap > TTL_1H)).then(pl.col("_u_1h")).otherwise(
        pl.col("_u_read")
    )
    return seq.with_columns(
        (
            pl.when(unread_5m).then(premium_5m).otherwise(0.0)
            + pl.when(unread_1h).then(premium_1h).otherwise(0.0)
        ).alias("_wasted"),
        (
            pl.when(unread_5m).then(pl.col("_w5m")).otherwise(0)
            + pl.when(unread_1h).then(pl.col("_w1h")).otherwise(0)
        ).alias("_unread"),
        (replay_5m - replay_1h).alias("_ttl_gain"),
    )


def cache_economics(
    calls: pl.DataFrame, *, by: Sequence[str] = ("feature", "model")
) -> pl.DataFrame:
    """Per group of ``by`` keys: how much caching is used, saves and wastes (module docstring).

    Failed calls (no usage) are left out. Columns: ``*by``, ``calls``, ``input_tokens``,
    ``cache_read_input_tokens``,
    ``cache_creation_input_tokens``, ``hit_ratio`` (NULL without input), ``saved_usd``,
    ``write_cost_usd``, ``wasted_write_usd`` (premium paid on writes never read back within
    their TTL), ``unread_write_tokens``, ``ttl_1h_saving_usd`` (replayed 5m cost minus 1h cost;
    positive means 1h is cheaper), ``recommend_1h``. The waste and TTL replay always look at
    the sequence per feature and model, whatever ``by`` is. Sorted by ``saved_usd`` descending.
    """
    by = list(by)
    # Failed calls carry no usage; they would only add empty rows under the requested model id.
    # The read/write sequence is followed per feature and model as recorded (no need for
    # the display names there).
    lf = _prepared(calls.lazy().filter(~failed_expr()), by)
    premium_5m, premium_1h = _premiums()
    read_saving = (pl.col("_read") * (pl.col("_u_in") - pl.col("_u_read"))).fill_null(0.0)
    sums = [
        pl.len().cast(pl.Int64).alias("calls"),
        pl.col("_input").sum().alias("input_tokens"),
        pl.col("_read").sum().alias("cache_read_input_tokens"),
        pl.col("_write").sum().alias("cache_creation_input_tokens"),
        (read_saving - (premium_5m + premium_1h).fill_null(0.0)).sum().alias("saved_usd"),
        pl.col("cost_cache_write_usd").fill_null(0.0).sum().alias("write_cost_usd"),
    ]
    terms = _cached_terms(lf, by)
    grouped = lf.group_by(by).agg(sums) if by else lf.select(sums)
    return economics_table(grouped, terms, by)


def _cached_terms(lf: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """The sequence terms of the cached calls of ``lf`` (a :func:`_prepared` frame)."""
    have = set(lf.collect_schema().names())
    seq_model = (
        pl.col("_model_id")
        if "_model_id" in have
        else pl.coalesce("response_model", "request_model")
    )
    cached = lf.filter((pl.col("_read") + pl.col("_write")) > 0).select(
        *by, pl.col("feature").alias("_seq_feature"), seq_model.alias("_seq_model"),
        "start_time", "_read", "_write", "_w5m", "_w1h", "_u_in", "_u_read", "_u_5m", "_u_1h",
    )  # fmt: skip
    return _sequence_terms(cached)


def economics_table(grouped: pl.LazyFrame, terms: pl.LazyFrame, by: list[str]) -> pl.DataFrame:
    """The result of :func:`cache_economics` from the group sums and the sequence terms."""
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


# The columns of a caching-candidates table after its keys (per call here, and cache_sequence).
CANDIDATE_COLUMNS = (
    "calls",
    "avg_input_tokens",
    "prefix_tokens",
    "reuse_share",
    "input_cost_usd",
    "dollars_at_stake",
)


def caching_candidates(
    calls: pl.DataFrame,
    *,
    min_prompt_tokens: int = 1024,
    min_calls: int = 20,
    max_cached_share: float = 0.1,
) -> pl.DataFrame:
    """Features and models that send large input uncached, again and again.

    A candidate has ``min_calls`` successful generation calls averaging at least
    ``min_prompt_tokens`` uncached input tokens, and caches (reads + writes) under
    ``max_cached_share`` of its input. Telemetry holds no prompt text, so the shared prefix is
    estimated as the group's 10th-percentile input size: most calls send at least that much, and
    a shared system prompt cannot be longer than the shortest prompts. ``dollars_at_stake`` is
    the replayed 5-minute caching of that prefix: 0.9 x base saved on calls that follow another
    within 5 minutes, minus the 0.25 x base write premium on the others (never below 0).

    Columns: ``feature``, ``model``, ``calls``, ``avg_input_tokens``, ``prefix_tokens``,
    ``reuse_share`` (calls within 5 minutes of the previous one), ``input_cost_usd``,
    ``dollars_at_stake``; sorted by dollars at stake.
    """
    keys = ["feature", "model"]
    lf = _prepared(calls, keys).filter(
        (pl.col("operation").fill_null("chat") != "count_tokens")
        & (pl.col("status").fill_null("ok") == "ok")
    )
    cached_share = pl.col("_cached") / (pl.col("_cached") + pl.col("_input_sum"))
    # The cheap sums decide which groups qualify; the per-call work (the 10th percentile and
    # the reuse sequence) is then done for those groups only.
    totals = (
        lf.group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("calls"),
            pl.col("_input").mean().alias("avg_input_tokens"),
            (pl.col("_read") + pl.col("_write")).sum().alias("_cached"),
            pl.col("_input").sum().alias("_input_sum"),
            pl.col("cost_input_usd").fill_null(0.0).sum().alias("input_cost_usd"),
        )
        .filter(
            (pl.col("calls") >= min_calls)
            & (pl.col("avg_input_tokens") >= min_prompt_tokens)
            & (cached_share.fill_nan(0.0) < max_cached_share)
        )
        .collect()
    )
    t = pl.col("start_time")
    # Inside each group: its calls in time order, each a reuse when it follows the previous
    # one within 5 minutes.
    reuse = (t.sort().diff() <= TTL_5M).fill_null(False)
    prefix = pl.col("_input").quantile(0.1, "lower")
    by_time = {k: pl.col(f"_u_{k}").fill_null(0.0).sort_by(t) for k in ("in", "read", "5m")}
    gain = prefix * (
        pl.when(reuse)
        .then(by_time["in"] - by_time["read"])
        .otherwise(-(by_time["5m"] - by_time["in"]))
    )
    per_call = (
        lf.join(totals.lazy().select(keys), on=keys, how="semi", nulls_equal=True)
        .group_by(keys)
        .agg(
            prefix.cast(pl.Int64).alias("prefix_tokens"),
            reuse.mean().alias("reuse_share"),
            gain.sum().clip(lower_bound=0.0).alias("dollars_at_stake"),
        )
        .collect()
    )
    return (
        totals.join(per_call, on=keys, how="left", nulls_equal=True)
        .with_columns([pl.col(k).cast(pl.String) for k in keys])
        .select(*keys, *CANDIDATE_COLUMNS)
        .sort(["dollars_at_stake", *keys], descending=[True, False, False])
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
