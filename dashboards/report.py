"""The self-contained HTML spend report (``clauditor report``).

One HTML file that opens offline, in any browser or as an email attachment: plotly.js is inlined
exactly once in the page head and every figure is a ``<div>`` that uses it, with no external
script, stylesheet, font or image. The report covers one period (``--period``, cut in the
report's time zone: ``tz``, else the configured one) and shows, top to bottom:

* the exact period and how fresh the data is (the newest span at or before ``as_of``);
* headline cards: spend and its change against :meth:`Period.previous`, budget used this month,
  the month-end forecast and when the budget runs out, calls and cost per call, untagged spend,
  unpriced calls; then health cards (error rate, spikes, cost of failure, cache savings);
* notices: every model without a price (always present: unpriced calls are missing from every
  dollar figure), and spend beyond token counts;
* spend per day stacked by feature; the month's budget burn-up with thresholds, crossings and
  the forecast band, and the budget table;
* the feature x model table (calls, the four token counts, hit ratio, cost, cost per call,
  change); model mix; untagged spend per code location;
* cache economics (hit ratio over time with regressions, savings, wasted writes, candidates);
  error rate by class with the threshold and episodes; latency and TTFT percentiles;
* billed vs metered: the stored bill (``clauditor reconcile --fetch``) against the calls per
  UTC day of the period, as ``clauditor reconcile`` compares them, with the drifted prices;
  the report reads the stored bill and never fetches it;
* spend spikes; the cost of failure; the audit scorecard.

Every figure is exact and equals what the matching job command says (``clauditor costs``,
``cache``, ``errors``, ``latency``, ``budget``, ``failures``, ``spikes``, ``audit``): the report
runs the same jobs on the same DuckDB aggregates, whatever the number of calls
(:mod:`clauditor.dashboards.data`). Figures only ever get aggregates, so the file is about
5 MB of plotly.js plus a few hundred kB whatever the number of calls. Every string from
telemetry is HTML-escaped, in the tables and in the figures alike.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
from plotly.offline import get_plotlyjs

from clauditor import __version__
from clauditor.analytics.periods import Period, resolve_period
from clauditor.analytics.reconcile import Reconciliation, reconcile_stored
from clauditor.config import Config
from clauditor.dashboards import sections
from clauditor.dashboards.data import (
    UNTAGGED,
    ReportData,
    load_report_data,
    report_data_from_frame,
)
from clauditor.dashboards.figures import (
    daily_spend_figure,
    model_mix_figure,
    untagged_figure,
)
from clauditor.dashboards.page import CSS, PAGE
from clauditor.dashboards.sections import esc, figure_html, format_usd
from clauditor.errors import StoreError

__all__ = ["ReportSummary", "format_usd", "render_data", "render_report", "write_report"]


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote: the file, the period, its calls and priced spend.

    ``cost_usd`` excludes the ``unpriced_calls`` (their cost is unknown); ``bytes`` is the size
    of the written file.
    """

    out: Path
    period: Period
    calls: int
    cost_usd: float
    unpriced_calls: int
    bytes: int


def _as_of(as_of: dt.datetime | None, tz: str) -> dt.datetime:
    if as_of is None:
        return dt.datetime.now(dt.UTC)
    if as_of.tzinfo is None:  # wall-clock time in the report's zone, as resolve_period reads it
        return as_of.replace(tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)
    return as_of.astimezone(dt.UTC)


def write_report(
    db: str | Path,
    out: str | Path,
    *,
    period: str = "30d",
    as_of: dt.datetime | None = None,
    config: Config | None = None,
    tz: str | None = None,
) -> ReportSummary:
    """Write the HTML report of ``period`` (a :func:`resolve_period` spec) to ``out``.

    Days, months and displayed times follow ``tz`` (an IANA zone), else ``config.timezone``
    (UTC without a config). ``as_of`` (default: now; naive means wall-clock time in that zone)
    fixes what "today", "7d" or "mtd" mean, so a past report can be reproduced. The budget
    comes from ``config.budget``. Every figure is exact at any number of calls. The file is
    written atomically (a reader never sees half of it). Raises :class:`ValueError` for a bad
    period spec or zone and :class:`~clauditor.errors.StoreError` when the database cannot be
    read.
    """
    config = config or Config()
    zone = tz or config.timezone
    when = _as_of(as_of, zone)
    current = resolve_period(period, as_of=when, tz=zone)
    data = load_report_data(db, current, as_of=when, config=config)
    page = render_data(data, config, bill=_stored_bill(db, current, config))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)

    totals = _totals(data)
    return ReportSummary(
        out=out,
        period=current,
        calls=data.calls,
        cost_usd=totals["cost"],
        unpriced_calls=int(totals["unpriced"]),
        bytes=out.stat().st_size,
    )


