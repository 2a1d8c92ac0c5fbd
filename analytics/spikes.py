"""Spend spikes: an hour that costs far more than the hours before it, per feature (or any key).

Each hour's spend is compared with a robust baseline made of the hours before it (never the
hour itself, so a spike cannot hide itself): over the trailing ``baseline_hours`` (default a
week) the median and the MAD (median absolute deviation), and the same two statistics over
the same hour of day in that window. The baseline is the higher of the two medians and of the
two MADs: the daily pattern is real (a nightly job, office hours), so 02:00 is compared with
the 02:00s before it as well as with the week. The score is the excess over the baseline in
robust standard deviations, ``(cost - median) / max(1.4826 x MAD, 0.1 x median)``; the
relative floor keeps a steady series (MAD near 0) from turning cents of noise into huge
scores. An hour is a spike when its score reaches ``z`` and its excess reaches ``min_usd``.

Hours with no calls count as $0, so a feature that is idle at night has a low baseline there.

Reasons, any that apply (else ``spend spike``): ``runaway volume`` (at least 3x the baseline
number of calls), ``model change`` (the hour's costliest model had under 10 % of the key's
spend in the baseline window), ``costlier calls`` (cost per call at least 2x the baseline's:
bigger prompts, lost cache hits).
"""

from __future__ import annotations

import datetime as dt
from types import TracebackType
from typing import Any, cast

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from clauditor.analytics.costs import with_group_keys

__all__ = [
    "detect_spikes_from_hours",
    "hourly_spend_from_hours",
    "spike_episodes_from_hours",
]

MAD_TO_SIGMA = 1.4826
RELATIVE_FLOOR = 0.1
VOLUME_FACTOR = 3.0
COST_PER_CALL_FACTOR = 2.0
MODEL_SHARE = 0.1


def _per_model_from_hours(hours: pl.DataFrame, by: str) -> pl.DataFrame:
    """Calls and spend (unpriced $0) per UTC ``hour``, ``key`` (of ``by``) and ``_model``, from
    a rollup (:func:`clauditor.analytics.rollup.rollup_on`)."""
    lf = with_group_keys(hours, [by, "model"] if by != "model" else [by], prefix="_k_")
    return (
        lf.group_by("hour", pl.col(f"_k_{by}").alias("key"), pl.col("_k_model").alias("_model"))
        .agg(
            pl.col("calls").sum().cast(pl.Int64),
            pl.col("cost_usd").fill_null(0.0).sum(),
        )
        .with_columns(pl.col("key", "_model").cast(pl.String))
        .collect()
    )


def _hourly(per_model: pl.DataFrame) -> pl.DataFrame:
    return (
        per_model.group_by("hour", "key")
        .agg(
            pl.col("calls").sum(),
            pl.col("cost_usd").sum(),
            pl.col("_model")
            .sort_by("cost_usd", "_model", descending=[True, False])
            .first()
            .alias("top_model"),
        )
        .sort("key", "hour")
    )


def hourly_spend_from_hours(hours: pl.DataFrame, *, by: str = "feature") -> pl.DataFrame:
    """Spend per UTC hour per value of the group key ``by`` (any key of ``cost_breakdown``),
    from a rollup carrying the raw columns of ``by``.

    Columns: ``hour``, ``key``, ``calls``, ``cost_usd`` (unpriced calls count $0),
    ``top_model`` (the model that cost most that hour). Hours without calls are absent.
    """
    return _hourly(_per_model_from_hours(hours, by))


def _rolling_stats(x: np.ndarray, window: int, min_hours: int) -> dict[str, np.ndarray]:
    """Trailing and same-hour-of-day median and MAD of ``x`` before each position."""
    padded = np.concatenate([np.full(window, np.nan), x])
    # Row i holds x[i - window .. i - 1]: the window before hour i, the hour itself excluded.
    view = sliding_window_view(padded, window)[: len(x)]
    valid = np.sum(~np.isnan(view), axis=1) >= min_hours
    with np.errstate(all="ignore"), _quiet():
        med = _row_nanmedian(view)
        mad = _row_nanmedian(np.abs(view - med[:, None]))
        days = window // 24
        if days >= 1:
            same = view[:, [window - 24 * d for d in range(1, days + 1)]]
            s_med = _row_nanmedian(same)
            s_mad = _row_nanmedian(np.abs(same - s_med[:, None]))
        else:
            s_med = s_mad = np.full(len(x), np.nan)
    out_med = np.fmax(med, s_med)
    out_mad = np.fmax(mad, s_mad)
    out_med[~valid] = np.nan
    out_mad[~valid] = np.nan
    return {"median": out_med, "mad": out_mad}


