"""Signals: each rule turned into episodes (stretches of time its condition held), from the
analytics jobs on DuckDB aggregates.

An :class:`Episode` says: rule R on key K held at level L from ``start`` to ``end`` (exclusive;
``None`` means still holding at the evaluation moment), with the message content for it. The
state machine in :mod:`clauditor.alerts.evaluate` only looks at episodes, so every rule behaves
the same way: start, escalate, hold, resolve.

Where the numbers come from (every job reads the :class:`AlertInputs` of the evaluation window,
the aggregates that the job commands read: never a frame of the window's calls):

=================  =========================================================================
``budget``         :func:`clauditor.analytics.budget.threshold_crossings`: one episode per
                   threshold crossed, from the crossing to the end of the month; level = the
                   threshold's rank (1 for the first). Key ``total`` or the feature name.
``forecast``       :func:`clauditor.analytics.budget.budget_status`: the month-end forecast
                   above ``margin`` x the budget, sampled at each midnight and at ``as_of``.
``error_rate``     :func:`~clauditor.analytics.errors.error_episodes_from_minutes` per
                   configured error class (the key); level 2 where the ``critical`` rate is
                   also sustained.
``spike``          :func:`clauditor.analytics.spikes.spike_episodes_from_hours`; key = the
                   ``by`` value.
``cache``          :func:`~clauditor.analytics.cache.cache_regressions_from_hours`; the episode
                   lasts until the hit ratio over a quarter of ``window`` is back above the
                   floor.
``unpriced_model`` calls with NULL cost per model, in runs of calls less than ``window`` apart
                   (the engine's ``unpriced_runs``); the episode lasts
                   ``window`` past the run's last unpriced call.
``unmetered``      :func:`clauditor.analytics.reconcile.reconcile` of the stored bill: UTC days
                   billed above what was metered (:func:`bill_episodes`); key ``total``.
``price_drift``    :func:`clauditor.analytics.reconcile.price_drift`; key = model and token type.
=================  =========================================================================

``visible_from`` is the earliest moment a ``check`` could have seen the episode (a sustained
error rate needs ``min_duration``, a cache fall a quarter of the window after it); backtests
use it so that hindsight does not make alerts look earlier than they would have been.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from clauditor.alerts.message import CONFIG_OPTION, RUN_OPTIONS
from clauditor.alerts.rules import AlertRules
from clauditor.analytics.budget import budget_status_of, threshold_crossings
from clauditor.analytics.cache import (
    cache_hit_ratio_series_from_hours,
    cache_regressions_from_hours,
)
from clauditor.analytics.engine import open_engine
from clauditor.analytics.errors import error_episodes_from_minutes
from clauditor.analytics.periods import Period
from clauditor.analytics.runner import budget_spend, rollup_at_zone
from clauditor.analytics.spikes import spike_episodes_from_hours

__all__ = [
    "RULE_TITLES",
    "AlertInputs",
    "Episode",
    "bill_episodes",
    "budget_episodes",
    "episodes",
    "forecast_episodes",
    "load_alert_inputs",
]

RULE_TITLES = {
    "budget": "Budget",
    "forecast": "Budget forecast",
    "error_rate": "Error rate",
    "spike": "Spend spike",
    "cache": "Cache hit ratio drop",
    "unpriced_model": "Unpriced model",
    "unmetered": "Unmetered spend",
    "price_drift": "Price drift",
}
UTC = dt.UTC


@dataclass(frozen=True)
class Episode:
    """One stretch of time during which a rule's condition held on one key, at one level."""

    rule: str
    key: str
    level: int
    severity: str
    start: dt.datetime
    end: dt.datetime | None
    visible_from: dt.datetime
    peak: float
    title: str
    summary: str
    fields: tuple[tuple[str, str], ...] = ()
    next_steps: tuple[str, ...] = ()
    anchor: dt.datetime | None = None  # names the incident when ``start`` is not stable

    def active(self, since: dt.datetime, until: dt.datetime) -> bool:
        """Whether the episode held at some moment of ``(since, until]`` and was visible."""
        return (
            self.start <= until
            and self.visible_from <= until
            and (self.end is None or self.end > since)
        )