def _stored_bill(db: str | Path, period: Period, config: Config) -> Reconciliation | None:
    """The stored bill of the period's UTC days reconciled by model, as `clauditor reconcile`
    does (None: no day of them is stored, or the store has no bill tables). Never fetches."""
    first, last = sections.bill_days(period)
    try:
        return reconcile_stored(db, first, last, config)
    except StoreError:  # a Parquet dataset folder: no bill tables
        return None
    except ValueError:  # reconcile_stored's "no bill stored for these days"
        return None


def render_report(
    calls: pl.DataFrame,
    period: Period,
    *,
    previous_cost: float | None = None,
    newest: dt.datetime | None = None,
    as_of: dt.datetime,
    config: Config | None = None,
) -> str:
    """The report page for an in-memory frame of ``calls``, as an HTML string. Pure: no I/O.

    ``calls`` may hold more than ``period``: the previous period's rows give the change, the
    month's rows the budget. ``previous_cost``, when given, overrides the previous period's
    spend in the headline; ``newest`` overrides the data freshness.
    """
    when = _as_of(as_of, period.tz)
    config = config or Config()
    data = report_data_from_frame(calls, period, as_of=when, config=config)
    if newest is not None:
        data = ReportData(**{**data.__dict__, "newest": newest})
    return render_data(data, config, previous_cost=previous_cost)


# --- the page ----------------------------------------------------------------------------------


def _totals(data: ReportData, which: str = "current") -> dict[str, float]:
    rows = data.breakdown if which == "current" else data.previous_breakdown
    untagged = rows.filter(pl.col("feature") == UNTAGGED)
    unpriced = float(rows["unpriced_calls"].sum() or 0)
    return {
        "cost": float(rows["cost_usd"].sum() or 0.0),
        "calls": float(rows["calls"].sum() or 0),
        "priced": float(rows["calls"].sum() or 0) - unpriced,
        "unpriced": unpriced,
        "untagged_cost": float(untagged["cost_usd"].sum() or 0.0),
        "untagged_calls": float(untagged["calls"].sum() or 0),
        "count_tokens": float(rows["count_tokens_calls"].sum() or 0),
    }


def _change(current: float, previous: float, previous_period: Period) -> str:
    """The headline's comparison line, as HTML; hovering it shows the previous period's bounds."""
    where = (
        f'vs <span title="{esc(previous_period.describe())}">{format_usd(previous)} '
        "the period before</span>"
    )
    if previous == 0:
        if current == 0:
            return f'<span class="flat">no spend in either period</span> {where}'
        return f'<span class="up">new spend</span> {where}'
    ratio = (current - previous) / previous
    if abs(ratio) < 0.0005:
        return f'<span class="flat">unchanged</span> {where}'
    arrow, cls = ("▲", "up") if ratio > 0 else ("▼", "down")
    return f'<span class="{cls}">{arrow} {abs(ratio):.1%}</span> {where}'


def _card(title: str, value: str, detail: str, cls: str = "", meter: float | None = None) -> str:
    bar = ""
    if meter is not None:
        bar = f'<div class="meter"><span style="width:{min(meter, 1.0) * 100:.1f}%"></span></div>'
    return (
        f'<div class="card {cls}"><div class="card-title">{title}</div>'
        f'<div class="card-value">{value}</div>{bar}<div class="card-detail">{detail}</div></div>'
    )