def _row_nanmedian(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=1)`` of a 2-D array, by one sort: numpy's own goes through masked
    arrays for short rows, which costs more than the rest of the spike job together."""
    ordered = np.sort(a, axis=1)  # NaN sorts last
    n = np.sum(~np.isnan(a), axis=1)
    rows = np.arange(a.shape[0])
    low = ordered[rows, np.maximum((n - 1) // 2, 0)]
    high = ordered[rows, np.maximum(n // 2, 0)]
    out = (low + high) / 2.0
    out[n == 0] = np.nan
    return out


class _quiet:
    """Silence numpy's 'All-NaN slice' warnings (an empty baseline is expected at the start)."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ctx.__exit__(exc_type, exc, tb)


def detect_spikes_from_hours(
    hours: pl.DataFrame, *, by: str = "feature", **kw: Any
) -> pl.DataFrame:
    """The spike hours of each key of ``by`` (see the module docstring for the baseline and the
    score), from a rollup (:func:`clauditor.analytics.rollup.rollup_on`); ``kw``:
    ``baseline_hours`` (168), ``min_baseline_hours`` (24), ``z`` (6.0), ``min_usd`` (1.0).

    A key needs ``min_baseline_hours`` hours of history (counted from the first hour of the
    rollup) before it can spike. Columns: ``hour``, ``key``, ``calls``, ``cost_usd``,
    ``baseline_median``, ``baseline_mad``, ``baseline_calls``, ``score``, ``excess_usd``,
    ``top_model``, ``reason``; sorted by hour then key.
    """
    return _detect(_per_model_from_hours(hours, by), **kw)


def _detect(
    per_model: pl.DataFrame,
    *,
    baseline_hours: int = 168,
    min_baseline_hours: int = 24,
    z: float = 6.0,
    min_usd: float = 1.0,
) -> pl.DataFrame:
    """:func:`detect_spikes_from_hours` on the per-model hourly spend of a rollup."""
    schema: dict[str, Any] = {
        "hour": pl.Datetime("us", "UTC"),
        "key": pl.String,
        "calls": pl.Int64,
        "cost_usd": pl.Float64,
        "baseline_median": pl.Float64,
        "baseline_mad": pl.Float64,
        "baseline_calls": pl.Float64,
        "score": pl.Float64,
        "excess_usd": pl.Float64,
        "top_model": pl.String,
        "reason": pl.String,
    }
    hourly = _hourly(per_model)
    if hourly.height == 0:
        return pl.DataFrame(schema=schema)
    first = cast(dt.datetime, hourly["hour"].min())  # a Datetime column with rows
    last = cast(dt.datetime, hourly["hour"].max())
    hours = pl.datetime_range(first, last, "1h", eager=True)
    keys = hourly.select("key").unique().sort("key")
    dense = (
        keys.join(pl.DataFrame({"hour": hours}).cast({"hour": hourly.schema["hour"]}), how="cross")
        .join(hourly, on=["key", "hour"], how="left")
        .with_columns(pl.col("calls").fill_null(0), pl.col("cost_usd").fill_null(0.0))
        .sort("key", "hour")
    )
    n = len(hours)
    cost = dense["cost_usd"].to_numpy().reshape(keys.height, n)
    count = dense["calls"].to_numpy().astype(float).reshape(keys.height, n)
    medians, mads, call_medians = [], [], []
    for row in range(keys.height):  # one vectorized pass per key, not per row
        stats = _rolling_stats(cost[row], baseline_hours, min_baseline_hours)
        medians.append(stats["median"])
        mads.append(stats["mad"])
        call_medians.append(
            _rolling_stats(count[row], baseline_hours, min_baseline_hours)["median"]
        )
    dense = dense.with_columns(
        pl.Series("baseline_median", np.concatenate(medians)).fill_nan(None),
        pl.Series("baseline_mad", np.concatenate(mads)).fill_nan(None),
        pl.Series("baseline_calls", np.concatenate(call_medians)).fill_nan(None),
    )
    scale = pl.max_horizontal(
        MAD_TO_SIGMA * pl.col("baseline_mad"), RELATIVE_FLOOR * pl.col("baseline_median")
    )
    excess = pl.col("cost_usd") - pl.col("baseline_median")
    spikes = dense.with_columns(
        excess.alias("excess_usd"),
        pl.when(scale > 0).then(excess / scale).otherwise(float("inf")).alias("score"),
    ).filter(
        pl.col("baseline_median").is_not_null()
        & (pl.col("score") >= z)
        & (pl.col("excess_usd") >= min_usd)
    )
    if spikes.height == 0:
        return pl.DataFrame(schema=schema)
    return _with_reasons(spikes, per_model, baseline_hours).select(list(schema)).sort("hour", "key")


