"""The self-contained HTML spend report (``clauditor report``).

One HTML file that opens offline: plotly.js is inlined exactly once in the page head and every
figure is a ``<div>`` that uses it, with no external script, stylesheet or font. The report
covers one period (``--period``, in the configured time zone) and shows:

* the exact period and how fresh the data is (the newest span at or before ``as_of``);
* headline cards: spend and its change against :meth:`Period.previous`, calls, cost per call,
  untagged spend, unpriced calls;
* a notice listing every model without a price; it is always present, and says so when
  everything is priced, because unpriced calls are missing from every dollar figure;
* spend per day stacked by feature, spend per model, untagged spend per code location;
* the top features table.

Everything is aggregated in Polars before it reaches Plotly, so the file is about 5 MB of
plotly.js plus a few kB whatever the number of calls. Every string that comes from telemetry is
HTML-escaped, in the tables and in the figures alike.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.offline import get_plotlyjs

from clauditor import __version__
from clauditor.analytics.costs import (
    UNTAGGED,
    cost_breakdown,
    load_calls_in,
    spend_by_day,
)
from clauditor.analytics.periods import Period, resolve_period
from clauditor.config import Config
from clauditor.dashboards.figures import (
    daily_spend_figure,
    model_mix_figure,
    untagged_figure,
)
from clauditor.pricing import unpriced_calls
from clauditor.store import read_connection

__all__ = ["ReportSummary", "format_usd", "render_report", "write_report"]

_COLUMNS = ("start_time", "feature", "request_model", "response_model", "code_location", "cost_usd")
_TOP_FEATURES = 20
# No mode bar: it covers the small charts, and its image export is the browser's job anyway.
_PLOTLY_CONFIG = {"responsive": True, "displaylogo": False, "displayModeBar": False}


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


def format_usd(value: float | None) -> str:
    """Dollars for people: ``$1,234.56``; small amounts keep their significant digits
    (``$0.003``); ``None`` (unpriced) is ``n/a``."""
    if value is None:
        return "n/a"
    if value == 0:
        return "$0.00"
    if abs(value) >= 0.995:
        return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"
    text = f"{abs(value):.4f}".rstrip("0")
    text = text + "0" * max(0, 4 - len(text))  # keep at least two decimals: $0.50
    return f"{'-' if value < 0 else ''}${text}"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _newest_span(db: str | Path, before: dt.datetime) -> dt.datetime | None:
    """The start time of the newest call at or before ``before`` (data freshness)."""
    with read_connection(db) as con:
        # Epoch microseconds: fetching a TIMESTAMPTZ as a Python object would need pytz.
        rows = con.execute(
            "SELECT epoch_us(max(start_time)) FROM calls WHERE start_time <= ?", [before]
        ).fetchall()
    micros = rows[0][0] if rows else None
    if micros is None:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(micros))


def write_report(
    db: str | Path,
    out: str | Path,
    *,
    period: str = "30d",
    as_of: dt.datetime | None = None,
    config: Config | None = None,
) -> ReportSummary:
    """Write the HTML report of ``period`` (a :func:`resolve_period` spec) to ``out``.

    Days and the displayed times follow ``config.timezone`` (UTC without a config). ``as_of``
    (default: now) fixes what "today", "7d" or "mtd" mean, so a past report can be reproduced.
    The file is written atomically (a reader never sees half of it). Raises
    :class:`ValueError` for a bad period spec and :class:`~clauditor.errors.StoreError` when the
    database cannot be read.
    """
    config = config or Config()
    if as_of is None:
        as_of = dt.datetime.now(dt.UTC)
    elif as_of.tzinfo is None:  # wall-clock time in the configured zone, as resolve_period reads it
        as_of = as_of.replace(tzinfo=ZoneInfo(config.timezone)).astimezone(dt.UTC)
    current = resolve_period(period, as_of=as_of, tz=config.timezone)
    before = current.previous()
    # One read covers both periods; the comparison only needs its total.
    both = Period(min(before.start, current.start), current.end, "both", current.tz)
    calls = load_calls_in(db, both, columns=_COLUMNS)
    in_current = calls.filter(pl.col("start_time") >= current.start)
    in_before = calls.filter(
        (pl.col("start_time") >= before.start) & (pl.col("start_time") < before.end)
    )
    previous_cost = in_before["cost_usd"].sum() if in_before.height else 0.0
    newest = _newest_span(db, as_of)

    page = render_report(
        in_current, current, previous_cost=float(previous_cost or 0.0), newest=newest, as_of=as_of
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)

    total = in_current["cost_usd"].sum() if in_current.height else 0.0
    return ReportSummary(
        out=out,
        period=current,
        calls=in_current.height,
        cost_usd=float(total or 0.0),
        unpriced_calls=int(in_current["cost_usd"].null_count()),
        bytes=out.stat().st_size,
    )


def _figure_html(fig: go.Figure, div_id: str) -> str:
    # plotly.js itself is inlined once in <head>; figures only reference it.
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        config=_PLOTLY_CONFIG,
        div_id=div_id,
        default_height=f"{fig.layout.height or 380}px",
    )


def _change(current: float, previous: float, previous_period: Period) -> str:
    """The headline's comparison line, as HTML; hovering it shows the previous period's bounds."""
    where = (
        f'vs <span title="{_esc(previous_period.describe())}">{format_usd(previous)} '
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


def _card(title: str, value: str, detail: str, cls: str = "") -> str:
    return (
        f'<div class="card {cls}"><div class="card-title">{title}</div>'
        f'<div class="card-value">{value}</div><div class="card-detail">{detail}</div></div>'
    )


def _unpriced_notice(calls: pl.DataFrame) -> str:
    missing = unpriced_calls(calls)
    if missing.height == 0:
        return (
            '<section class="notice ok" id="unpriced"><strong>Unpriced calls: none.</strong> '
            f"All {calls.height:,} calls in this period have a price.</section>"
        )
    count = int(missing["calls"].sum())
    items = "".join(
        f"<li><code>{_esc(m)}</code>: {n:,} call{'s' if n != 1 else ''}</li>"
        for m, n in missing.iter_rows()
    )
    return (
        '<section class="notice warn" id="unpriced">'
        f"<strong>Unpriced calls: {count:,} of {calls.height:,}.</strong> "
        "These models have no price in the price table, so their calls are <em>not</em> in any "
        'dollar figure of this report. Add a <code>[prices."MODEL"]</code> entry to '
        "clauditor.toml or run <code>clauditor prices import FILE</code>, then "
        f"<code>clauditor reprice</code>.<ul>{items}</ul></section>"
    )


def _features_table(by_feature: pl.DataFrame) -> str:
    shown = by_feature.head(_TOP_FEATURES)
    rows = []
    for row in shown.iter_rows(named=True):
        priced = row["calls"] - row["unpriced_calls"]
        per_call = row["cost_usd"] / priced if row["cost_usd"] is not None and priced else None
        share = row["share"]
        bar = (
            f'<span class="track"><span class="bar" style="width:{share * 100:.1f}%"></span></span>'
            if share is not None
            else ""
        )
        name = _esc(row["feature"])
        if row["feature"] == UNTAGGED:
            name = f'<span class="muted">{name}</span>'
        unpriced = f"{row['unpriced_calls']:,}" if row["unpriced_calls"] else ""
        pct = "" if share is None else f"{share:.1%}"
        rows.append(
            f"<tr><td>{name}</td><td class='num'>{row['calls']:,}</td>"
            f"<td class='num'>{format_usd(row['cost_usd'])}</td>"
            f"<td class='num share'>{bar}<span class='pct'>{pct}</span></td>"
            f"<td class='num'>{format_usd(per_call)}</td><td class='num'>{unpriced}</td></tr>"
        )
    more = ""
    if by_feature.height > shown.height:
        rest = by_feature.slice(shown.height)
        more = (
            f"<p class='muted'>… and {rest.height:,} more features, "
            f"{format_usd(float(rest['cost_usd'].sum() or 0.0))} in total.</p>"
        )
    if not rows:
        return "<p class='muted'>No calls in this period.</p>"
    return (
        "<div class='table-wrap'><table><thead><tr><th>Feature</th><th class='num'>Calls</th>"
        "<th class='num'>Cost</th>"
        "<th class='num'>Share</th><th class='num'>Cost per call</th>"
        "<th class='num'>Unpriced calls</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def _when(moment: dt.datetime, period: Period) -> str:
    zone = period.local_bounds()[0].tzinfo
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def _freshness(newest: dt.datetime | None, as_of: dt.datetime, period: Period) -> str:
    if newest is None:
        return "no spans recorded yet"
    age = as_of - newest
    hours = age.total_seconds() / 3600
    if hours < 1:
        ago = f"{hours * 60:.0f} min"
    elif hours < 48:
        ago = f"{hours:.1f} h"
    else:
        ago = f"{hours / 24:.1f} days"
    when = f'<span class="{"stale" if hours > 24 else ""}">{_when(newest, period)}</span>'
    return f"newest span {when} ({ago} before as-of)"


def render_report(
    calls: pl.DataFrame,
    period: Period,
    *,
    previous_cost: float,
    newest: dt.datetime | None,
    as_of: dt.datetime,
) -> str:
    """The report page for ``calls`` (already limited to ``period``), as an HTML string.

    ``previous_cost`` is the priced spend of ``period.previous()``; ``newest`` the newest span
    time in the database (data freshness). Pure: no I/O.
    """
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.UTC)
    by_feature = cost_breakdown(calls, ["feature"])
    by_model = cost_breakdown(calls, ["model"])
    untagged = calls.filter(pl.col("feature").is_null() | (pl.col("feature") == ""))
    by_location = cost_breakdown(untagged, ["code_location"])
    daily = spend_by_day(calls, tz=period.tz, by="feature")

    total = float(calls["cost_usd"].sum() or 0.0) if calls.height else 0.0
    unpriced = int(calls["cost_usd"].null_count())
    priced_calls = calls.height - unpriced
    untagged_cost = float(untagged["cost_usd"].sum() or 0.0) if untagged.height else 0.0
    untagged_share = untagged_cost / total if total else 0.0
    previous = period.previous()

    cards = "".join(
        [
            _card(
                "Spend",
                format_usd(total),
                _change(total, previous_cost, previous),
                "headline",
            ),
            _card("Calls", f"{calls.height:,}", f"{priced_calls:,} priced"),
            _card(
                "Cost per call",
                format_usd(total / priced_calls if priced_calls else None),
                "over priced calls",
            ),
            _card(
                "Untagged spend",
                format_usd(untagged_cost),
                f"{untagged_share:.1%} of spend, {untagged.height:,} calls",
                "warn" if untagged_share > 0.1 else "",
            ),
            _card(
                "Unpriced calls",
                f"{unpriced:,}",
                "not in any dollar figure" if unpriced else "every call has a price",
                "alert" if unpriced else "",
            ),
        ]
    )
    figures = [
        ("Spend by day, by feature", daily_spend_figure(daily, period), "fig-daily", "wide"),
        ("Spend by model", model_mix_figure(by_model), "fig-models", ""),
        ("Untagged spend by code location", untagged_figure(by_location), "fig-untagged", ""),
    ]
    panels = "".join(
        f'<section class="panel {cls}"><h2>{title}</h2>{_figure_html(fig, div_id)}</section>'
        for title, fig, div_id, cls in figures
    )
    title = f"Claude API spend: {_esc(period.label)}"
    return _PAGE.format(
        title=title,
        plotlyjs=get_plotlyjs(),
        css=_CSS,
        heading=title,
        bounds=_esc(period.describe()),
        freshness=_freshness(newest, as_of, period),
        as_of=_esc(_when(as_of, period)),
        tz=_esc(period.tz),
        cards=cards,
        notice=_unpriced_notice(calls),
        panels=panels,
        table=_features_table(by_feature),
        version=_esc(__version__),
    )


_CSS = """
:root { --ink:#212529; --muted:#6c757d; --line:#e9ecef; --bg:#f4f6fb; --accent:#4c6ef5;
        --up:#c92a2a; --down:#2b8a3e; --warn:#f08c00; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
header { background:linear-gradient(120deg, #1b2a4e, #364fc7); color:#fff;
         padding:28px 32px 64px; }
header h1 { margin:0 0 6px; font-size:24px; font-weight:650; }
header .meta { opacity:.85; font-size:13px; }
header .meta span.stale { color:#ffd43b; font-weight:600; }
main { max-width:1280px; margin:0 auto; padding:24px 32px 40px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(200px, 1fr)); gap:16px;
         margin-top:-44px; }
.card { background:#fff; border-radius:10px; padding:16px 18px;
        box-shadow:0 1px 3px rgba(0,0,0,.08); border-top:4px solid var(--accent); }
.card.warn { border-top-color:var(--warn); }
.card.alert { border-top-color:var(--up); }
.card-title { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.05em; }
.card-value { font-size:28px; font-weight:650; margin:2px 0; font-variant-numeric:tabular-nums; }
.card.headline .card-value { color:#1b2a4e; }
.card-detail { color:var(--muted); font-size:12.5px; }
.up { color:var(--up); font-weight:600; } .down { color:var(--down); font-weight:600; }
.flat { font-weight:600; }
.notice { margin:20px 0 0; padding:12px 16px; border-radius:8px; border-left:5px solid; }
.notice.ok { background:#ebfbee; border-color:#2b8a3e; }
.notice.warn { background:#fff4e6; border-color:var(--warn); }
.notice ul { margin:6px 0 0; padding-left:20px; }
.grid { display:grid; grid-template-columns:repeat(2, minmax(0, 1fr)); gap:16px; margin-top:20px; }
.panel { background:#fff; border-radius:10px; padding:14px 18px;
         box-shadow:0 1px 3px rgba(0,0,0,.08); min-width:0; }
.panel.wide { grid-column:1 / -1; }
.panel h2 { font-size:15px; margin:0 0 8px; font-weight:600; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
.table-wrap { overflow-x:auto; }
th, td { padding:7px 10px; border-bottom:1px solid var(--line); text-align:left;
         overflow-wrap:break-word; }
td:first-child { min-width:8em; max-width:28em; }
th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; }
td.num, th.num { text-align:right; white-space:nowrap; }
td.share .track { display:inline-block; width:90px; height:8px; margin-right:8px;
                  background:#edf2ff; border-radius:4px; vertical-align:middle; overflow:hidden; }
td.share .bar { display:block; height:100%; background:#748ffc; }
td.share .pct { display:inline-block; min-width:3.5em; }
.muted { color:var(--muted); }
code { background:#f1f3f5; padding:1px 5px; border-radius:4px; font-size:12.5px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:0 0 28px; }
@media (max-width: 900px) { .grid { grid-template-columns:minmax(0, 1fr); }
                            main { padding:20px 16px; } header { padding:22px 16px 56px; } }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script>{plotlyjs}</script>
</head>
<body>
<header>
  <h1>{heading}</h1>
  <div class="meta">{bounds} &middot; {freshness} &middot; as of {as_of} ({tz})</div>
</header>
<main>
  <div class="cards">{cards}</div>
  {notice}
  <div class="grid">{panels}
    <section class="panel wide"><h2>Top features</h2>{table}</section>
  </div>
</main>
<footer>Generated by clauditor {version}. Spend excludes unpriced calls.
All times in {tz}.</footer>
</body>
</html>
"""
