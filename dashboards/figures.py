"""Plotly figures for the report, each drawn from an already-aggregated Polars frame.

Figures take aggregates (per day, per feature, per model), never per-call rows, so a report's
size does not grow with the number of calls.

A first day of data must draw as well as a month: bars get an explicit width (plotly would
derive it from the gap between two x values, and one day has none), a trace of a single point
is drawn as a marker (a line through one point is invisible), date axes span the whole period
and keep plotly's zoom-aware date labels (a fixed ``%b %d`` repeats the date on every tick of
a one-day axis), and dollar axes get as many decimals as their largest value needs (a
``$0.003`` day on a cents axis reads ``$0.00`` at every tick).

Every label that comes from telemetry (feature, model, code location) goes through
:func:`label` first: Plotly renders trace names, tick labels and hover text as a small HTML
dialect, so a feature named ``<img src=x onerror=...>`` must reach it as ``&lt;img …&gt;`` to be
shown as text rather than interpreted.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence

import plotly.graph_objects as go
import polars as pl

from clauditor.analytics.periods import Period

__all__ = [
    "ERROR_COLORS",
    "OTHER",
    "PALETTE",
    "burnup_figure",
    "cache_hit_figure",
    "daily_spend_figure",
    "error_rate_figure",
    "label",
    "latency_figure",
    "model_mix_figure",
    "spikes_figure",
    "untagged_figure",
]

OTHER = "(other)"
PALETTE = (
    "#4C6EF5",
    "#F59F00",
    "#12B886",
    "#E64980",
    "#7950F2",
    "#15AABF",
    "#FA5252",
    "#82C91E",
    "#FD7E14",
    "#BE4BDB",
)
_GREY = "#ADB5BD"
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


def label(value: object) -> str:
    """A telemetry string made safe for Plotly text (HTML-escaped, quotes included)."""
    return html.escape(str(value), quote=True)


def _layout(fig: go.Figure, *, height: int, **extra: object) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        font={"family": _FONT, "size": 12, "color": "#343a40"},
        hoverlabel={"font": {"family": _FONT}},
        **extra,
    )
    return fig


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(
        text=message,
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        font={"size": 14, "color": "#868e96"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


_DAY_MS = 86_400_000


def _money_axis(peak: float, *, decimals: int = 2) -> dict[str, object]:
    """A dollar axis whose ticks are distinct up to ``peak`` (at least ``decimals`` decimals)."""
    if peak > 0:
        # plotly puts about five to ten ticks on an axis: show a tenth of the peak's magnitude.
        decimals = max(decimals, math.ceil(-math.log10(peak / 10)))
    return {"tickprefix": "$", "tickformat": f",.{min(decimals, 8)}f", "title": None}


def _peak(values: pl.Series) -> float:
    """The largest of ``values`` (0 when there is none)."""
    return float(max((v for v in values.to_list() if v is not None), default=0.0))


def _day_axis(first: dt.datetime, last: dt.datetime, days: int) -> dict[str, object]:
    """A date axis over ``[first, last]`` for per-day values: one tick a day up to ten days
    (each labelled with its date), plotly's own date ticks beyond."""
    axis: dict[str, object] = {"type": "date", "range": [first, last], "title": None}
    if days <= 10:
        axis.update(dtick=_DAY_MS, tick0=first.replace(hour=0), tickformat="%b %d")
    return axis


def _time_axis(x_range: tuple[dt.datetime, dt.datetime] | None) -> dict[str, object]:
    """A date axis over ``x_range`` (naive local) with plotly's zoom-aware date labels."""
    axis: dict[str, object] = {"type": "date"}
    if x_range is not None:
        axis["range"] = list(x_range)
    return axis


def _line_mode(points: int) -> str:
    """``lines``, or ``lines+markers`` for a single point (which a line alone cannot show)."""
    return "lines+markers" if points == 1 else "lines"


def _period_days(period: Period) -> list[dt.date]:
    """Every calendar day (in the period's zone) the period touches."""
    start, end = period.local_bounds()
    last = (end - dt.timedelta(microseconds=1)).date() if end > start else start.date()
    count = (last - start.date()).days + 1
    return [start.date() + dt.timedelta(days=i) for i in range(count)]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