def _budget_cards(status: pl.DataFrame, config: Config, tz: str, as_of: dt.datetime) -> str:
    month = as_of.astimezone(ZoneInfo(tz)).strftime("%B")
    total = status.filter(pl.col("scope") == "total")
    row = total.row(0, named=True) if total.height else None
    if row is None:
        return _card("Budget", "—", "no spend data this month")
    forecast = (
        f"{format_usd(row['forecast_usd'])}",
        f"90 % range {format_usd(row['forecast_low_usd'])}–{format_usd(row['forecast_high_usd'])}"
        f", {format_usd(row['run_rate_usd'])}/day",
    )
    budget = config.budget.monthly_usd
    if not budget:
        return _card(
            f"{month} to date", format_usd(row["spent_usd"]), "no monthly budget configured"
        ) + _card(f"{month} forecast", forecast[0], forecast[1])
    fraction = row["fraction"] or 0.0
    cls = (
        "alert" if fraction >= 1 else "warn" if fraction >= min(config.budget.thresholds) else "ok"
    )
    crossed = row["thresholds_crossed"] or []
    detail = f"{format_usd(row['spent_usd'])} of {format_usd(budget)} in {month}"
    if crossed and row["crossed_at"] is not None:
        at = row["crossed_at"].astimezone(ZoneInfo(tz))
        detail += f"; passed {max(crossed):.0%} on {at:%b %d %H:%M}"
    runout = row["projected_runout"]
    over = (row["forecast_usd"] or 0.0) > budget
    if runout is not None:
        runway = f"budget runs out {runout:%b %d}" if fraction < 1 else "budget spent"
    else:
        runway = "stays within budget"
    fcls = "alert" if over else "ok"
    return _card("Budget used", f"{fraction:.0%}", detail, cls, meter=fraction) + _card(
        f"{month} forecast",
        forecast[0],
        f"<strong class='{'up' if over else 'down'}'>{runway}</strong><br>{forecast[1]}",
        fcls,
    )


def _unpriced_notice(data: ReportData) -> str:
    rows = data.breakdown
    calls = int(rows["calls"].sum() or 0)
    missing = (
        rows.group_by("model")
        .agg(pl.col("unpriced_calls").sum().alias("calls"))
        .filter(pl.col("calls") > 0)
        .sort(["calls", "model"], descending=[True, False])
    )
    if missing.height == 0:
        return (
            '<section class="notice ok" id="unpriced"><strong>Unpriced calls: none.</strong> '
            f"All {calls:,} calls in this period have a price.</section>"
        )
    count = int(missing["calls"].sum())
    items = "".join(
        f"<li><code>{esc(m)}</code>: {n:,} call{'s' if n != 1 else ''}</li>"
        for m, n in missing.iter_rows()
    )
    return (
        '<section class="notice warn" id="unpriced">'
        f"<strong>Unpriced calls: {count:,} of {calls:,}.</strong> "
        "These models have no rate card, so their calls are <em>not</em> in any "
        'dollar figure of this report. Add a <code>[prices."MODEL"]</code> card to '
        "clauditor.toml (<code>clauditor prices check</code> shows whether the upstream price "
        f"data knows it), then <code>clauditor reprice</code>.<ul>{items}</ul></section>"
    )


def _spend_notes(data: ReportData) -> str:
    """Spend beyond token counts: server tools, assumed cache TTLs, code execution."""
    lines = data.notes.lines()
    if not lines:
        return ""
    items = "".join(f"<li>{esc(line[:1].upper() + line[1:])}.</li>" for line in lines)
    return f'<section class="notice" id="spend-notes"><ul>{items}</ul></section>'


def _when(moment: dt.datetime, tz: str) -> str:
    return f"{moment.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M}"


def _freshness(newest: dt.datetime | None, as_of: dt.datetime, tz: str) -> str:
    if newest is None:
        return "no spans recorded yet"
    hours = (as_of - newest).total_seconds() / 3600
    if hours < 1:
        ago = f"{hours * 60:.0f} min"
    elif hours < 48:
        ago = f"{hours:.1f} h"
    else:
        ago = f"{hours / 24:.1f} days"
    when = f'<span class="{"stale" if hours > 24 else ""}">{_when(newest, tz)}</span>'
    return f"newest span {when} ({ago} before as-of)"


