"""Error windows: what failed, how often, and when failure was sustained rather than noise.

Every failed call gets one error class (:data:`ERROR_CLASSES`, or ``other`` when neither its
HTTP status nor its error type says what happened):

==================  ======================================================================
``rate_limited``    HTTP 429 or ``rate_limit_error``: your own traffic hit a limit
``overloaded``      HTTP 529 or ``overloaded_error``: the platform shed load
``server_error``    any other 5xx, or ``api_error``
``client_error``    any other 4xx, or ``invalid_request_error``, ``authentication_error`` ...
``timeout``         an error type that says timeout (client or server side), or HTTP 408
``connection``      an error type that says connection (no response at all)
==================  ======================================================================

A call counts as failed when ``status`` is ``error``, or it has an ``error_type``, or its final
HTTP status is 400 or above. Rates are failed calls over all calls in the window; the class
``any`` sums every class.

Windows are rolling: :func:`error_windows_from_minutes` cuts time into ``every`` buckets and
sums the ``window`` of buckets that starts at each one. :func:`error_episodes_from_minutes`
finds sustained degradation. A low-volume app makes one error a 10 % window rate, so "the rate
went above the threshold" alone would call every stray error an incident; an episode also has to
last ``min_duration`` (first to last failing bucket), hold ``min_calls`` calls and ``min_errors``
errors, and the lower bound of the error rate's Wilson score interval (``z`` standard errors)
has to stay above the threshold, so that its rate is unlikely to be the threshold's plus noise.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import cast

import polars as pl

from clauditor.analytics.costs import with_group_keys

__all__ = [
    "ANY",
    "ERROR_CLASSES",
    "OTHER",
    "error_class_expr",
    "error_episodes_from_minutes",
    "error_windows_from_minutes",
    "failed_expr",
    "retry_amplification_from_hours",
    "with_group_keys",
]

ERROR_CLASSES = (
    "rate_limited",
    "overloaded",
    "server_error",
    "client_error",
    "timeout",
    "connection",
)
OTHER = "other"
ANY = "any"
_ALL_CLASSES = (*ERROR_CLASSES, OTHER)


def failed_expr() -> pl.Expr:
    """True for a failed call: status ``error``, an ``error_type``, or HTTP status >= 400."""
    return (
        (pl.col("status") == "error").fill_null(False)
        | pl.col("error_type").is_not_null()
        | (pl.col("http_status") >= 400).fill_null(False)
    )


def error_class_expr() -> pl.Expr:
    """The error class of a call (NULL for a call that did not fail), aliased ``error_class``.

    The error type is looked at first because it is the more specific of the two (a timeout has
    no status at all); the status decides when the type is missing or unknown.
    """
    kind = pl.col("error_type").str.to_lowercase()
    status = pl.col("http_status")
    return (
        pl.when(~failed_expr())
        .then(None)
        .when(kind.str.contains("timeout") | (status == 408))
        .then(pl.lit("timeout"))
        .when(kind.str.contains("connection"))
        .then(pl.lit("connection"))
        .when(kind.str.contains("rate_limit") | (status == 429))
        .then(pl.lit("rate_limited"))
        .when(kind.str.contains("overloaded") | (status == 529))
        .then(pl.lit("overloaded"))
        .when((status >= 500) | kind.is_in(["api_error", "internal_server_error"]))
        .then(pl.lit("server_error"))
        .when(
            ((status >= 400) & (status < 500))
            | kind.is_in(
                [
                    "invalid_request_error",
                    "authentication_error",
                    "permission_error",
                    "not_found_error",
                    "request_too_large",
                    "billing_error",
                ]
            )
        )
        .then(pl.lit("client_error"))
        .otherwise(pl.lit(OTHER))
        .alias("error_class")
    )


def _duration(text: str) -> int:
    """Microseconds of a Polars duration string such as ``5m`` or ``1h`` (fixed units only)."""
    units = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
    units["d"] = 24 * units["h"]
    units["w"] = 7 * units["d"]
    total, number = 0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit():
            number += ch
            i += 1
            continue
        unit = text[i : i + 2] if text[i : i + 2] in ("us", "ms") else ch
        if unit not in units or not number:
            raise ValueError(f"duration {text!r} is not like '5m', '1h', '30s' or '1d'")
        total += int(number) * units[unit]
        number = ""
        i += len(unit)
    if number or total <= 0:
        raise ValueError(f"duration {text!r} is not like '5m', '1h', '30s' or '1d'")
    return total


def _bucket_counts(minutes: pl.DataFrame, every: str) -> pl.DataFrame:
    """Calls and errors per class per ``every`` bucket, on a dense grid (empty buckets are 0).

    ``minutes`` is an engine error-minutes frame of buckets no longer than ``every`` that
    divide it. Columns: ``bucket``, ``calls``, one ``err_<class>`` per class and ``err_any``.
    Only the few (status, error type, HTTP status) combinations are classified.
    """
    lf = minutes.lazy().with_columns(pl.col("bucket").dt.truncate(every))
    totals = lf.group_by("bucket").agg(pl.col("calls").sum().cast(pl.Int64))
    failed = (
        lf.filter(failed_expr())
        .group_by("bucket", "status", "error_type", "http_status")
        .agg(pl.col("calls").sum().alias("_n"))
        .with_columns(pl.col("status", "error_type").cast(pl.String))
        .with_columns(error_class_expr())
        .group_by("bucket")
        .agg(
            *[
                pl.col("_n").filter(pl.col("error_class") == c).sum().alias(f"err_{c}")
                for c in _ALL_CLASSES
            ]
        )
    )
    counts = (
        totals.join(failed, on="bucket", how="left")
        .with_columns([pl.col(f"err_{c}").fill_null(0).cast(pl.Int64) for c in _ALL_CLASSES])
        .collect()
    )
    if counts.height == 0:
        return counts
    grid = pl.DataFrame(
        {
            "bucket": pl.datetime_range(
                cast(dt.datetime, counts["bucket"].min()),  # a Datetime column with rows
                cast(dt.datetime, counts["bucket"].max()),
                every,
                eager=True,
                time_zone="UTC",
            )
        }
    ).with_columns(pl.col("bucket").cast(counts.schema["bucket"]))
    dense = grid.join(counts, on="bucket", how="left").fill_null(0).sort("bucket")
    return dense.with_columns(
        pl.sum_horizontal([f"err_{c}" for c in _ALL_CLASSES]).alias("err_any")
    )


def _rolling(dense: pl.DataFrame, k: int) -> pl.DataFrame:
    """Sums over the ``k`` buckets starting at each bucket (the window that starts there)."""
    cols = ["calls", *[f"err_{c}" for c in (*_ALL_CLASSES, ANY)]]
    # A forward window is a trailing window of the reversed series.
    return dense.select(
        "bucket",
        *[
            pl.col(c).reverse().rolling_sum(window_size=k, min_samples=1).reverse().alias(c)
            for c in cols
        ],
    )


def error_windows_from_minutes(
    minutes: pl.DataFrame, *, window: str = "5m", every: str = "1m"
) -> pl.DataFrame:
    """Rolling error rates per class: one row per window that saw calls, per class.

    Columns: ``window_start``, ``window_end`` (``window_start + window``), ``error_class`` (each
    of :data:`ERROR_CLASSES`, ``other`` and ``any``), ``calls`` (all calls in the window, the
    denominator of every class), ``errors``, ``error_rate``. Windows start every ``every`` and
    are ``window`` long; ``window`` must be a whole number of ``every``.

    ``minutes``: the engine's error minutes (``Engine.error_minutes``: calls per 1-minute bucket
    and (``status``, ``error_type``, ``http_status``), ``count_tokens`` calls left out), or any
    coarser buckets dividing ``every``.
    """
    k = _steps(window, every)
    dense = _bucket_counts(minutes, every)
    if dense.height == 0:
        return pl.DataFrame(
            schema={
                "window_start": pl.Datetime("us", "UTC"),
                "window_end": pl.Datetime("us", "UTC"),
                "error_class": pl.String,
                "calls": pl.Int64,
                "errors": pl.Int64,
                "error_rate": pl.Float64,
            }
        )
    rolled = _rolling(dense, k).filter(pl.col("calls") > 0)
    classes = [*_ALL_CLASSES, ANY]
    long = rolled.unpivot(
        index=["bucket", "calls"],
        on=[f"err_{c}" for c in classes],
        variable_name="error_class",
        value_name="errors",
    )
    return (
        long.with_columns(
            pl.col("error_class").str.strip_prefix("err_"),
            (pl.col("errors") / pl.col("calls")).alias("error_rate"),
            (pl.col("bucket") + pl.duration(microseconds=_duration(window))).alias("window_end"),
        )
        .rename({"bucket": "window_start"})
        .select("window_start", "window_end", "error_class", "calls", "errors", "error_rate")
        .sort("error_class", "window_start")
    )


def _steps(window: str, every: str) -> int:
    w, e = _duration(window), _duration(every)
    if w % e:
        raise ValueError(f"window {window!r} must be a whole number of steps of {every!r}")
    return w // e


def wilson_lower(errors: pl.Expr, calls: pl.Expr, z: float) -> pl.Expr:
    """Lower bound of the Wilson score interval of ``errors / calls`` at ``z`` standard errors."""
    n = calls.cast(pl.Float64)
    p = errors.cast(pl.Float64) / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * ((p * (1 - p) / n) + z2 / (4 * n * n)).sqrt()
    return ((centre - margin) / (1 + z2 / n)).clip(lower_bound=0.0)


def error_episodes_from_minutes(
    minutes: pl.DataFrame,
    *,
    window: str = "5m",
    threshold: float = 0.01,
    min_duration: str = "5m",
    min_calls: int = 20,
    min_errors: int = 5,
    every: str = "1m",
    z: float = 3.0,
) -> pl.DataFrame:
    """Sustained degradation: stretches where a class's rolling error rate stayed above
    ``threshold``.

    A bucket belongs to a candidate stretch while some ``window`` covering it has an error rate
    above ``threshold``; the episode runs from its first to its last failing bucket. It is kept
    when it lasts at least ``min_duration``, holds ``min_calls`` calls and ``min_errors``
    errors, and the Wilson lower bound (``z``) of its rate exceeds ``threshold`` (see the module
    docstring for why). Columns: ``error_class`` (a class of :data:`ERROR_CLASSES`, ``other``
    or ``any``), ``start``, ``end`` (exclusive, bucket-aligned), ``peak_rate`` (highest window
    rate inside), ``calls``, ``errors``, ``error_rate``; sorted by start.

    ``minutes``: the engine's error minutes (``Engine.error_minutes``: calls per 1-minute bucket
    and (``status``, ``error_type``, ``http_status``), ``count_tokens`` calls left out), or any
    coarser buckets dividing ``every``.
    """
    k = _steps(window, every)
    step = _duration(every)
    min_steps = math.ceil(_duration(min_duration) / step)
    schema: dict[str, pl.DataType] = {
        "error_class": pl.String(),
        "start": pl.Datetime("us", "UTC"),
        "end": pl.Datetime("us", "UTC"),
        "peak_rate": pl.Float64(),
        "calls": pl.Int64(),
        "errors": pl.Int64(),
        "error_rate": pl.Float64(),
    }
    dense = _bucket_counts(minutes, every)
    if dense.height == 0:
        return pl.DataFrame(schema=schema)
    rolled = _rolling(dense, k)
    classes = [*_ALL_CLASSES, ANY]
    frames = []
    for c in classes:  # seven classes, each one vectorized pass over the buckets
        err = f"err_{c}"
        rate = pl.when(pl.col("w_calls") > 0).then(pl.col("w_err") / pl.col("w_calls"))
        f = pl.DataFrame(
            {
                "bucket": dense["bucket"],
                "calls": dense["calls"],
                "errors": dense[err],
                "w_calls": rolled["calls"],
                "w_err": rolled[err],
            }
        ).with_columns(rate.fill_null(0.0).alias("w_rate"))
        degraded = (pl.col("w_rate") > threshold) & (pl.col("w_err") > 0)
        # A bucket is covered when any window containing it (those starting k-1 buckets before
        # it up to itself) is degraded.
        f = f.with_columns(degraded.alias("degraded")).with_columns(
            pl.col("degraded")
            .cast(pl.Int8)
            .rolling_max(window_size=k, min_samples=1)
            .cast(pl.Boolean)
            .alias("covered")
        )
        f = f.with_columns(
            (pl.col("covered") != pl.col("covered").shift(1)).fill_null(True).cum_sum().alias("run")
        ).filter(pl.col("covered"))
        failing = pl.col("errors") > 0
        per_run = (
            f.with_columns(pl.when(failing).then(pl.col("bucket")).alias("fail_at"))
            .group_by("run")
            .agg(
                pl.col("fail_at").min().alias("start"),
                pl.col("fail_at").max().alias("last"),
                pl.col("bucket"),
                pl.col("calls"),
                pl.col("errors"),
                pl.col("w_rate").filter(pl.col("degraded")).max().alias("peak_rate"),
            )
            .filter(pl.col("start").is_not_null())
            .explode("bucket", "calls", "errors")
            .filter((pl.col("bucket") >= pl.col("start")) & (pl.col("bucket") <= pl.col("last")))
            .group_by("run", "start", "last", "peak_rate")
            .agg(pl.col("calls").sum(), pl.col("errors").sum())
            .with_columns(pl.lit(c).alias("error_class"))
        )
        frames.append(per_run)
    episodes = pl.concat(frames)
    steps = ((pl.col("last") - pl.col("start")).dt.total_microseconds() // step) + 1
    kept = episodes.filter(
        (steps >= min_steps)
        & (pl.col("calls") >= min_calls)
        & (pl.col("errors") >= min_errors)
        & (wilson_lower(pl.col("errors"), pl.col("calls"), z) > threshold)
    )
    return (
        kept.with_columns(
            (pl.col("last") + pl.duration(microseconds=step)).alias("end"),
            (pl.col("errors") / pl.col("calls")).alias("error_rate"),
        )
        .select(
            pl.col("error_class"),
            pl.col("start").cast(schema["start"]),
            pl.col("end").cast(schema["end"]),
            "peak_rate",
            pl.col("calls").cast(pl.Int64),
            pl.col("errors").cast(pl.Int64),
            "error_rate",
        )
        .sort("start", "error_class")
    )


def _retry_table(grouped: pl.LazyFrame, by: list[str]) -> pl.DataFrame:
    """The retry-amplification columns from per-group calls, attempts and retried counts."""
    return (
        grouped.with_columns(pl.col(by).cast(pl.String))
        .with_columns(
            (pl.col("attempts") / pl.col("calls")).alias("attempts_per_call"),
            (pl.col("retried_calls") / pl.col("calls")).alias("retried_share"),
        )
        .select(
            *by,
            "calls",
            "attempts",
            "attempts_per_call",
            "retried_calls",
            "retried_share",
            "failed_after_retries",
        )
        .sort(["attempts_per_call", *by], descending=[True, *([False] * len(by))])
        .collect()
    )


def retry_amplification_from_hours(
    hours: pl.DataFrame, *, by: Sequence[str] = ("feature",)
) -> pl.DataFrame:
    """Attempts per call (``1 + retries``) per group of ``by`` keys, from a rollup
    (``calls``, ``retries``, ``_retried`` per row; the failed filter applies to rows).

    Columns: ``*by``, ``calls``, ``attempts``, ``attempts_per_call``, ``retried_calls`` (calls
    with at least one resend), ``retried_share``, ``failed_after_retries`` (calls that still
    failed after resending); sorted by attempts per call, highest first. Unrecorded retries
    (NULL) count as 0, which is why the audit checks that retries are recorded at all.
    """
    by = list(by)
    lf = with_group_keys(hours, by)
    aggs = [
        pl.col("calls").sum().cast(pl.Int64).alias("calls"),
        (pl.col("retries") + pl.col("calls")).sum().cast(pl.Int64).alias("attempts"),
        pl.col("_retried").sum().cast(pl.Int64).alias("retried_calls"),
        pl.col("_retried").filter(failed_expr()).sum().cast(pl.Int64).alias("failed_after_retries"),
    ]
    grouped = lf.group_by(by).agg(aggs) if by else lf.select(aggs)
    return _retry_table(grouped, by)
