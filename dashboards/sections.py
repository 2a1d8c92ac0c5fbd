"""The report's sections, each an HTML fragment built from :class:`ReportData`.

Every figure is already computed, exactly, by the analytics jobs (:mod:`.data`); a section only
picks, orders and formats. Every string that comes from telemetry goes through :func:`esc`
(HTML) or :func:`clauditor.dashboards.figures.label` (Plotly).
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from clauditor.analytics.periods import Period
from clauditor.analytics.reconcile import VERDICTS, Reconciliation
from clauditor.config import Config
from clauditor.dashboards import figures
from clauditor.dashboards.data import ERROR_THRESHOLD, UNTAGGED, ReportData

__all__ = [
    "ERROR_THRESHOLD",
    "esc",
    "figure_html",
    "format_usd",
]

_TOP_ROWS = 25
_TOP_SPIKES = 12
_TOP_SPIKE_KEYS = 5
# No mode bar: it covers the small charts, and its image export is the browser's job anyway.
_PLOTLY_CONFIG = {"responsive": True, "displaylogo": False, "displayModeBar": False}


def esc(value: object) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def format_usd(value: float | None) -> str:
    """Dollars for people: ``$1,234.56``; small amounts keep their significant digits
    (``$0.003``, ``$0.000006``: a nonzero amount never reads ``$0.00``); the sign comes first
    (``-$0.0135``); ``None`` (unpriced) is ``n/a``."""
    if value is None:
        return "n/a"
    if value == 0:
        return "$0.00"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size >= 0.995:
        return f"{sign}${size:,.2f}"
    # Four decimals, or two significant digits where four would show nothing.
    decimals = max(4, 1 - math.floor(math.log10(size)))
    text = f"{size:.{decimals}f}".rstrip("0")
    text = text + "0" * max(0, 4 - len(text))  # keep at least two decimals: $0.50
    return f"{sign}${text}"


def format_tokens(value: int | None) -> str:
    """Token counts compactly: 950, 12.3K, 4.56M, 1.2B."""
    if value is None:
        return ""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:,}"


def figure_html(fig: go.Figure, div_id: str) -> str:
    """A figure as a ``<div>`` using the page's single inlined plotly.js."""
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        config=_PLOTLY_CONFIG,
        div_id=div_id,
        default_height=f"{fig.layout.height or 380}px",
    )


def local_naive(column: str, tz: str) -> pl.Expr:
    """A UTC datetime column as naive wall-clock time in ``tz`` (what the chart axes show)."""
    return pl.col(column).dt.convert_time_zone(tz).dt.replace_time_zone(None)


def shown_range(data: ReportData) -> tuple[dt.datetime, dt.datetime]:
    """The period's bounds as naive wall-clock times in its zone (a time axis' range)."""
    start, end = data.period.local_bounds()
    return start.replace(tzinfo=None), end.replace(tzinfo=None)


def _table(head: Sequence[tuple[str, bool]], rows: list[list[str]], empty: str) -> str:
    """An HTML table; ``head`` is (title, numeric) pairs; cells are already HTML."""
    if not rows:
        return f"<p class='muted'>{empty}</p>"
    th = "".join(f"<th class='num'>{t}</th>" if num else f"<th>{t}</th>" for t, num in head)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{cell}</td>" if num else f"<td>{cell}</td>"
            for cell, (_, num) in zip(row, head, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f"<div class='table-wrap'><table><thead><tr>{th}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _name(value: str | None) -> str:
    text = esc(value if value is not None else UNTAGGED)
    return f"<span class='muted'>{text}</span>" if value in (None, UNTAGGED, "(none)") else text


def usd(value: float | None) -> str:
    """Dollars in a table column: cents from one cent up, significant digits below."""
    if value is not None and abs(value) >= 0.01:
        return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"
    return format_usd(value)


def _pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}%}"


# --- money -------------------------------------------------------------------------------------