@dataclass(frozen=True)
class AlertInputs:
    """The aggregates of one evaluation window that every rule reads (plain frames).

    ``hours``: the engine's hour rollup, with the spike rule's key (the cache and spike rules).
    ``minutes``: calls per minute and error class (error rates). ``spend``: the budget's spend
    rows, bucket sums and the calls themselves in the buckets where a budget threshold is
    crossed, in buckets that cut the rules' local days exactly. ``unpriced``: runs of unpriced
    calls per model.
    """

    hours: pl.DataFrame
    minutes: pl.DataFrame
    spend: pl.DataFrame
    unpriced: pl.DataFrame


def _scopes(rules: AlertRules) -> list[tuple[str, float, str | None]]:
    """(key, monthly dollars, feature or None for the account) of every budget the rules watch."""
    rule = rules.budget
    total = [("total", rule.monthly_usd, None)] if rule.monthly_usd is not None else []
    return [*total, *((name, usd, name) for name, usd in rule.features.items())]


def load_alert_inputs(db: Path, rules: AlertRules, period: Period) -> AlertInputs:
    """The :class:`AlertInputs` of ``period`` from the database file or Parquet folder ``db``
    (read-only; the app's calls, developers' Claude Code calls kept apart), through the
    engine's reductions as the job commands read them. Raises
    :class:`~clauditor.errors.StoreError` when it cannot be read."""
    tz, by = rules.timezone, rules.spike.by
    keys = [by] if by != "feature" else []
    levels = [(f, t * usd) for _, usd, f in _scopes(rules) for t in rules.budget.thresholds]
    with open_engine(db) as engine:
        local, grain = rollup_at_zone(engine, period, as_of=period.end, tz=tz, keys=keys)
        hours = local if grain == 60 else engine.rollup(period, as_of=period.end, keys=keys)
        return AlertInputs(
            hours=hours,
            minutes=engine.error_minutes(period),
            spend=budget_spend(engine, period, local, grain, levels, tz),
            unpriced=engine.unpriced_runs(period, rules.unpriced_model.window),
        )


def _secs(td: dt.timedelta) -> str:
    return f"{int(td.total_seconds())}s"


def _usd(x: float | None) -> str:
    return "unknown" if x is None else f"${x:,.2f}"


