"""Budget: month-to-date spend against the monthly budget, a forecast, and thresholds crossed.

Months are calendar months in the configured time zone; "month to date" ends at ``as_of``, so
evaluating a past moment sees only the calls made before it.

The forecast adds to what is spent the expected spend of the rest of the month, from a run rate
that knows weekdays from weekends: over the complete days of the ``lookback_days`` before
today (days before the first call in the frame are unknown, not $0), the mean and standard
deviation of daily spend on weekdays and on weekend days. A class with fewer than two observed
days borrows the statistics of all days. With fewer than two complete days known at all (the
first day of data, a new deployment), the rate is the spend since the first call over the
time since it, and the interval is as wide as that little data deserves (a standard deviation
as large as the rate, the observed fraction of a day as the sample size). The rest of today
counts as the fraction of the day left on the clock. The prediction interval (``interval``,
default 90 %) treats days as independent and adds the uncertainty of the estimated mean:
``var = sum over classes of n x s^2 + n^2 x s^2 / m`` (``n`` days to come, ``m`` observed, ``s``
their standard deviation). The projected run-out date is the first day on which the expected
cumulative spend reaches the budget, if that happens this month.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any, Protocol

import polars as pl

from clauditor.analytics.periods import resolve_period

__all__ = ["Budgets", "budget_status", "budget_status_of", "daily_spend", "threshold_crossings"]

DEFAULT_THRESHOLDS = (0.8, 1.0, 1.2)


def _local_start(tz: str) -> pl.Expr:
    return pl.col("start_time").dt.convert_time_zone(tz)


def daily_spend(calls: pl.DataFrame, *, tz: str = "UTC") -> pl.DataFrame:
    """Spend per calendar day in ``tz``: ``day`` (Date), ``cost_usd`` (unpriced calls are $0).

    Days without calls are absent.
    """
    return (
        calls.lazy()
        .group_by(_local_start(tz).dt.date().alias("day"))
        .agg(pl.col("cost_usd").fill_null(0.0).sum().alias("cost_usd"))
        .sort("day")
        .collect()
    )


def threshold_crossings(
    calls: pl.DataFrame,
    *,
    monthly_usd: float,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    tz: str = "UTC",
    feature: str | None = None,
) -> pl.DataFrame:
    """When each month's cumulative spend first reached each threshold of ``monthly_usd``.

    ``feature`` limits the spend to one feature. The crossing time is the start of the call
    that carried the month's running total (calls in start order, months in ``tz``) to
    ``threshold x monthly_usd`` or beyond. Columns: ``month`` (Date, the first of the month),
    ``threshold``, ``threshold_usd``, ``crossed_at``, ``spent_usd`` (the running total just
    after that call); one row per month and threshold crossed, sorted by time.
    """
    schema: dict[str, Any] = {
        "month": pl.Date,
        "threshold": pl.Float64,
        "threshold_usd": pl.Float64,
        "crossed_at": pl.Datetime("us", "UTC"),
        "spent_usd": pl.Float64,
    }
    lf = calls.lazy()
    if feature is not None:
        lf = lf.filter(pl.col("feature") == feature)
    running = (
        lf.select(
            "start_time",
            _local_start(tz).dt.date().dt.truncate("1mo").alias("month"),
            pl.col("cost_usd").fill_null(0.0).alias("cost"),
        )
        .sort("start_time")
        .with_columns(pl.col("cost").cum_sum().over("month").alias("spent_usd"))
        .collect()
    )
    frames = []
    for t in thresholds:  # a handful of thresholds, each one vectorized pass
        level = t * monthly_usd
        frames.append(
            running.filter(pl.col("spent_usd") >= level)
            .group_by("month")
            .agg(pl.col("start_time").first().alias("crossed_at"), pl.col("spent_usd").first())
            .with_columns(
                pl.lit(float(t)).alias("threshold"), pl.lit(float(level)).alias("threshold_usd")
            )
        )
    if not frames:
        return pl.DataFrame(schema=schema)
    out = pl.concat(frames).select(list(schema)).cast(schema)  # type: ignore[arg-type]
    return out.sort("crossed_at", "threshold")


def _class_stats(history: list[tuple[dt.date, float]]) -> dict[str, tuple[float, float, float]]:
    """(mean, standard deviation, days) of daily spend for ``weekday``, ``weekend`` and ``all``."""

    def stats(values: list[float]) -> tuple[float, float, float]:
        m = len(values)
        if m == 0:
            return 0.0, 0.0, 0
        mean = sum(values) / m
        var = sum((v - mean) ** 2 for v in values) / (m - 1) if m > 1 else mean**2
        return mean, math.sqrt(var), m

    every = [v for _, v in history]
    out = {"all": stats(every)}
    for name, weekend in (("weekday", False), ("weekend", True)):
        values = [v for d, v in history if (d.weekday() >= 5) == weekend]
        out[name] = stats(values) if len(values) >= 2 else out["all"]
    return out


def _early_stats(scoped: pl.DataFrame, end: dt.datetime) -> dict[str, tuple[float, float, float]]:
    """Run-rate statistics when fewer than two complete days are known (a new month of data, a
    new deployment): the spend since the first call over the time since it (at least an hour),
    as a daily rate, with a standard deviation as large as the rate and the observed fraction
    of a day as the sample size, so the interval is as wide as so little data deserves."""
    begun = scoped["start_time"].min()
    assert isinstance(begun, dt.datetime)
    observed_days = max((end - begun).total_seconds(), 3600.0) / 86400.0
    rate = float(scoped["cost_usd"].fill_null(0.0).sum()) / observed_days
    return {c: (rate, rate, observed_days) for c in ("all", "weekday", "weekend")}


def _day_class(day: dt.date) -> str:
    return "weekend" if day.weekday() >= 5 else "weekday"


class Budgets(Protocol):
    """A monthly budget, budgets per feature and thresholds: a config's ``[budget]`` section
    (:class:`clauditor.config.BudgetConfig`) or an alert rule's."""

    @property
    def monthly_usd(self) -> float | None: ...

    @property
    def features(self) -> Mapping[str, float]: ...

    @property
    def thresholds(self) -> Sequence[float]: ...