def feature_model_table(data: ReportData) -> str:
    """Feature x model: calls, the four token counts, hit ratio, cost, cost per call, change."""
    keys = ["feature", "model"]
    sums = [
        "calls",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "priced_calls",
    ]
    current = data.breakdown.with_columns(
        (pl.col("calls") - pl.col("unpriced_calls")).alias("priced_calls")
    ).select(*keys, *sums, "cost_usd")
    before = data.previous_breakdown.select(*keys, pl.col("cost_usd").alias("previous_usd"))
    table = current.join(before, on=keys, how="left").sort(
        ["cost_usd", "calls", "feature", "model"],
        descending=[True, True, False, False],
        nulls_last=True,
    )
    rows = []
    for r in table.head(_TOP_ROWS).iter_rows(named=True):
        inputs = r["input_tokens"] + r["cache_read_input_tokens"] + r["cache_creation_input_tokens"]
        hit = r["cache_read_input_tokens"] / inputs if inputs else None
        cost = r["cost_usd"]
        per_call = cost / r["priced_calls"] if cost is not None and r["priced_calls"] else None
        prev = r["previous_usd"]
        if cost is None:
            change = "<span class='muted'>unpriced</span>"
        elif not prev:
            change = "<span class='muted'>new</span>"
        else:
            ratio = (cost - prev) / prev
            cls = "up" if ratio > 0.005 else "down" if ratio < -0.005 else "flat"
            change = f"<span class='{cls}'>{ratio:+.0%}</span>"
        rows.append(
            [
                _name(r["feature"]),
                f"<code>{esc(r['model'])}</code>",
                f"{r['calls']:,}",
                format_tokens(r["input_tokens"]),
                format_tokens(r["output_tokens"]),
                format_tokens(r["cache_read_input_tokens"]),
                format_tokens(r["cache_creation_input_tokens"]),
                _pct(hit, 0),
                f"<strong>{format_usd(cost)}</strong>",
                format_usd(per_call),
                change,
            ]
        )
    head = [
        ("Feature", False),
        ("Model", False),
        ("Calls", True),
        ("Input", True),
        ("Output", True),
        ("Cache read", True),
        ("Cache write", True),
        ("Hit ratio", True),
        ("Cost", True),
        ("Per call", True),
        ("Change", True),
    ]
    more = ""
    if table.height > _TOP_ROWS:
        rest = table.slice(_TOP_ROWS)
        more = (
            f"<p class='muted'>… and {rest.height:,} more feature/model pairs, "
            f"{format_usd(float(rest['cost_usd'].sum() or 0.0))} in total.</p>"
        )
    return _table(head, rows, "No calls in this period.") + more


# --- budget ------------------------------------------------------------------------------------


def burnup(data: ReportData, config: Config) -> go.Figure:
    """The burn-up figure of the month of ``as_of``."""
    tz = data.period.tz
    zone = ZoneInfo(tz)
    local = data.as_of.astimezone(zone)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month_start + dt.timedelta(days=32)).replace(day=1)
    in_month = data.month_spend
    # One point per hour (the running total at the hour's end) keeps the figure small however
    # many rows the month has; the step line still shows when the money went.
    hourly = (
        in_month.group_by(pl.col("start_time").dt.truncate("1h").alias("hour"))
        .agg(pl.col("cost_usd").sum())
        .sort("hour")
        .select(
            pl.min_horizontal(pl.col("hour") + pl.duration(hours=1), pl.lit(data.as_of))
            .dt.convert_time_zone(tz)
            .dt.replace_time_zone(None)
            .alias("time"),
            pl.col("cost_usd").cum_sum().alias("spent_usd"),
        )
    )
    naive_start = month_start.replace(tzinfo=None)
    cumulative = pl.concat(
        [
            pl.DataFrame(
                {"time": [naive_start], "spent_usd": [0.0]},
                schema={"time": pl.Datetime("us"), "spent_usd": pl.Float64},
            ),
            hourly,
        ]
    )
    total = data.budget.filter(pl.col("scope") == "total")
    forecast = None
    if total.height:
        row = total.row(0, named=True)
        if row["forecast_usd"] is not None:
            forecast = (row["forecast_low_usd"], row["forecast_usd"], row["forecast_high_usd"])
    crossings = data.crossings.with_columns(local_naive("crossed_at", tz).alias("crossed_at"))
    return figures.burnup_figure(
        cumulative,
        month_start=naive_start,
        month_end=next_month.replace(tzinfo=None),
        as_of=local.replace(tzinfo=None),
        budget_usd=config.budget.monthly_usd,
        thresholds=config.budget.thresholds,
        forecast=forecast,
        crossings=crossings,
    )