def daily_spend_figure(daily: pl.DataFrame, period: Period, *, top: int = 8) -> go.Figure:
    """Stacked bars of spend per day, one colour per feature.

    ``daily`` is :func:`clauditor.analytics.costs.spend_by_day` output (``day``, ``feature``,
    ``cost_usd``). The ``top`` costliest features get their own colour; the rest are stacked as
    ``(other)``. Every day of ``period`` is on the axis, so a day without spend shows as a gap.
    """
    days = _period_days(period)
    # A date axis over the whole period: plotly picks readable ticks, and empty days show as gaps.
    half_day = dt.timedelta(hours=12)
    priced = daily.filter(pl.col("cost_usd").is_not_null())
    peak = _peak(priced.group_by("day").agg(pl.col("cost_usd").sum())["cost_usd"])
    fig = _layout(
        go.Figure(),
        height=380,
        barmode="stack",
        bargap=0.15,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "traceorder": "normal"},
        xaxis=_day_axis(_midnight(days[0]) - half_day, _midnight(days[-1]) + half_day, len(days)),
        yaxis=_money_axis(peak),
    )
    if priced.height == 0:
        return _empty(fig, "No priced spend in this period")
    ranking = (
        priced.group_by("feature")
        .agg(pl.col("cost_usd").sum())
        .sort(["cost_usd", "feature"], descending=[True, False])
    )
    keep = ranking.head(top)["feature"].to_list()
    stacked = (
        priced.with_columns(
            pl.when(pl.col("feature").is_in(keep))
            .then(pl.col("feature"))
            .otherwise(pl.lit(OTHER))
            .alias("feature")
        )
        .group_by("day", "feature")
        .agg(pl.col("cost_usd").sum())
    )
    order = keep + ([OTHER] if len(ranking) > len(keep) else [])
    for i, name in enumerate(order):
        part = stacked.filter(pl.col("feature") == name).sort("day")
        fig.add_bar(
            x=[d.isoformat() for d in part["day"].to_list()],
            y=part["cost_usd"].to_list(),
            name=label(name),
            marker_color=_GREY if name == OTHER else PALETTE[i % len(PALETTE)],
            width=_DAY_MS * 0.85,  # in ms on a date axis: plotly cannot infer it from one day
            hovertemplate="%{fullData.name}<br>%{x|%Y-%m-%d}: $%{y:,.4f}<extra></extra>",
        )
    return fig


