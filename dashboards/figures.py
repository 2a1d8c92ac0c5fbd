"""Plotly figures for the report, each drawn from an already-aggregated Polars frame.

Figures take aggregates (per day, per feature, per model), never per-call rows, so a report's
size does not grow with the number of calls. Every label that comes from telemetry (feature,
model, code location) goes through :func:`label` first: Plotly renders trace names, tick labels
and hover text as a small HTML dialect, so a feature named ``<img src=x onerror=...>`` must reach
it as ``&lt;img …&gt;`` to be shown as text rather than interpreted.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence

import plotly.graph_objects as go
import polars as pl

from clauditor.analytics.periods import Period

__all__ = [
    "OTHER",
    "PALETTE",
    "daily_spend_figure",
    "label",
    "model_mix_figure",
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
    span = [
        (_midnight(days[0]) - half_day).isoformat(),
        (_midnight(days[-1]) + half_day).isoformat(),
    ]
    fig = _layout(
        go.Figure(),
        height=380,
        barmode="stack",
        bargap=0.15,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "traceorder": "normal"},
        xaxis={"type": "date", "range": span, "tickformat": "%b %d", "title": None},
        yaxis={"tickprefix": "$", "tickformat": ",.2f", "title": None},
    )
    priced = daily.filter(pl.col("cost_usd").is_not_null())
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
    return _layout(fig, height=height, xaxis={"tickprefix": "$", "tickformat": ",.2f"})


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
    return _layout(fig, height=height, xaxis={"tickprefix": "$", "tickformat": ",.2f"})