def budget_table(status: pl.DataFrame, tz: str, crossings: pl.DataFrame) -> str:
    """One row per budget scope: spent, share, forecast range, run-out, thresholds crossed.

    ``crossings`` (:attr:`ReportData.crossings`) dates every threshold of the whole account.
    """
    zone = ZoneInfo(tz)
    account = "<br>".join(
        f"{r['threshold']:.0%} on {r['crossed_at'].astimezone(zone):%b %d %H:%M}"
        for r in crossings.iter_rows(named=True)
    )
    rows = []
    for r in status.iter_rows(named=True):
        scope = "Whole account" if r["scope"] == "total" else _name(r["scope"].split(":", 1)[1])
        fraction = r["fraction"]
        cls = "up" if fraction is not None and fraction >= 1 else ""
        crossed = ", ".join(f"{t:.0%}" for t in (r["thresholds_crossed"] or []))
        when = ""
        if r["crossed_at"] is not None:
            at = r["crossed_at"].astimezone(zone)
            when = f" <span class='muted'>({at:%b %d %H:%M})</span>"
        runout = r["projected_runout"]
        rows.append(
            [
                scope,
                format_usd(r["budget_usd"]) if r["budget_usd"] is not None else "—",
                format_usd(r["spent_usd"]),
                f"<span class='{cls}'>{_pct(fraction, 0)}</span>",
                f"{format_usd(r['forecast_usd'])} <span class='muted'>"
                f"({format_usd(r['forecast_low_usd'])}–{format_usd(r['forecast_high_usd'])})</span>",
                f"{runout:%b %d}" if runout is not None else "—",
                account
                if r["scope"] == "total" and account
                else (crossed + when)
                if crossed
                else "—",
            ]
        )
    head = [
        ("Budget", False),
        ("Monthly", True),
        ("Spent", True),
        ("Used", True),
        ("Month-end forecast (90 %)", True),
        ("Runs out", True),
        ("Thresholds crossed", True),
    ]
    return _table(head, rows, "No budget configured.")


# --- per-call sections -------------------------------------------------------------------------


def cache_section(data: ReportData) -> tuple[go.Figure, str, dict[str, float]]:
    """Hit-ratio figure, savings/waste/candidates HTML, and the totals for the cards."""
    tz = data.period.tz
    series = data.cache_series.select(
        local_naive("bucket", tz).alias("time"),
        "key",
        "hit_ratio",
        (
            pl.col("input_tokens")
            + pl.col("cache_read_input_tokens")
            + pl.col("cache_creation_input_tokens")
        ).alias("input_total"),
    )
    regressions = data.cache_regressions.with_columns(local_naive("start", tz).alias("start"))
    fig = figures.cache_hit_figure(series, regressions, x_range=shown_range(data))
    econ = data.cache_economics
    saved = float(econ["saved_usd"].sum() or 0.0)
    wasted = float(econ["wasted_write_usd"].sum() or 0.0)
    rows = [
        [
            _name(r["feature"]),
            _pct(r["hit_ratio"], 0),
            usd(r["saved_usd"]),
            usd(r["wasted_write_usd"]),
            "1 hour" if r["recommend_1h"] else "5 minutes",
        ]
        for r in econ.filter(
            (pl.col("cache_read_input_tokens") + pl.col("cache_creation_input_tokens")) > 0
        ).iter_rows(named=True)
    ]
    econ_html = _table(
        [
            ("Feature", False),
            ("Hit ratio", True),
            ("Saved", True),
            ("Wasted writes", True),
            ("Best TTL", True),
        ],
        rows,
        "No feature uses prompt caching.",
    )
    candidates = data.caching_candidates.filter(pl.col("dollars_at_stake") > 0).head(8)
    cand_rows = [
        [
            _name(r["feature"]),
            f"<code>{esc(r['model'])}</code>",
            f"{r['calls']:,}",
            format_tokens(int(r["avg_input_tokens"])),
            f"<strong>{usd(r['dollars_at_stake'])}</strong>",
        ]
        for r in candidates.iter_rows(named=True)
    ]
    cand_html = _table(
        [
            ("Feature", False),
            ("Model", False),
            ("Calls", True),
            ("Avg uncached input", True),
            ("Could save", True),
        ],
        cand_rows,
        "No caching candidates: every large, repeated prompt is already cached.",
    )
    reg_html = "".join(
        f"<li><strong>{esc(r['key'])}</strong>: hit ratio fell from {r['before_ratio']:.0%} to "
        f"{r['after_ratio']:.0%} at {r['start']:%b %d %H:%M}</li>"
        for r in regressions.iter_rows(named=True)
    )
    body = (
        (f"<ul class='alerts'>{reg_html}</ul>" if reg_html else "")
        + "<h3>Caching by feature</h3>"
        + econ_html
        + "<h3>Caching candidates</h3>"
        + cand_html
    )
    return (
        fig,
        body,
        {
            "saved": saved,
            "wasted": wasted,
            "at_stake": float(candidates["dollars_at_stake"].sum() or 0.0),
        },
    )