def _hbar(
    names: Sequence[str], costs: Sequence[float], shares: Sequence[float | None], color: str
) -> go.Figure:
    """Horizontal bars, largest on top, labelled with their share of the total."""
    text = [f"{s:.1%}" if s is not None else "" for s in shares]
    fig = go.Figure(
        go.Bar(
            x=list(costs)[::-1],
            y=[label(n) for n in names][::-1],
            orientation="h",
            marker_color=color,
            text=text[::-1],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}<br>$%{x:,.4f}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", automargin=True)
    # Room on the right for the share labels printed outside the longest bar.
    fig.update_xaxes(range=[0, max(costs) * 1.18 if costs else 1])
    return fig


def model_mix_figure(by_model: pl.DataFrame, *, top: int = 10) -> go.Figure:
    """Spend per model as horizontal bars with each model's share.

    ``by_model`` is :func:`clauditor.analytics.costs.cost_breakdown` output grouped by
    ``model``. Unpriced models have no bar (their calls are listed in the report's notice).
    """
    priced = by_model.filter(pl.col("cost_usd").is_not_null()).head(top)
    height = max(220, 60 + 34 * priced.height)
    if priced.height == 0:
        return _empty(_layout(go.Figure(), height=height), "No priced spend in this period")
    fig = _hbar(
        priced["model"].to_list(),
        priced["cost_usd"].to_list(),
        priced["share"].to_list(),
        PALETTE[0],
    )
    return _layout(fig, height=height, xaxis=_money_axis(max(priced["cost_usd"].to_list())))


def untagged_figure(by_location: pl.DataFrame, *, top: int = 10) -> go.Figure:
    """Spend of calls with no feature tag, per code location (where to add a tag first).

    ``by_location`` is :func:`clauditor.analytics.costs.cost_breakdown` over the untagged calls
    grouped by ``code_location``; ``share`` there is the share of the untagged spend.
    """
    priced = by_location.filter(pl.col("cost_usd").is_not_null()).head(top)
    height = max(220, 60 + 34 * priced.height)
    if priced.height == 0:
        return _empty(_layout(go.Figure(), height=height), "No untagged spend")
    fig = _hbar(
        priced["code_location"].to_list(),
        priced["cost_usd"].to_list(),
        priced["share"].to_list(),
        PALETTE[1],
    )
    return _layout(fig, height=height, xaxis=_money_axis(max(priced["cost_usd"].to_list())))


# --- budget, errors, latency, cache, spikes ---------------------------------------------------

_BUDGET = "#1B2A4E"
_FORECAST = "#4C6EF5"
_DANGER = "#E03131"
_MUTED = "#ADB5BD"


def burnup_figure(
    cumulative: pl.DataFrame,
    *,
    month_start: dt.datetime,
    month_end: dt.datetime,
    as_of: dt.datetime,
    budget_usd: float | None,
    thresholds: Sequence[float],
    forecast: tuple[float, float, float] | None,
    crossings: pl.DataFrame,
) -> go.Figure:
    """Month-to-date spend climbing towards the budget, with the forecast band to month end.

    ``cumulative``: ``time`` (naive local), ``spent_usd`` running total. ``forecast`` is
    (low, expected, high) month-end spend; the band is drawn from today's spend at ``as_of``
    (naive local) to those at ``month_end``. ``crossings``: ``crossed_at`` (naive local),
    ``threshold``, ``spent_usd``. Thresholds are drawn as dotted lines, the budget solid.
    """
    peak = max(
        [_peak(cumulative["spent_usd"])]
        + ([forecast[2]] if forecast is not None else [])
        + ([budget_usd * max(thresholds, default=1.0)] if budget_usd else [])
    )
    fig = _layout(
        go.Figure(),
        height=360,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis={"type": "date", "range": [month_start, month_end], "tickformat": "%b %d"},
        yaxis={**_money_axis(peak, decimals=0), "rangemode": "tozero"},
    )
    if cumulative.height:
        fig.add_scatter(
            x=cumulative["time"].to_list(),
            y=cumulative["spent_usd"].to_list(),
            mode=_line_mode(cumulative.height),
            line={"color": _BUDGET, "width": 3, "shape": "hv"},
            name="spent",
            hovertemplate="%{x|%b %d %H:%M}: $%{y:,.2f}<extra>spent</extra>",
        )
    if forecast is not None:
        low, mid, high = forecast
        now = float(cumulative["spent_usd"][-1]) if cumulative.height else 0.0
        fig.add_scatter(
            x=[as_of, month_end, month_end, as_of],
            y=[now, high, low, now],
            fill="toself",
            fillcolor="rgba(76,110,245,0.18)",
            line={"width": 0},
            name="forecast range",
            hoverinfo="skip",
        )
        fig.add_scatter(
            x=[as_of, month_end],
            y=[now, mid],
            mode="lines",
            line={"color": _FORECAST, "dash": "dash", "width": 2},
            name="forecast",
            hovertemplate="$%{y:,.2f}<extra>forecast</extra>",
        )
    if budget_usd:
        for fraction in thresholds:
            solid = abs(fraction - 1.0) < 1e-9
            fig.add_hline(
                y=budget_usd * fraction,
                line={
                    "color": _DANGER if solid else _MUTED,
                    "dash": "solid" if solid else "dot",
                    "width": 2 if solid else 1,
                },
                annotation_text=f"{fraction:.0%} ${budget_usd * fraction:,.0f}",
                annotation_position="top left",
                annotation_font={"size": 11, "color": "#495057"},
            )
    if crossings.height:
        fig.add_scatter(
            x=crossings["crossed_at"].to_list(),
            y=crossings["spent_usd"].to_list(),
            mode="markers",
            marker={"color": _DANGER, "size": 10, "symbol": "diamond"},
            name="threshold crossed",
            text=[f"{t:.0%}" for t in crossings["threshold"].to_list()],
            hovertemplate="%{text} crossed %{x|%b %d %H:%M}<extra></extra>",
        )
    if not cumulative.height and forecast is None:
        return _empty(fig, "No spend this month")
    return fig


ERROR_COLORS = {
    "overloaded": "#E03131",
    "rate_limited": "#F59F00",
    "server_error": "#9C36B5",
    "client_error": "#1C7ED6",
    "timeout": "#0CA678",
    "connection": "#495057",
    "other": "#ADB5BD",
}


def error_rate_figure(
    windows: pl.DataFrame,
    episodes: pl.DataFrame,
    *,
    threshold: float,
    x_range: tuple[dt.datetime, dt.datetime] | None = None,
) -> go.Figure:
    """Error rate per time bucket, stacked by error class, with the threshold and episodes.

    ``windows``: ``time`` (naive local), ``error_class``, ``error_rate`` (classes only, no
    ``any``). ``episodes``: ``start``, ``end`` (naive local), ``error_class``, ``error_rate``;
    each is shaded and labelled. ``x_range`` (naive local) is the period shown.
    """
    fig = _layout(
        go.Figure(),
        height=340,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis=_time_axis(x_range),
        yaxis={"tickformat": ".0%", "rangemode": "tozero"},
        hovermode="x unified",
    )
    if windows.height == 0:
        return _empty(fig, "No calls in this period")
    if not (windows["error_rate"] > 0).any():
        return _empty(fig, "No failed calls in this period")
    for name in ERROR_COLORS:
        part = windows.filter(pl.col("error_class") == name).sort("time")
        if part.height == 0 or not (part["error_rate"] > 0).any():
            continue
        fig.add_scatter(
            x=part["time"].to_list(),
            y=part["error_rate"].to_list(),
            mode=_line_mode(part.height),
            stackgroup="errors",
            line={"width": 0.5, "color": ERROR_COLORS[name]},
            name=name.replace("_", " "),
            hovertemplate="%{y:.1%}",
        )
    fig.add_hline(
        y=threshold,
        line={"color": "#212529", "dash": "dash", "width": 1},
        annotation_text=f"threshold {threshold:.0%}",
        annotation_position="top left",
        annotation_font={"size": 11},
    )
    for i, row in enumerate(episodes.iter_rows(named=True)):
        fig.add_vrect(
            x0=row["start"],
            x1=row["end"],
            fillcolor="rgba(224,49,49,0.12)",
            line={"width": 1, "color": "rgba(224,49,49,0.5)"},
            layer="below",
        )
        # The episode's own rate, drawn over its span: the buckets above average it with the
        # quiet hours around it, so the label and a line of the chart say the same number.
        fig.add_scatter(
            x=[row["start"], row["end"]],
            y=[row["error_rate"], row["error_rate"]],
            mode="lines+markers",
            line={"color": _DANGER, "width": 2, "dash": "dot"},
            marker={"size": 5, "color": _DANGER},
            name="error episode",
            legendgroup="episodes",
            showlegend=i == 0,
            hovertemplate="episode %{y:.1%}<extra></extra>",
        )
        minutes = (row["end"] - row["start"]).total_seconds() / 60
        fig.add_annotation(
            x=row["start"],
            y=1,
            yref="paper",
            text=(
                f"{label(row['error_class']).replace('_', ' ')} {row['error_rate']:.0%} "
                f"for {minutes:.0f} min"
            ),
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"size": 11, "color": _DANGER},
            bgcolor="rgba(255,255,255,0.85)",
        )
    return fig