def budget_status_of(
    calls: pl.DataFrame, budgets: Budgets, *, as_of: dt.datetime, tz: str = "UTC"
) -> pl.DataFrame:
    """:func:`budget_status` with the budgets and thresholds of ``budgets``."""
    return budget_status(
        calls,
        monthly_usd=budgets.monthly_usd,
        feature_budgets=budgets.features,
        thresholds=budgets.thresholds,
        as_of=as_of,
        tz=tz,
    )


def budget_status(
    calls: pl.DataFrame,
    *,
    monthly_usd: float | None,
    feature_budgets: Mapping[str, float],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    as_of: dt.datetime,
    tz: str = "UTC",
    lookback_days: int = 28,
    interval: float = 0.9,
) -> pl.DataFrame:
    """Month-to-date spend, forecast and thresholds: one row for ``total``, one per budgeted
    feature.

    ``as_of`` (aware, or naive wall-clock time in ``tz``) is the evaluation moment: calls at or
    after it are ignored. ``monthly_usd`` None still reports spend and forecast for ``total``,
    with NULL budget columns. Columns: ``scope`` (``total`` or ``feature:<name>``),
    ``budget_usd``, ``spent_usd``, ``fraction`` (spent / budget), ``forecast_usd``,
    ``forecast_low_usd``, ``forecast_high_usd``, ``run_rate_usd`` (expected spend per day of the
    rest of the month), ``projected_runout`` (Date or NULL), ``thresholds_crossed`` (list of
    fractions), ``crossed_at`` (when the highest crossed threshold was first crossed). See the
    module docstring for the forecast.
    """
    month = resolve_period("mtd", as_of=as_of, tz=tz)
    zone = zoneinfo.ZoneInfo(tz)
    now_local = month.end.astimezone(zone)
    today = now_local.date()
    month_end_day = (month.start.astimezone(zone).date() + dt.timedelta(days=32)).replace(day=1)
    day_left = (
        1.0 - (now_local - dt.datetime.combine(today, dt.time(), zone)).total_seconds() / 86400.0
    )
    known = calls.filter(pl.col("start_time") < month.end)
    first_day = None
    if known.height:
        first_day = known.select(_local_start(tz).min().dt.date()).item()
    z = NormalDist().inv_cdf(0.5 + interval / 2.0)

    scopes: list[tuple[str, float | None, str | None]] = [("total", monthly_usd, None)]
    scopes += [(f"feature:{name}", float(b), name) for name, b in feature_budgets.items()]
    rows = []
    for scope, budget, feature in scopes:  # a few scopes; days below are at most a few dozen
        scoped = known if feature is None else known.filter(pl.col("feature") == feature)
        daily = dict(daily_spend(scoped, tz=tz).iter_rows())
        spent = float(
            scoped.filter(pl.col("start_time") >= month.start)["cost_usd"].fill_null(0.0).sum()
        )
        history = []
        for back in range(lookback_days, 0, -1):
            day = today - dt.timedelta(days=back)
            if first_day is not None and day >= first_day:
                history.append((day, float(daily.get(day, 0.0))))
        stats = _class_stats(history)
        if len(history) < 2 and scoped.height:
            stats = _early_stats(scoped, month.end)
        # Expected spend and variance of each remaining day (today counts for its rest).
        expected_days: list[tuple[dt.date, float]] = []
        var = 0.0
        counts: dict[str, float] = {}
        day = today
        while day < month_end_day:
            share = day_left if day == today else 1.0
            cls = _day_class(day)
            expected_days.append((day, stats[cls][0] * share))
            counts[cls] = counts.get(cls, 0.0) + share
            day += dt.timedelta(days=1)
        for cls, n in counts.items():
            _, sd, m = stats[cls]
            var += n * sd**2 + (n * n * sd**2 / m if m else 0.0)
        remaining = sum(v for _, v in expected_days)
        forecast = spent + remaining
        spread = z * math.sqrt(var)
        days_to_come = sum(counts.values())
        runout = None
        crossed: list[float] = []
        crossed_at = None
        if budget is not None:
            fraction = spent / budget if budget else None
            crossed = [float(t) for t in thresholds if spent >= t * budget]
            if crossed or spent >= budget:
                marks = threshold_crossings(
                    scoped.filter(pl.col("start_time") >= month.start),
                    monthly_usd=budget,
                    thresholds=[max(crossed), 1.0] if crossed else [1.0],
                    tz=tz,
                )
                by_t = {r["threshold"]: r["crossed_at"] for r in marks.iter_rows(named=True)}
                crossed_at = by_t.get(max(crossed)) if crossed else None
                if spent >= budget and 1.0 in by_t:
                    runout = by_t[1.0].astimezone(zone).date()
            if runout is None:
                running = spent
                for d, v in expected_days:
                    running += v
                    if running >= budget:
                        runout = d
                        break
        else:
            fraction = None
        rows.append(
            {
                "scope": scope,
                "budget_usd": budget,
                "spent_usd": spent,
                "fraction": fraction,
                "forecast_usd": forecast,
                "forecast_low_usd": max(spent, forecast - spread),
                "forecast_high_usd": forecast + spread,
                "run_rate_usd": remaining / days_to_come if days_to_come else 0.0,
                "projected_runout": runout,
                "thresholds_crossed": crossed,
                "crossed_at": crossed_at,
            }
        )
    schema: dict[str, pl.DataType] = {
        "scope": pl.String(),
        "budget_usd": pl.Float64(),
        "spent_usd": pl.Float64(),
        "fraction": pl.Float64(),
        "forecast_usd": pl.Float64(),
        "forecast_low_usd": pl.Float64(),
        "forecast_high_usd": pl.Float64(),
        "run_rate_usd": pl.Float64(),
        "projected_runout": pl.Date(),
        "thresholds_crossed": pl.List(pl.Float64),
        "crossed_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame(rows, schema=schema)