def errors_section(data: ReportData) -> tuple[go.Figure, str, dict[str, float]]:
    """Error rate by class over time (threshold, episodes shaded) and the episode list."""
    tz = data.period.tz
    windows = data.error_windows.filter(pl.col("error_class") != "any").select(
        local_naive("window_start", tz).alias("time"), "error_class", "error_rate"
    )
    episodes = data.error_episodes
    shown = episodes.filter(pl.col("error_class") != "any")
    if shown.height == 0:
        shown = episodes
    shown = shown.with_columns(
        local_naive("start", tz).alias("start"), local_naive("end", tz).alias("end")
    )
    fig = figures.error_rate_figure(
        windows, shown, threshold=ERROR_THRESHOLD, x_range=shown_range(data)
    )
    rows = [
        [
            esc(r["error_class"].replace("_", " ")),
            f"{r['start']:%b %d %H:%M} – {r['end']:%H:%M}",
            f"{(r['end'] - r['start']).total_seconds() / 60:.0f} min",
            f"{r['calls']:,}",
            f"{r['error_rate']:.1%}",
            f"{r['peak_rate']:.0%}",
        ]
        for r in shown.iter_rows(named=True)
    ]
    table = _table(
        [
            ("Class", False),
            ("When", False),
            ("Lasted", True),
            ("Calls", True),
            ("Error rate", True),
            ("Peak", True),
        ],
        rows,
        f"No sustained error episode above {ERROR_THRESHOLD:.0%}.",
    )
    return (
        fig,
        "<h3>Error episodes</h3>" + table,
        {
            "rate": data.error_rate,
            "episodes": float(shown.height),
        },
    )


def latency_section(data: ReportData) -> tuple[go.Figure, str]:
    """Daily percentiles figure and the per-feature percentile table."""
    fig = figures.latency_figure(data.latency_daily, data.period)
    per = data.latency_features.sort("calls", descending=True)

    def secs(v: float | None) -> str:
        return "" if v is None else f"{v / 1000:.2f} s"

    rows = [
        [
            _name(r["feature"]),
            f"{r['calls']:,}",
            secs(r["duration_p50_ms"]),
            secs(r["duration_p95_ms"]),
            secs(r["duration_p99_ms"]),
            secs(r["ttft_p50_ms"]),
            secs(r["ttft_p95_ms"]),
            secs(r["ttft_p99_ms"]),
        ]
        for r in per.head(_TOP_ROWS).iter_rows(named=True)
    ]
    head = [
        ("Feature", False),
        ("Calls", True),
        ("p50", True),
        ("p95", True),
        ("p99", True),
        ("TTFT p50", True),
        ("TTFT p95", True),
        ("TTFT p99", True),
    ]
    return fig, _table(head, rows, "No successful calls in this period.")