def _with_reasons(
    spikes: pl.DataFrame, per_model: pl.DataFrame, baseline_hours: int
) -> pl.DataFrame:
    """Add ``reason``: volume, model and request size against the baseline window."""
    per_model = per_model.select(
        "key", pl.col("hour").alias("m_hour"), pl.col("_model").alias("top_model"),
        pl.col("cost_usd").alias("m_cost"),
    )  # fmt: skip
    window = pl.duration(hours=baseline_hours)
    # Spike rows are few, so joining each to its key's hourly model spend stays small.
    joined = (
        spikes.select("key", "hour")
        .join(per_model, on="key")
        .filter((pl.col("m_hour") < pl.col("hour")) & (pl.col("m_hour") >= pl.col("hour") - window))
    )
    totals = joined.group_by("key", "hour").agg(pl.col("m_cost").sum().alias("base_total"))
    shares = (
        joined.group_by("key", "hour", "top_model")
        .agg(pl.col("m_cost").sum().alias("base_model"))
        .join(totals, on=["key", "hour"])
        .select(
            "key",
            "hour",
            "top_model",
            (pl.col("base_model") / pl.col("base_total")).fill_nan(0.0).alias("model_share"),
        )
    )
    out = spikes.join(shares, on=["key", "hour", "top_model"], how="left")
    base_calls = pl.col("baseline_calls").clip(lower_bound=1.0)
    per_call = pl.col("cost_usd") / pl.col("calls").clip(lower_bound=1)
    base_per_call = pl.col("baseline_median") / base_calls
    reasons = pl.concat_list(
        pl.when(pl.col("calls") >= VOLUME_FACTOR * base_calls).then(pl.lit("runaway volume")),
        pl.when(pl.col("model_share").fill_null(0.0) < MODEL_SHARE).then(pl.lit("model change")),
        pl.when((base_per_call > 0) & (per_call >= COST_PER_CALL_FACTOR * base_per_call)).then(
            pl.lit("costlier calls")
        ),
    ).list.drop_nulls()
    return out.with_columns(
        pl.when(reasons.list.len() > 0)
        .then(reasons.list.join(", "))
        .otherwise(pl.lit("spend spike"))
        .alias("reason")
    )


def spike_episodes_from_hours(hours: pl.DataFrame, **kw: Any) -> pl.DataFrame:
    """Consecutive spike hours of a key merged into one episode, from a rollup; ``kw`` go to
    :func:`detect_spikes_from_hours`.

    Columns: ``key``, ``start``, ``end`` (exclusive: the hour after the last spike hour),
    ``hours``, ``calls``, ``cost_usd``, ``excess_usd`` (over the baseline medians),
    ``peak_score``, ``reason`` (of the peak hour); sorted by start.
    """
    return _episodes(detect_spikes_from_hours(hours, **kw))


def _episodes(spikes: pl.DataFrame) -> pl.DataFrame:
    gap = pl.col("hour") - pl.col("hour").shift(1)
    return (
        spikes.sort("key", "hour")
        .with_columns(
            (gap != pl.duration(hours=1)).fill_null(True).cum_sum().over("key").alias("_ep")
        )
        .group_by("key", "_ep")
        .agg(
            pl.col("hour").min().alias("start"),
            (pl.col("hour").max() + pl.duration(hours=1)).alias("end"),
            pl.len().cast(pl.Int64).alias("hours"),
            pl.col("calls").sum().cast(pl.Int64),
            pl.col("cost_usd").sum(),
            pl.col("excess_usd").sum(),
            pl.col("score").max().alias("peak_score"),
            pl.col("reason").sort_by("score", descending=True).first(),
        )
        .select(
            "key",
            "start",
            "end",
            "hours",
            "calls",
            "cost_usd",
            "excess_usd",
            "peak_score",
            "reason",
        )
        .sort("start", "key")
    )