def _when(t: dt.datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _month_end(t: dt.datetime, tz: str) -> dt.datetime:
    local = t.astimezone(zoneinfo.ZoneInfo(tz))
    first = (local.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return dt.datetime.combine(first, dt.time(), zoneinfo.ZoneInfo(tz)).astimezone(UTC)


def _end(t: dt.datetime | None, as_of: dt.datetime) -> dt.datetime | None:
    """Episodes reaching the evaluation moment are still holding: their end is unknown."""
    return None if t is None or t >= as_of else t


# --- budget and forecast ------------------------------------------------------------------------


def budget_episodes(data: AlertInputs, rules: AlertRules, as_of: dt.datetime) -> list[Episode]:
    """Threshold crossings of the monthly budget, total and per feature."""
    rule = rules.budget
    if not rule.active:
        return []
    out = []
    cmd = f"clauditor budget --as-of {as_of:%Y-%m-%dT%H:%M:%SZ}{RUN_OPTIONS}"
    for key, budget, feature in _scopes(rules):  # the total plus a few budgeted features
        crossings = threshold_crossings(
            data.spend,
            monthly_usd=budget,
            thresholds=rule.thresholds,
            tz=rules.timezone,
            feature=feature,
        )
        where = "the whole account" if feature is None else f"feature {feature}"
        for row in crossings.iter_rows(named=True):
            level = rule.thresholds.index(row["threshold"]) + 1
            crossed = _aware(row["crossed_at"])
            pct = f"{row['threshold']:.0%}"
            out.append(
                Episode(
                    rule="budget",
                    key=key,
                    level=level,
                    severity=pct,
                    start=crossed,
                    end=_end(_month_end(crossed, rules.timezone), as_of),
                    visible_from=crossed,
                    peak=row["spent_usd"] / budget,
                    title=f"Budget {pct} reached: {where}",
                    summary=(
                        f"Month-to-date spend of {where} passed {pct} of its "
                        f"{_usd(budget)} monthly budget on {_when(crossed)}."
                    ),
                    fields=(
                        ("Budget", _usd(budget)),
                        ("Threshold", f"{pct} = {_usd(row['threshold_usd'])}"),
                        ("Spent when crossed", _usd(row["spent_usd"])),
                        ("Crossed at", _when(crossed)),
                    ),
                    next_steps=(
                        cmd,
                        # A command only, so it runs when pasted: the title names the feature.
                        f"clauditor costs --period mtd --by feature,model{RUN_OPTIONS}",
                    ),
                )
            )
    return out


def forecast_episodes(
    data: AlertInputs, rules: AlertRules, moments: list[dt.datetime], as_of: dt.datetime
) -> list[Episode]:
    """The month-end forecast above budget, judged at each of ``moments`` (sorted).

    The condition holds from a moment at which it was true until the next moment it was judged
    false (or the month ended).
    """
    rule, budget = rules.forecast, rules.budget
    if not (rule.enabled and budget.active):
        return []
    zone = zoneinfo.ZoneInfo(rules.timezone)
    states: dict[str, list[tuple[dt.datetime, dict | None]]] = {}
    for moment in moments:  # a few dozen moments at most (midnights plus as_of)
        status = budget_status_of(data.spend, budget, as_of=moment, tz=rules.timezone)
        local = moment.astimezone(zone)
        month_start = dt.datetime.combine(local.date().replace(day=1), dt.time(), zone)
        days = (local - month_start).total_seconds() / 86400
        for row in status.iter_rows(named=True):
            firing = (
                row["budget_usd"] is not None
                and days >= rule.min_days
                and row["forecast_usd"] > rule.margin * row["budget_usd"]
            )
            states.setdefault(row["scope"], []).append((moment, row if firing else None))
    out = []
    for scope, samples in states.items():
        key = "total" if scope == "total" else scope.removeprefix("feature:")
        i = 0
        while i < len(samples):
            moment, row = samples[i]
            if row is None:
                i += 1
                continue
            # Consecutive firing samples of the same month make one episode.
            month_end = _month_end(moment, rules.timezone)
            j = i
            while (
                j + 1 < len(samples)
                and samples[j + 1][1] is not None
                and samples[j + 1][0] < month_end
            ):
                j += 1
            last_row = samples[j][1]
            assert last_row is not None
            if j + 1 < len(samples):
                end: dt.datetime | None = min(samples[j + 1][0], month_end)
            else:
                end = _end(month_end, as_of)
            out.append(_forecast_episode(key, moment, end, last_row, rules))
            i = j + 1
    return out


def _forecast_episode(
    key: str, start: dt.datetime, end: dt.datetime | None, row: dict, rules: AlertRules
) -> Episode:
    where = "the whole account" if key == "total" else f"feature {key}"
    runout = row["projected_runout"]
    # Named by its month so that every run agrees on the incident, whatever moment it runs at.
    zone = zoneinfo.ZoneInfo(rules.timezone)
    month_start = dt.datetime.combine(
        start.astimezone(zone).date().replace(day=1), dt.time(), zone
    ).astimezone(UTC)
    return Episode(
        rule="forecast",
        key=key,
        level=1,
        severity="over budget",
        start=start,
        anchor=month_start,
        end=end,
        visible_from=start,
        peak=row["forecast_usd"] / row["budget_usd"],
        title=f"Forecast over budget: {where}",
        summary=(
            f"At the current run rate {where} will spend about {_usd(row['forecast_usd'])} "
            f"this month against a budget of {_usd(row['budget_usd'])}"
            + (
                f"; the budget was used up on {runout}."
                if runout and row["spent_usd"] >= row["budget_usd"]
                else f"; the budget runs out around {runout}."
                if runout
                else "."
            )
        ),
        fields=(
            ("Spent so far", _usd(row["spent_usd"])),
            ("Budget", _usd(row["budget_usd"])),
            ("Forecast", _usd(row["forecast_usd"])),
            (
                "Forecast range (90 %)",
                f"{_usd(row['forecast_low_usd'])} to {_usd(row['forecast_high_usd'])}",
            ),
            ("Run rate", f"{_usd(row['run_rate_usd'])} a day"),
        ),
        next_steps=(
            f"clauditor budget{RUN_OPTIONS}",
            f"clauditor costs --period mtd --by feature,model{RUN_OPTIONS}",
        ),
    )


# --- errors, spikes, cache, unpriced -------------------------------------------------------------


def error_rate_episodes(data: AlertInputs, rules: AlertRules, as_of: dt.datetime) -> list[Episode]:
    """Sustained error rates per configured class; level 2 above ``critical``."""
    rule = rules.error_rate
    if not rule.enabled or data.hours.is_empty():
        return []
    levels = [(1, rule.threshold)] + ([(2, rule.critical)] if rule.critical else [])
    out = []
    for level, threshold in levels:
        found = error_episodes_from_minutes(
            data.minutes,
            window=_secs(rule.window),
            threshold=threshold,
            min_duration=_secs(rule.min_duration),
            min_calls=rule.min_calls,
            min_errors=rule.min_errors,
        ).filter(pl.col("error_class").is_in(list(rule.classes)))
        for row in found.iter_rows(named=True):
            start, end = _aware(row["start"]), _aware(row["end"])
            cls = row["error_class"]
            out.append(
                Episode(
                    rule="error_rate",
                    key=cls,
                    level=level,
                    severity="critical" if level == 2 else "warning",
                    start=start,
                    end=_end(end, as_of),
                    visible_from=start + rule.min_duration,
                    peak=row["peak_rate"],
                    title=f"Error rate {row['peak_rate']:.0%}: {cls} errors",
                    summary=(
                        f"{row['errors']} of {row['calls']} calls failed with {cls} errors "
                        f"from {_when(start)} ({row['error_rate']:.1%} overall, peak "
                        f"{row['peak_rate']:.1%} over {_secs(rule.window)}), above the "
                        f"{threshold:.1%} threshold."
                    ),
                    fields=(
                        ("Error class", cls),
                        ("Failed calls", f"{row['errors']} of {row['calls']}"),
                        ("Peak rate", f"{row['peak_rate']:.1%}"),
                        ("Threshold", f"{threshold:.1%}"),
                        ("Since", _when(start)),
                    ),
                    next_steps=(
                        f"clauditor errors --as-of {end:%Y-%m-%dT%H:%M:%SZ}{RUN_OPTIONS}",
                        "https://status.anthropic.com (overloaded errors are platform-wide)",
                    ),
                )
            )
    return out


def spike_rule_episodes(data: AlertInputs, rules: AlertRules, as_of: dt.datetime) -> list[Episode]:
    """Hours of spend far above the key's baseline, merged into episodes."""
    rule = rules.spike
    if not rule.enabled or data.hours.is_empty():
        return []
    found = spike_episodes_from_hours(
        data.hours,
        by=rule.by,
        baseline_hours=int(rule.baseline.total_seconds() // 3600),
        min_baseline_hours=int(rule.min_baseline.total_seconds() // 3600),
        z=rule.z,
        min_usd=rule.min_usd,
    )
    out = []
    for row in found.iter_rows(named=True):
        start, end = _aware(row["start"]), _aware(row["end"])
        key = row["key"]
        out.append(
            Episode(
                rule="spike",
                key=key,
                level=1,
                severity="warning",
                start=start,
                end=_end(end, as_of),
                visible_from=start,
                peak=row["peak_score"],
                title=f"Spend spike: {rule.by} {key}",
                summary=(
                    f"{rule.by} {key} spent {_usd(row['cost_usd'])} in {row['hours']} h from "
                    f"{_when(start)}, {_usd(row['excess_usd'])} above its usual level "
                    f"({row['reason']})."
                ),
                fields=(
                    (rule.by.capitalize(), key),
                    ("Spend", _usd(row["cost_usd"])),
                    ("Above usual", _usd(row["excess_usd"])),
                    ("Calls", str(row["calls"])),
                    ("Why", row["reason"]),
                    ("Since", _when(start)),
                ),
                next_steps=(
                    f"clauditor spikes --as-of {end:%Y-%m-%dT%H:%M:%SZ}{RUN_OPTIONS}",
                    f"clauditor costs --period today --by feature,model{RUN_OPTIONS}",
                ),
            )
        )
    return out


def cache_episodes(data: AlertInputs, rules: AlertRules, as_of: dt.datetime) -> list[Episode]:
    """Lasting falls of a feature's cache hit ratio, until it recovers."""
    rule = rules.cache
    if not rule.enabled or data.hours.is_empty():
        return []
    hours = int(rule.window.total_seconds() // 3600)
    found = cache_regressions_from_hours(
        data.hours,
        every="1h",
        drop=rule.drop,
        min_calls=rule.min_calls,
        window=hours,
        min_before_ratio=rule.min_before_ratio,
        by="feature",
    )
    if found.height == 0:
        return []
    quarter = max(1, hours // 4)
    # Recovered: the token-weighted ratio over the last quarter-window is back above the floor.
    series = (
        cache_hit_ratio_series_from_hours(data.hours, every="1h", by="feature")
        .sort("key", "bucket")
        .with_columns(
            (
                pl.col("cache_read_input_tokens").rolling_sum(quarter, min_samples=1)
                / (
                    pl.col("input_tokens")
                    + pl.col("cache_read_input_tokens")
                    + pl.col("cache_creation_input_tokens")
                ).rolling_sum(quarter, min_samples=1)
            )
            .over("key")
            .alias("recent_ratio")
        )
    )
    floor = (1.0 - rule.drop) * pl.col("before_ratio")
    recovered = (
        found.join(series, on="key")
        .filter(
            (pl.col("bucket") >= pl.col("start") + pl.duration(hours=quarter))
            & (pl.col("recent_ratio") > floor)
        )
        .group_by("key", "start")
        .agg((pl.col("bucket").min() + pl.duration(hours=1)).alias("recovered_at"))
    )
    found = found.join(recovered, on=["key", "start"], how="left")
    out = []
    for row in found.iter_rows(named=True):
        start = _aware(row["start"])
        end = _aware(row["recovered_at"]) if row["recovered_at"] is not None else None
        key = row["key"]
        out.append(
            Episode(
                rule="cache",
                key=key,
                level=1,
                severity="warning",
                start=start,
                end=_end(end, as_of),
                visible_from=start + dt.timedelta(hours=quarter),
                peak=row["before_ratio"] - row["after_ratio"],
                title=f"Cache hit ratio drop: feature {key}",
                summary=(
                    f"The cache hit ratio of feature {key} fell from {row['before_ratio']:.0%} "
                    f"to {row['after_ratio']:.0%} from {_when(start)}: calls are writing the "
                    "cache instead of reading it (a prompt prefix that changes per call, or a "
                    "deploy that moved the cache breakpoint)."
                ),
                fields=(
                    ("Feature", key),
                    ("Hit ratio before", f"{row['before_ratio']:.0%}"),
                    ("Hit ratio after", f"{row['after_ratio']:.0%}"),
                    ("Since", _when(start)),
                ),
                next_steps=(
                    f"clauditor cache --period 7d{RUN_OPTIONS}",
                    "what was deployed at that time?",
                ),
            )
        )
    return out


def unpriced_episodes(data: AlertInputs, rules: AlertRules, as_of: dt.datetime) -> list[Episode]:
    """Models called without a price; an episode lasts ``window`` past the last such call."""
    rule = rules.unpriced_model
    runs = data.unpriced
    if not rule.enabled or runs.height == 0:
        return []
    totals = dict(runs.group_by("model").agg(pl.col("calls").sum()).iter_rows())
    out = []
    for row in runs.iter_rows(named=True):
        first, last = _aware(row["first"]), _aware(row["last"])
        model_id = row["model"]
        out.append(
            Episode(
                rule="unpriced_model",
                key=model_id,
                level=1,
                severity="warning",
                start=first,
                end=_end(last + rule.window, as_of),
                visible_from=first,
                peak=float(row["calls"]),
                title=f"Unpriced model: {model_id}",
                summary=(
                    f"Calls to {model_id} have no price, so their cost is unknown and missing "
                    f"from every total ({totals.get(model_id, row['calls'])} calls so far, "
                    f"first on {_when(first)})."
                ),
                fields=(
                    ("Model", model_id),
                    ("Unpriced calls", str(row["calls"])),
                    ("First seen", _when(first)),
                    ("Last seen", _when(last)),
                ),
                next_steps=(
                    f'add a rate card: [prices."{model_id}"] with input, output, cache_read, '
                    "cache_write_5m and cache_write_1h ($ per million tokens) in the config",
                    # `prices check` lists the upstream's price of models clauditor has no card for.
                    f"or see the upstream's price: `clauditor prices check{CONFIG_OPTION}`",
                ),
            )
        )
    return out


def episodes(
    data: AlertInputs,
    rules: AlertRules,
    as_of: dt.datetime,
    *,
    forecast_moments: list[dt.datetime] | None = None,
) -> list[Episode]:
    """Every rule's episodes over ``data`` (a window that must end by ``as_of``).

    ``forecast_moments`` are when the forecast is judged (default: only ``as_of``); each
    must be a local midnight or the window's end, so that no bucket straddles it.
    """
    found = budget_episodes(data, rules, as_of)
    found += forecast_episodes(data, rules, forecast_moments or [as_of], as_of)
    found += error_rate_episodes(data, rules, as_of)
    found += spike_rule_episodes(data, rules, as_of)
    found += cache_episodes(data, rules, as_of)
    found += unpriced_episodes(data, rules, as_of)
    return found


# --- the bill (clauditor reconcile) ------------------------------------------------------------


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _runs(
    days: list[dt.date], flagged: set[dt.date]
) -> list[tuple[dt.date, dt.date, dt.date | None]]:
    """Runs of flagged days among ``days`` (sorted): (first, last flagged, first clear after)."""
    runs: list[tuple[dt.date, dt.date, dt.date | None]] = []
    first = last = None
    for day in days:
        if day in flagged:
            first = first or day
            last = day
        elif first is not None and last is not None:
            runs.append((first, last, day))
            first = last = None
    if first is not None and last is not None:
        runs.append((first, last, None))
    return runs


def bill_episodes(
    by_model: pl.DataFrame,
    by_key: pl.DataFrame,
    drift: pl.DataFrame,
    rules: AlertRules,
    as_of: dt.datetime,
) -> list[Episode]:
    """The ``unmetered`` and ``price_drift`` episodes of a reconciliation of stored bill days.

    ``by_model`` and ``by_key`` are :func:`clauditor.analytics.reconcile.reconcile`'s rows at
    each grain, ``drift`` its :func:`~clauditor.analytics.reconcile.price_drift`. A day's bill
    is visible once the day is over; an episode holds until a later stored day is clear (its
    end is that day's end).
    """
    out: list[Episode] = []
    if by_model.height == 0:
        return out
    days = sorted(by_model["day"].unique().to_list())

    def end_of(clear: dt.date | None) -> dt.datetime | None:
        return _end(None if clear is None else _day_start(clear) + dt.timedelta(days=1), as_of)

    un = rules.unmetered
    if un.enabled:
        totals = by_model.group_by("day").agg(
            pl.col("billed_usd", "metered_usd", "unmetered_usd").sum()
        )
        over = totals.filter(
            (pl.col("unmetered_usd") >= un.min_usd)
            & (pl.col("unmetered_usd") > un.threshold * pl.col("billed_usd"))
        )
        per_day = {row["day"]: row for row in over.iter_rows(named=True)}
        for first, last, clear in _runs(days, set(per_day)):
            worst = max(
                (per_day[d] for d in per_day if first <= d <= last),
                key=lambda r: r["unmetered_usd"],
            )
            who = (
                by_key.filter((pl.col("day") == last) & (pl.col("unmetered_usd") > 0))
                .sort("unmetered_usd", descending=True)
                .head(5)
            )
            names = [
                f"{r['service'] or 'key ' + str(r['api_key_id'])} {_usd(r['unmetered_usd'])}"
                for r in who.iter_rows(named=True)
            ]
            share = worst["unmetered_usd"] / worst["billed_usd"] if worst["billed_usd"] else 1.0
            out.append(
                Episode(
                    rule="unmetered",
                    key="total",
                    level=1,
                    severity="warning",
                    start=_day_start(first),
                    end=end_of(clear),
                    visible_from=_day_start(first) + dt.timedelta(days=1),
                    peak=float(worst["unmetered_usd"]),
                    title="Unmetered spend on Anthropic's bill",
                    summary=(
                        f"Anthropic billed {_usd(worst['unmetered_usd'])} ({share:.0%}) more than "
                        f"clauditor metered on {worst['day']} (UTC), from {first} on"
                        + (f": {', '.join(names)} on {last}." if names else ".")
                    ),
                    fields=(
                        ("Day (UTC)", str(worst["day"])),
                        ("Billed", _usd(worst["billed_usd"])),
                        ("Metered", _usd(worst["metered_usd"])),
                        ("Unmetered", f"{_usd(worst['unmetered_usd'])} ({share:.0%})"),
                    ),
                    next_steps=(
                        "instrument the services named (or name their API keys in "
                        "[reconcile.api_keys])",
                        "`clauditor reconcile --by api_key` shows each service's gap per day",
                    ),
                )
            )

    pd = rules.price_drift
    if pd.enabled and drift.height:
        for (model, token_type), found in drift.group_by(
            "model", "token_type", maintain_order=True
        ):
            model_days = sorted(
                by_model.filter((pl.col("model") == model) & (pl.col("billed_usd") > 0))["day"]
                .unique()
                .to_list()
            )
            flagged = set(found["day"].to_list())
            for first, last, clear in _runs(model_days or sorted(flagged), flagged):
                row = found.filter(pl.col("day") == last).row(0, named=True)
                out.append(
                    Episode(
                        rule="price_drift",
                        key=f"{model} {token_type}",
                        level=1,
                        severity="warning",
                        start=_day_start(first),
                        end=end_of(clear),
                        visible_from=_day_start(first) + dt.timedelta(days=1),
                        peak=float(row["billed_per_mtok"]),
                        title=f"Price drift: {model} {token_type}",
                        summary=(
                            f"Anthropic billed {model} {token_type} at "
                            f"${row['billed_per_mtok']:,.4f}/MTok from {first} (UTC); clauditor's "
                            f"rate card says ${row['card_per_mtok']:,.4f}/MTok, so metered "
                            "dollars are off."
                        ),
                        fields=(
                            ("Model", str(model)),
                            ("Token type", str(token_type)),
                            ("Billed", f"${row['billed_per_mtok']:,.4f}/MTok"),
                            ("Card", f"${row['card_per_mtok']:,.4f}/MTok"),
                            ("First day", str(first)),
                        ),
                        next_steps=(
                            f'a contract rate: add it as [prices."{model}"] in the config',
                            "a new list price: `clauditor prices check`, then `clauditor reprice`",
                        ),
                    )
                )
    return out