def spikes_section(data: ReportData) -> tuple[go.Figure, str, int]:
    """Hourly spend of spiking features (episodes shaded) and the episode table."""
    tz = data.period.tz
    episodes = data.spikes
    # The costliest episodes and the features they hit; the rest are summed up in a line.
    top = episodes.sort("excess_usd", descending=True).head(_TOP_SPIKES)
    keys = list(dict.fromkeys(top["key"].to_list()))[:_TOP_SPIKE_KEYS]
    top = top.filter(pl.col("key").is_in(keys))
    hourly = data.spike_hours.filter(pl.col("key").is_in(keys)).select(
        local_naive("hour", tz).alias("time"), "key", "cost_usd"
    )
    local = top.with_columns(
        local_naive("start", tz).alias("start"), local_naive("end", tz).alias("end")
    )
    fig = figures.spikes_figure(hourly, local, x_range=shown_range(data))
    rows = [
        [
            _name(r["key"]),
            f"{r['start']:%b %d %H:%M} – {r['end']:%H:%M}",
            f"{r['calls']:,}",
            usd(r["cost_usd"]),
            f"<strong>{usd(r['excess_usd'])}</strong>",
            esc(r["reason"]),
        ]
        for r in local.sort("excess_usd", descending=True).iter_rows(named=True)
    ]
    head = [
        ("Feature", False),
        ("When", False),
        ("Calls", True),
        ("Spent", True),
        ("Above normal", True),
        ("Why", False),
    ]
    more = ""
    if episodes.height > local.height:
        rest = episodes.height - local.height
        more = f"<p class='muted'>… and {rest:,} smaller spike episode(s).</p>"
    return (
        fig,
        _table(head, rows, "No spend spikes.") + more,
        episodes.height,
    )


def failure_section(data: ReportData) -> tuple[str, float]:
    """Cost of failure per feature, and the total."""
    table = data.failure
    rows = [
        [
            _name(r["feature"]),
            f"{r['errored_calls']:,}",
            usd(r["errored_usd"]),
            f"{r['retries']:,}",
            f"{r['truncated_calls']:,}",
            usd(r["truncated_usd"]),
            usd(r["abandoned_usd"]),
            f"<strong>{usd(r['failure_usd'])}</strong>",
            _pct(r["failure_share"]),
        ]
        for r in table.filter(pl.col("failure_usd") > 0).head(_TOP_ROWS).iter_rows(named=True)
    ]
    head = [
        ("Feature", False),
        ("Failed calls", True),
        ("Failed $", True),
        ("Resends (not billed when rejected)", True),
        ("Truncated", True),
        ("Truncated $", True),
        ("Abandoned streams $", True),
        ("Total", True),
        ("Of its spend", True),
    ]
    total = float(table["failure_usd"].sum() or 0.0)
    note = (
        "<p class='note'>Only billed dollars: failed calls that were billed (a stream that broke "
        "after generating), calls cut off at <code>max_tokens</code> and streams closed before "
        "their end. Requests Anthropic "
        "rejected (429, 529) are not billed; their resends are counted, not priced.</p>"
    )
    return _table(head, rows, "Nothing lost to failures.") + note, total


_STATUS_ORDER = {"fail": 0, "warn": 1, "pass": 2, "n/a": 3}


def audit_section(data: ReportData) -> tuple[str, dict[str, int]]:
    """The checklist scorecard: one row per item with a status badge, and counts per status."""
    items = data.audit
    counts = {s: int((items["status"] == s).sum()) for s in _STATUS_ORDER}
    rows = []
    ordered = items.with_columns(
        pl.col("status").replace_strict(_STATUS_ORDER, default=4).alias("order")
    ).sort(["order", "usd_at_stake"], descending=[False, True], nulls_last=True)
    for r in ordered.iter_rows(named=True):
        status = r["status"]
        stake = r["usd_at_stake"]
        rows.append(
            [
                f"<span class='badge {esc(status.replace('/', ''))}'>{esc(status)}</span>",
                f"<strong>{esc(r['item'].replace('_', ' '))}</strong>"
                f"<div class='muted small'>{esc(r['category'])}</div>",
                esc(r["evidence"]),
                usd(stake) if stake else "",
            ]
        )
    head = [("Status", False), ("Check", False), ("Evidence", False), ("At stake", True)]
    return _table(head, rows, "No checks ran."), counts