def _panel(title: str, lede: str, body: str, cls: str = "", anchor: str = "") -> str:
    ident = f' id="{anchor}"' if anchor else ""
    lede_html = f'<p class="lede">{lede}</p>' if lede else ""
    return f'<section class="panel {cls}"{ident}><h2>{title}</h2>{lede_html}{body}</section>'


def _breakdown(rows: pl.DataFrame, key: str) -> pl.DataFrame:
    out = (
        rows.group_by(key)
        .agg(pl.col("cost_usd").sum(), pl.col("calls").sum())
        .filter(pl.col("cost_usd") > 0)
    )
    total = out["cost_usd"].sum()
    return out.with_columns((pl.col("cost_usd") / total).alias("share")).sort(
        ["cost_usd", key], descending=[True, False]
    )


def render_data(
    data: ReportData,
    config: Config,
    *,
    previous_cost: float | None = None,
    bill: Reconciliation | None = None,
) -> str:
    """The report page for already-read :class:`ReportData`, as an HTML string.

    ``bill`` is :func:`~clauditor.analytics.reconcile.reconcile_stored` of the period's UTC
    days (:func:`~clauditor.dashboards.sections.bill_days`); None shows that no bill is stored.
    """
    period, tz = data.period, data.period.tz
    now, before = _totals(data), _totals(data, "previous")
    previous = before["cost"] if previous_cost is None else previous_cost
    total = now["cost"]
    untagged_share = now["untagged_cost"] / total if total else 0.0
    status = data.budget
    bill_first, bill_last = sections.bill_days(period)

    cards = "".join(
        [
            _card("Spend", format_usd(total), _change(total, previous, data.previous), "headline"),
            _budget_cards(status, config, tz, data.as_of),
            _card(
                "Calls",
                f"{int(now['calls']):,}",
                f"{format_usd(total / now['priced'] if now['priced'] else None)} per priced call"
                + (
                    f"<br>+ {int(now['count_tokens']):,} free count_tokens calls"
                    if now["count_tokens"]
                    else ""
                ),
            ),
            _card(
                "Untagged spend",
                format_usd(now["untagged_cost"]),
                f"{untagged_share:.1%} of spend, {int(now['untagged_calls']):,} calls",
                "warn" if untagged_share > 0.1 else "",
            ),
            _card(
                "Unpriced calls",
                f"{int(now['unpriced']):,}",
                "not in any dollar figure" if now["unpriced"] else "every call has a price",
                "alert" if now["unpriced"] else "",
            ),
        ]
    )

    errors_fig, errors_html, err = sections.errors_section(data)
    cache_fig, cache_html, cache = sections.cache_section(data)
    latency_fig, latency_html = sections.latency_section(data)
    spikes_fig, spikes_html, spike_count = sections.spikes_section(data)
    failure_html, failure_usd = sections.failure_section(data)
    audit_html, audit_counts = sections.audit_section(data)
    health = "".join(
        [
            _card(
                "Error rate",
                f"{err['rate']:.2%}",
                f"{int(err['episodes'])} sustained episode(s)",
                "alert" if err["episodes"] else "ok",
            ),
            _card(
                "Spend spikes",
                f"{spike_count}",
                "hours far above their baseline",
                "alert" if spike_count else "ok",
            ),
            _card(
                "Cost of failure",
                format_usd(failure_usd),
                f"{failure_usd / total:.1%} of spend: billed errors, truncation, abandoned streams"
                if total
                else "billed errors, truncation, abandoned streams",
                "warn" if total and failure_usd / total > 0.05 else "",
            ),
            _card(
                "Caching saved",
                format_usd(cache["saved"]),
                f"{format_usd(cache['wasted'])} wasted on unread writes; "
                f"{format_usd(cache['at_stake'])} more possible",
                "ok" if cache["saved"] > cache["wasted"] else "warn",
            ),
            _card(
                "Audit",
                f"{audit_counts['pass']}/{sum(audit_counts.values())} pass",
                f"{audit_counts['fail']} fail, {audit_counts['warn']} warn",
                "alert" if audit_counts["fail"] else "warn" if audit_counts["warn"] else "ok",
            ),
        ]
    )

    current = data.breakdown
    month = data.as_of.astimezone(ZoneInfo(tz)).strftime("%B %Y")
    panels = [
        '<h2 class="group">Spend</h2>',
        _panel(
            "Spend per day, by feature",
            "Stacked by feature; the costliest eight have their own colour.",
            figure_html(daily_spend_figure(data.daily, period), "fig-daily"),
            "wide",
        ),
        _panel(
            f"Budget burn-up, {esc(month)}",
            "Month-to-date spend against the monthly budget and its alert thresholds; "
            "the band is the 90 % forecast range to month end.",
            figure_html(sections.burnup(data, config), "fig-burnup")
            + sections.budget_table(status, tz, data.crossings),
            "wide",
            "budget",
        ),
        _panel(
            "Features and models",
            "Token counts follow Anthropic's meaning: input is uncached input. Hit ratio = "
            "cache reads / all input tokens. Change is against the previous period.",
            sections.feature_model_table(data),
            "wide",
            "features",
        ),
        _panel(
            "Model mix",
            "Priced spend per model.",
            figure_html(model_mix_figure(_breakdown(current, "model")), "fig-models"),
        ),
        _panel(
            "Untagged spend by code location",
            "Calls without a feature tag: where to add one first.",
            figure_html(
                untagged_figure(_breakdown(data.untagged, "code_location")), "fig-untagged"
            ),
        ),
        _panel(
            "Billed vs metered",
            "What Anthropic billed (the stored Admin API reports) against what clauditor "
            "metered, per <strong>UTC day</strong>: Anthropic's buckets are UTC days whatever "
            f"this report's time zone ({esc(tz)}), so the days here are "
            f"{bill_first} … {bill_last} UTC. Unmetered = billed − metered (negative when "
            "clauditor metered more); the figures equal <code>clauditor reconcile --period "
            f"{bill_first}..{bill_last}</code>.",
            sections.reconcile_section(bill, bill_first, bill_last),
            "wide",
            "reconcile",
        ),
        '<h2 class="group">Efficiency</h2>',
        _panel(
            "Prompt caching",
            "Hit ratio over time for the busiest cached features; dashed lines mark regressions.",
            figure_html(cache_fig, "fig-cache") + cache_html,
            "wide",
            "cache",
        ),
        '<h2 class="group">Reliability</h2>',
        _panel(
            "Error rate by class",
            f"Share of calls that failed, stacked by class; shaded: sustained episodes above "
            f"{sections.ERROR_THRESHOLD:.0%}.",
            figure_html(errors_fig, "fig-errors") + errors_html,
            "wide",
            "errors",
        ),
        _panel(
            "Latency",
            "Successful chat calls: whole call and time to first token (streams), per day.",
            figure_html(latency_fig, "fig-latency") + latency_html,
            "wide",
            "latency",
        ),
        _panel(
            "Spend spikes",
            "Hours that cost far more than the same feature's usual hours.",
            figure_html(spikes_fig, "fig-spikes") + spikes_html,
            "wide",
            "spikes",
        ),
        _panel(
            "Cost of failure",
            "Dollars that bought nothing, or less than asked for.",
            failure_html,
            "wide",
            "failure",
        ),
        _panel(
            "Production checklist",
            "What the telemetry says about each item of the checklist.",
            audit_html,
            "wide",
            "audit",
        ),
    ]
    notices = _unpriced_notice(data) + _spend_notes(data)
    title = f"Claude API spend: {esc(period.label)}"
    return PAGE.format(
        title=title,
        plotlyjs=get_plotlyjs(),
        css=CSS,
        heading=title,
        bounds=esc(period.describe()),
        freshness=_freshness(data.newest, data.as_of, tz),
        as_of=esc(_when(data.as_of, tz)),
        tz=esc(tz),
        cards=cards,
        health=health,
        notices=notices,
        panels="".join(panels),
        version=esc(__version__),
    )