def latency_figure(daily: pl.DataFrame, period: Period | None = None) -> go.Figure:
    """Daily latency percentiles: whole-call p50/p95/p99 and time to first token p50/p95.

    ``daily``: ``period`` (a day), ``duration_p50_ms`` … ``ttft_p95_ms`` (latency job output).
    With ``period``, the axis shows each of its days.
    """
    xaxis: dict[str, object] = {"type": "date"}
    if period is not None:
        days = _period_days(period)
        half_day = dt.timedelta(hours=12)
        xaxis = _day_axis(_midnight(days[0]) - half_day, _midnight(days[-1]) + half_day, len(days))
    fig = _layout(
        go.Figure(),
        height=340,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis=xaxis,
        yaxis={"ticksuffix": " s", "rangemode": "tozero"},
        hovermode="x unified",
    )
    if daily.height == 0:
        return _empty(fig, "No successful calls in this period")
    x = [d.isoformat() for d in daily["period"].to_list()]
    lines = [
        ("duration_p50_ms", "call p50", PALETTE[0], "solid"),
        ("duration_p95_ms", "call p95", PALETTE[0], "dash"),
        ("duration_p99_ms", "call p99", PALETTE[0], "dot"),
        ("ttft_p50_ms", "first token p50", PALETTE[2], "solid"),
        ("ttft_p95_ms", "first token p95", PALETTE[2], "dash"),
    ]
    for column, name, color, dash in lines:
        values = [None if v is None else v / 1000 for v in daily[column].to_list()]
        if all(v is None for v in values):
            continue
        fig.add_scatter(
            x=x,
            y=values,
            mode="lines+markers",
            marker={"size": 8 if len(x) == 1 else 4},
            line={"color": color, "dash": dash, "width": 2},
            name=name,
            hovertemplate="%{y:.2f} s",
        )
    return fig