# --- the bill ----------------------------------------------------------------------------------

_BILL_HINT = (
    "run <code>clauditor reconcile --fetch</code> with <code>ANTHROPIC_ADMIN_KEY</code> set"
)
_BADGE = {"matches": "pass", "price drift": "warn", "unmetered": "fail", "over-metered": "warn"}
_TOP_DAY_ROWS = 4  # the models named under a day's verdict
_DRIFT_KEYS = ["model", "token_type", "service_tier", "context_window", "inference_geo"]


def bill_days(period: Period) -> tuple[dt.date, dt.date]:
    """The UTC days ``[first, last]`` the period touches: the report's days of the bill.

    They are what ``clauditor reconcile --period FIRST..LAST`` compares, whatever the report's
    time zone (Anthropic's buckets are UTC days), so a period cut in another zone starts and
    ends inside its first and last UTC day.
    """
    end = max(period.start, period.end - dt.timedelta(microseconds=1))
    return period.start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()


def _money_attrs(billed: float, metered: float, unmetered: float) -> str:
    share = unmetered / billed if billed else None
    return (
        f"data-billed-usd='{billed!r}' data-metered-usd='{metered!r}' "
        f"data-unmetered-usd='{unmetered!r}' "
        f"data-unmetered-share='{'' if share is None else repr(share)}'"
    )


def _money_cells(billed: float, metered: float, unmetered: float) -> str:
    share = unmetered / billed if billed else None
    cells = [usd(billed), usd(metered), f"<strong>{usd(unmetered)}</strong>", _pct(share)]
    return "".join(f"<td class='num'>{c}</td>" for c in cells)


def _verdict_badges(verdicts: Sequence[str]) -> str:
    shown = verdicts or ["matches"]
    return " ".join(f"<span class='badge {_BADGE.get(v, 'na')}'>{esc(v)}</span>" for v in shown)


def _drift_table(drift: pl.DataFrame) -> str:
    firsts = drift.sort("day").unique(_DRIFT_KEYS, keep="first", maintain_order=True)
    rows = []
    for r in firsts.iter_rows(named=True):
        conditions = ", ".join(esc(r[c]) for c in _DRIFT_KEYS[2:] if r[c] is not None)
        rows.append(
            [
                f"<code>{esc(r['model'])}</code>",
                f"<code>{esc(r['token_type'])}</code>"
                + (f"<div class='muted small'>{conditions}</div>" if conditions else ""),
                f"${r['billed_per_mtok']:,.4f}",
                f"${r['card_per_mtok']:,.4f}",
                esc(r["first_day"]),
            ]
        )
    head = [
        ("Model", False),
        ("Token type", False),
        ("Billed $/MTok", True),
        ("Card $/MTok", True),
        ("Since (UTC day)", False),
    ]
    return "<h3>Price drift</h3>" + _table(
        head, rows, "No price drift: every billed price is on clauditor's cards."
    )


