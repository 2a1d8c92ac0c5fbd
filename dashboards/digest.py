"""The daily digest that ``clauditor report --notify`` posts to Slack and/or a webhook.

Made for cron: every run writes the report, and the first run of a day (in the configured time
zone) also posts yesterday's digest. It says:

* yesterday's priced spend, against the day before and the same weekday a week earlier;
* the top features of yesterday and the biggest movers against the day before (by dollars);
* the month's budget status and month-end forecast, as ``clauditor budget`` shows them;
* the open alert incidents (those of ``clauditor alerts check``, in the same database);
* yesterday's unpriced calls (no rate card: not in any dollar figure), per model;
* where the full report is: ``[report] url`` when configured, else the path written.

Every figure comes from the jobs the CLI commands run on the same aggregates
(:func:`~clauditor.dashboards.data.load_digest_figures`: the hourly aggregate's breakdowns, as
``clauditor costs``; the budget's spend rows, as ``clauditor budget``, in any time zone), so
the digest and ``clauditor costs --period yesterday`` never disagree.

Delivery reuses the alerts' outbox (:mod:`clauditor.alerts.state`) and sinks
(:mod:`clauditor.alerts.deliver`): the digest is a message of rule ``report``, keyed by its day,
so however often cron runs it is sent once per day; a failed delivery stays in the outbox and
the next ``report --notify`` (or ``alerts check``) retries it word for word. The webhook URLs
come only from the environment and are secrets as they are for alerts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from clauditor.alerts.deliver import Sink, sinks_from_env
from clauditor.alerts.evaluate import send_claimed
from clauditor.alerts.message import AlertMessage
from clauditor.alerts.state import (
    Incident,
    claim_transitions,
    load_open_incidents,
    record_deliveries,
)
from clauditor.analytics.periods import Period, resolve_period
from clauditor.config import Config
from clauditor.dashboards.data import load_digest_figures
from clauditor.dashboards.sections import format_usd
from clauditor.errors import ConfigError
from clauditor.semconv import ENV_SLACK_WEBHOOK_URL, ENV_WEBHOOK_URL

__all__ = ["DIGEST_RULE", "Digest", "NotifyResult", "build_digest", "digest_message", "notify"]

DIGEST_RULE = "report"
_TOP = 5
_MOVERS = 3


@dataclass(frozen=True)
class Digest:
    """Yesterday's figures. Dollars are priced spend (unpriced calls are counted apart).

    ``top``: (feature, dollars), costliest first; ``movers``: (feature, dollars, the day
    before's dollars), largest change first; ``budget``: the ``total`` row of
    :func:`~clauditor.analytics.budget.budget_status` (None without spend data this month).
    """

    day: dt.date
    tz: str
    as_of: dt.datetime
    spent_usd: float
    day_before_usd: float
    last_week_usd: float
    top: list[tuple[str, float]]
    movers: list[tuple[str, float, float]]
    budget: dict[str, Any] | None
    monthly_usd: float | None
    incidents: list[Incident]
    unpriced_calls: int
    unpriced_models: list[tuple[str, int]]
    report: str


def _day(day: dt.date, tz: str) -> Period:
    return resolve_period(day.isoformat(), tz=tz)


def _budget_total(status: pl.DataFrame) -> dict[str, Any] | None:
    total = status.filter(pl.col("scope") == "total")
    return total.row(0, named=True) if total.height else None


def _spend(breakdown: pl.DataFrame) -> float:
    return float(breakdown["cost_usd"].sum() or 0.0)


def build_digest(
    db: str | Path, config: Config, *, report: str, as_of: dt.datetime | None = None
) -> Digest:
    """Yesterday's digest as of ``as_of`` (default now), in ``config.timezone``.

    ``report`` is where the full report is (a path or URL). Raises
    :class:`~clauditor.errors.StoreError` when the database cannot be read.
    """
    db = Path(db)
    tz = config.timezone
    now = as_of or dt.datetime.now(dt.UTC)
    yesterday = resolve_period("yesterday", as_of=now, tz=tz)
    day = yesterday.start.astimezone(ZoneInfo(tz)).date()
    before = _day(day - dt.timedelta(days=1), tz)
    week = _day(day - dt.timedelta(days=7), tz)

    figures = load_digest_figures(db, config, day=yesterday, before=before, week=week, as_of=now)
    features, models = figures.features, figures.models
    priced = features.filter(pl.col("cost_usd") > 0).sort(
        ["cost_usd", "feature"], descending=[True, False]
    )
    change = figures.change.with_columns(
        pl.col("cost_usd").fill_null(0.0),
        pl.col("previous_cost_usd").fill_null(0.0),
    )
    movers = (
        change.with_columns((pl.col("cost_usd") - pl.col("previous_cost_usd")).alias("delta"))
        .filter(pl.col("delta") != 0)
        .sort([pl.col("delta").abs(), pl.col("feature")], descending=[True, False])
        .head(_MOVERS)
    )
    unpriced = models.filter(pl.col("unpriced_calls") > 0).sort(
        ["unpriced_calls", "model"], descending=[True, False]
    )
    return Digest(
        day=day,
        tz=tz,
        as_of=now,
        spent_usd=_spend(features),
        day_before_usd=_spend(figures.features_before),
        last_week_usd=_spend(figures.features_week),
        top=[(str(f), float(c)) for f, c in priced.select("feature", "cost_usd").head(_TOP).rows()],
        movers=[
            (str(f), float(c), float(p))
            for f, c, p in movers.select("feature", "cost_usd", "previous_cost_usd").rows()
        ],
        budget=_budget_total(figures.budget),
        monthly_usd=config.budget.monthly_usd,
        incidents=sorted(load_open_incidents(db).values(), key=lambda i: (i.rule, i.key)),
        unpriced_calls=int(unpriced["unpriced_calls"].sum() or 0),
        unpriced_models=[
            (str(m), int(n)) for m, n in unpriced.select("model", "unpriced_calls").rows()
        ],
        report=report,
    )


def _versus(now: float, then: float) -> str:
    if then == 0:
        return "no spend" if now == 0 else "new spend"
    ratio = now / then - 1
    if abs(ratio) < 0.0005:
        return "unchanged"
    return f"{'▲' if ratio > 0 else '▼'} {abs(ratio):.1%}"


def _budget_lines(d: Digest) -> tuple[str, str]:
    row = d.budget
    month = d.as_of.astimezone(ZoneInfo(d.tz)).strftime("%B")
    if row is None:
        return "no spend this month", "—"
    spent = format_usd(row["spent_usd"])
    if d.monthly_usd:
        fraction = row["fraction"] or 0.0
        status = f"{spent} of {format_usd(d.monthly_usd)} ({fraction:.0%}) in {month}"
        crossed = row["thresholds_crossed"] or []
        if crossed:
            status += f"; passed {max(crossed):.0%}"
    else:
        status = f"{spent} in {month} so far; no monthly budget configured"
    if row["forecast_usd"] is None:
        return status, "not enough history yet"
    forecast = (
        f"{format_usd(row['forecast_usd'])} by month end (90 %: "
        f"{format_usd(row['forecast_low_usd'])}–{format_usd(row['forecast_high_usd'])})"
    )
    if d.monthly_usd:
        runout = row["projected_runout"]
        forecast += f"; budget runs out {runout:%b %d}" if runout else "; stays within budget"
    return status, forecast


def digest_message(d: Digest) -> AlertMessage:
    """The digest as an outbox message: rule ``report``, key and incident its day."""
    weekday = f"{d.day:%A}"
    summary = (
        f"Spent {format_usd(d.spent_usd)} on {weekday} {d.day:%Y-%m-%d} ({d.tz}): "
        f"{_versus(d.spent_usd, d.day_before_usd)} vs the day before "
        f"({format_usd(d.day_before_usd)}), {_versus(d.spent_usd, d.last_week_usd)} vs "
        f"{weekday} last week ({format_usd(d.last_week_usd)})."
    )
    budget, forecast = _budget_lines(d)
    top = "\n".join(f"{name}: {format_usd(cost)}" for name, cost in d.top) or "no priced spend"
    movers = (
        "\n".join(
            f"{name}: {'+' if now >= then else '−'}{format_usd(abs(now - then))} "
            f"({format_usd(then)} → {format_usd(now)})"
            for name, now, then in d.movers
        )
        or "no change"
    )
    incidents = (
        "\n".join(
            f"{i.rule} {i.key} ({i.severity}) since {i.started_at:%Y-%m-%d %H:%M} UTC"
            for i in d.incidents
        )
        or "none"
    )
    unpriced = "none"
    if d.unpriced_calls:
        models = ", ".join(f"{m} ({n:,})" for m, n in d.unpriced_models)
        unpriced = f"{d.unpriced_calls:,} calls without a price, in no dollar figure: {models}"
    start = dt.datetime.combine(d.day, dt.time(), ZoneInfo(d.tz)).astimezone(dt.UTC)
    key = d.day.isoformat()
    return AlertMessage(
        rule=DIGEST_RULE,
        key=key,
        incident=f"{DIGEST_RULE}|{key}",
        transition="digest",
        level=0,
        severity="info",
        title=f"Claude API spend, {weekday} {d.day:%Y-%m-%d}",
        summary=summary,
        started_at=start,
        as_of=d.as_of.astimezone(dt.UTC),
        fields=(
            ("Day before", f"{format_usd(d.day_before_usd)}"),
            (f"{weekday} last week", f"{format_usd(d.last_week_usd)}"),
            ("Top features", top),
            ("Biggest movers", movers),
            ("Budget", budget),
            ("Forecast", forecast),
            ("Open incidents", incidents),
            ("Unpriced calls", unpriced),
            ("Full report", d.report),
        ),
        next_steps=(f"clauditor costs --period {key}",),
        extra={
            "day": key,
            "timezone": d.tz,
            "spent_usd": d.spent_usd,
            "day_before_usd": d.day_before_usd,
            "last_week_usd": d.last_week_usd,
            "top_features": [{"feature": f, "cost_usd": c} for f, c in d.top],
            "movers": [
                {"feature": f, "cost_usd": c, "previous_cost_usd": p} for f, c, p in d.movers
            ],
            "budget_usd": d.monthly_usd,
            "month_spent_usd": d.budget["spent_usd"] if d.budget else None,
            "forecast_usd": d.budget["forecast_usd"] if d.budget else None,
            "open_incidents": [f"{i.rule}|{i.key}" for i in d.incidents],
            "unpriced_calls": d.unpriced_calls,
            "report": d.report,
        },
    )


@dataclass(frozen=True)
class NotifyResult:
    """What one ``report --notify`` did: the day's digest, the messages it sent (the day's and
    any earlier failed one it retried), and those that failed, with the reason (kept in the
    outbox and retried by the next run)."""

    day: dt.date
    sent: list[AlertMessage] = field(default_factory=list)
    failed: list[tuple[AlertMessage, str]] = field(default_factory=list)


def notify(
    db: str | Path,
    config: Config,
    *,
    report: str,
    as_of: dt.datetime | None = None,
    sinks: Sequence[Sink] | None = None,
) -> NotifyResult:
    """Post yesterday's digest unless this day's was already delivered; retry failed ones.

    ``sinks`` default to the destinations in the environment (``$CLAUDITOR_SLACK_WEBHOOK_URL``,
    ``$CLAUDITOR_WEBHOOK_URL``); none configured is a :class:`~clauditor.errors.ConfigError`.
    A failed delivery does not raise: it is in :attr:`NotifyResult.failed`.
    """
    db = Path(db)
    targets = list(sinks_from_env() if sinks is None else sinks)
    if not targets:
        raise ConfigError(
            f"--notify needs a destination: set ${ENV_SLACK_WEBHOOK_URL} and/or ${ENV_WEBHOOK_URL}"
        )
    message = digest_message(build_digest(db, config, report=report, as_of=as_of))
    run_id = uuid.uuid4().hex
    claimed = claim_transitions(db, lambda _open: [message], run_id=run_id, retry_rule=DIGEST_RULE)
    result, deliveries = send_claimed(claimed.to_send, targets)
    record_deliveries(db, deliveries, run_id=run_id)
    return NotifyResult(
        day=dt.date.fromisoformat(message.key), sent=result.sent, failed=result.failed
    )