def cache_hit_figure(
    series: pl.DataFrame,
    regressions: pl.DataFrame,
    *,
    top: int = 6,
    x_range: tuple[dt.datetime, dt.datetime] | None = None,
) -> go.Figure:
    """Cache hit ratio over time per feature, with detected regressions marked.

    ``series``: ``time`` (naive local), ``key``, ``hit_ratio``, ``input_total`` (input + read +
    write tokens, used to keep the ``top`` busiest features). ``regressions``: ``key``,
    ``start`` (naive local), ``before_ratio``, ``after_ratio``. ``x_range`` (naive local) is
    the period shown.
    """
    fig = _layout(
        go.Figure(),
        height=340,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis=_time_axis(x_range),
        yaxis={"tickformat": ".0%", "range": [0, 1.05]},
    )
    cached = series.group_by("key").agg(
        pl.col("input_total").sum(), pl.col("hit_ratio").max().alias("best")
    )
    keys = (
        cached.filter(pl.col("best") > 0)
        .sort(["input_total", "key"], descending=[True, False])
        .head(top)["key"]
        .to_list()
    )
    if not keys:
        return _empty(fig, "No prompt caching in this period")
    for i, key in enumerate(keys):
        part = series.filter(pl.col("key") == key).sort("time")
        fig.add_scatter(
            x=part["time"].to_list(),
            y=part["hit_ratio"].to_list(),
            mode=_line_mode(part.height),
            line={"color": PALETTE[i % len(PALETTE)], "width": 2},
            name=label(key),
            hovertemplate="%{fullData.name}<br>%{x|%b %d %H:%M}: %{y:.0%}<extra></extra>",
        )
    for row in regressions.iter_rows(named=True):
        fig.add_vline(x=row["start"], line={"color": _DANGER, "dash": "dash", "width": 1.5})
        fig.add_annotation(
            x=row["start"],
            y=1.02,
            yref="y",
            text=f"{label(row['key'])}: {row['before_ratio']:.0%} → {row['after_ratio']:.0%}",
            showarrow=False,
            xanchor="left",
            font={"size": 11, "color": _DANGER},
            bgcolor="rgba(255,255,255,0.8)",
        )
    return fig


def spikes_figure(
    hourly: pl.DataFrame,
    episodes: pl.DataFrame,
    *,
    x_range: tuple[dt.datetime, dt.datetime] | None = None,
) -> go.Figure:
    """Hourly spend of the features that spiked, with each spike episode shaded.

    ``hourly``: ``time`` (naive local), ``key``, ``cost_usd``. ``episodes``: ``key``,
    ``start``, ``end`` (naive local), ``excess_usd`` (already scaled for a sample).
    ``x_range`` (naive local) is the period shown.
    """
    fig = _layout(
        go.Figure(),
        height=320,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis=_time_axis(x_range),
        yaxis={**_money_axis(_peak(hourly["cost_usd"])), "rangemode": "tozero"},
    )
    if episodes.height == 0:
        return _empty(fig, "No spend spikes in this period")
    keys = list(dict.fromkeys(episodes["key"].to_list()))
    for i, key in enumerate(keys):
        part = hourly.filter(pl.col("key") == key).sort("time")
        fig.add_scatter(
            x=part["time"].to_list(),
            y=part["cost_usd"].to_list(),
            mode=_line_mode(part.height),
            line={"color": PALETTE[i % len(PALETTE)], "width": 1.5},
            name=label(key),
            hovertemplate="%{fullData.name}<br>%{x|%b %d %H:00}: $%{y:,.2f}<extra></extra>",
        )
    for row in episodes.iter_rows(named=True):
        fig.add_vrect(
            x0=row["start"],
            x1=row["end"],
            fillcolor="rgba(224,49,49,0.15)",
            line={"width": 0},
            layer="below",
        )
        fig.add_annotation(
            x=row["end"],
            y=1,
            yref="paper",
            text=f"{label(row['key'])} +${row['excess_usd']:,.2f}",
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"size": 11, "color": _DANGER},
            bgcolor="rgba(255,255,255,0.85)",
        )
    return fig