def reconcile_section(result: Reconciliation | None, first: dt.date, last: dt.date) -> str:
    """Billed vs metered per UTC day of ``[first, last]``, the totals and the drifted prices.

    ``result`` is :func:`~clauditor.analytics.reconcile.reconcile_stored` of those days by
    model (None: no bill stored). A day's dollars are the sums of that function's rows of the
    day, rounded to micro-dollars as the rows are, so they equal ``clauditor reconcile
    --format json`` summed per day; each row carries them (and the unmetered share of the
    day's bill, and the verdicts other than ``matches``) in ``data-*`` attributes. Unmetered
    dollars are billed minus metered, negative when clauditor metered more.
    """
    span = f"data-first-day='{first}' data-last-day='{last}'"
    if result is None:
        return (
            f"<div class='reconcile' {span} data-bill='none'><p class='notice warn'>"
            f"<strong>No bill stored for {first} … {last}.</strong> To compare what clauditor "
            f"metered with what Anthropic billed, {_BILL_HINT}; the report reads the stored "
            "bill and never fetches it.</p></div>"
        )
    per_day = (
        result.days.select("day", "partial")
        .join(
            result.rows.group_by("day").agg(
                pl.col("billed_usd").sum().round(6),
                pl.col("metered_usd").sum().round(6),
                pl.col("unmetered_usd").sum().round(6),
                pl.col("verdict").filter(pl.col("verdict") != "matches").unique(),
            ),
            on="day",
            how="left",
        )
        .with_columns(pl.col("billed_usd", "metered_usd", "unmetered_usd").fill_null(0.0))
        .sort("day")
    )
    lines: dict[dt.date, str] = {
        day: f"<tr data-day='{day}' data-bill='none'><td>{day}</td>"
        "<td colspan='5' class='muted'>no bill stored for this day</td></tr>"
        for day in result.missing_days
    }
    off: dict[dt.date, list[str]] = {}
    for day, model, verdict, gap in (
        result.rows.filter(pl.col("verdict") != "matches")
        .sort("day", "unmetered_usd", "model", descending=[False, True, False], nulls_last=True)
        .select("day", "model", "verdict", "unmetered_usd")
        .iter_rows()
    ):
        off.setdefault(day, []).append(f"<code>{esc(model)}</code> {esc(verdict)} {usd(gap)}")
    for r in per_day.iter_rows(named=True):
        money = (r["billed_usd"], r["metered_usd"], r["unmetered_usd"])
        verdicts = sorted(r["verdict"] or [], key=VERDICTS.index)
        partial = " <span class='muted small'>partial day</span>" if r["partial"] else ""
        which = off.get(r["day"], [])
        if which:
            more = f"; {len(which) - _TOP_DAY_ROWS} more" if len(which) > _TOP_DAY_ROWS else ""
            partial += f"<div class='muted small'>{'; '.join(which[:_TOP_DAY_ROWS])}{more}</div>"
        lines[r["day"]] = (
            f"<tr data-day='{r['day']}' {_money_attrs(*money)} "
            f"data-verdicts='{esc(','.join(verdicts))}'><td>{r['day']}</td>"
            f"{_money_cells(*money)}<td>{_verdict_badges(verdicts)}{partial}</td></tr>"
        )
    totals = tuple(
        round(float(per_day[c].sum()), 6) for c in ("billed_usd", "metered_usd", "unmetered_usd")
    )
    head = "".join(
        f"<th class='num'>{t}</th>" if num else f"<th>{t}</th>"
        for t, num in (
            ("UTC day", False),
            ("Billed", True),
            ("Metered", True),
            ("Unmetered", True),
            ("Of the bill", True),
            ("Verdict", False),
        )
    )
    body = "".join(lines[day] for day in sorted(lines))
    foot = (
        f"<tr class='total' data-total='period' {_money_attrs(*totals)}>"
        f"<td><strong>{first} … {last}</strong></td>{_money_cells(*totals)}<td></td></tr>"
    )
    notes = []
    if result.missing_days:
        notes.append(f"No bill stored for {len(result.missing_days)} of these days: {_BILL_HINT}.")
    if result.days.height:
        oldest = result.days["usage_fetched_at"].min()
        notes.append(
            f"Bill stored for {result.days.height} day(s); oldest fetch "
            f"{esc(f'{oldest:%Y-%m-%d %H:%M}')} UTC. Partial days were fetched before they "
            "ended and may still grow."
        )
    return (
        f"<div class='reconcile' {span} data-bill='stored'><div class='table-wrap'><table>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody><tfoot>{foot}</tfoot></table>"
        "</div>"
        + "".join(f"<p class='note'>{n}</p>" for n in notes)
        + _drift_table(result.drift)
        + "</div>"
    )
