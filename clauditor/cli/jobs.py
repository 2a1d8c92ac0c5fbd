"""The analytics jobs' commands: each runs its jobs through :mod:`clauditor.analytics.runner`
(the engine's reductions of the period's calls, finished in Polars) and prints them. They are
listed under ``JOBS_PANEL`` in ``clauditor --help`` (registered in :mod:`clauditor.cli`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clauditor.cli._common import (
    AsOfOpt,
    ConfigOpt,
    FormatOpt,
    PeriodOpt,
    SourceOpt,
    handles_errors,
    resolve_source,
    resolve_span,
    split_keys,
)
from clauditor.output import Format, emit, err, out

if TYPE_CHECKING:
    import polars as pl

    from clauditor.analytics.costs import SourceFilter
    from clauditor.config import Config


@handles_errors
def costs(
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Comma-separated: feature, model, service, environment, user, code_location.",
        ),
    ] = "feature",
    every: Annotated[
        str | None,
        typer.Option(help="Split into hour, day, week or month buckets (calendar, config zone)."),
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="Whose calls: app (every source but claude-code), claude-code, all, or "
            "comma-separated source names.",
        ),
    ] = "app",
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Spend by feature (or any keys) in a period, with the change against the period before.

    Untagged spend and unpriced calls are rows of their own, never hidden. A period with no
    calls says so and lists nothing (CSV: the header only; JSON: []). Developers' Claude Code
    usage is kept apart: left out by default (a line says how much), shown with
    ``--source claude-code``.
    """
    from clauditor.analytics.runner import costs_table
    from clauditor.schema import CLAUDE_CODE_SOURCE

    cfg, span = resolve_span(config, period, as_of)
    keys = split_keys(by)
    sources = _source_filter(source)
    table = costs_table(
        resolve_source(db), span, keys, every=every, tz=cfg.timezone, sources=sources
    )
    # Buckets count every call of the period; the change table the calls that could cost.
    found = int(table["calls"].sum()) + (int(table["count_tokens_calls"].sum()) if every else 0)
    if found == 0:
        # No rows of zeros against the period before (each "-100 %"): the period is empty.
        if fmt is Format.table:
            err.print(
                f"no calls between {span.start} and {span.end} (UTC); try --period or --as-of",
                markup=False,
            )
        else:
            emit(table.head(0), fmt)
        return
    scope = ", ".join(keys) or "total"
    # Claude Code on a subscription only: its dollars are list prices, not spend.
    what = (
        "Spend"
        if cfg.claude_code.is_spend or sources.only != (CLAUDE_CODE_SOURCE,)
        else ("List-price equivalent (subscription, not spend)")
    )
    if every:
        title = f"{what} by {every} and {scope} — {span.label}"
    else:
        title = f"{what} by {scope} — {span.label} (change vs the period before)"
    emit(table, fmt, title=title)
    if fmt is Format.table:
        _print_spend_notes(resolve_source(db), span, cfg, sources)
        note = _claude_code_note(resolve_source(db), span, cfg, sources, "--source claude-code")
        if note:
            out.print(note, markup=False)


def _source_filter(source: str) -> SourceFilter:
    """``--source``: ``app`` (every source but claude-code), ``all``, or source names."""
    from clauditor.analytics.costs import APP_SOURCES, SourceFilter

    choice = source.strip()
    if choice == "app":
        return APP_SOURCES
    if choice == "all":
        return SourceFilter()
    try:
        return SourceFilter(only=tuple(split_keys(choice)))
    except ValueError as exc:
        raise ValueError(f"--source: {exc}, or app, or all") from None


def _claude_code_note(
    db: Path | str, span: Any, cfg: Config, shown: SourceFilter, how_to_see: str
) -> str | None:
    """The line about developers' Claude Code calls of ``span``: left out (and how to see
    them), or, when Claude Code runs on a subscription, their list-price equivalent that is
    not spend. None when there were none."""
    from clauditor.analytics.engine import is_clickhouse
    from clauditor.analytics.spend_notes import claude_code_totals
    from clauditor.schema import CLAUDE_CODE_SOURCE
    from clauditor.store import read_connection

    if is_clickhouse(db):
        from clauditor.clickhouse.engine import claude_code_totals as claude_code_totals_on

        calls, dollars = claude_code_totals_on(str(db), span)
    else:
        with read_connection(db) as con:
            calls, dollars = claude_code_totals(con, span.start, span.end)
    if not calls:
        return None
    subscription = not cfg.claude_code.is_spend
    if shown.admits(CLAUDE_CODE_SOURCE):
        if subscription:
            return (
                f"Claude Code ({calls:,} calls): ${dollars:,.2f} is the list-price equivalent, "
                "not spend: it is included in the subscription ([claude_code] billing = "
                '"subscription")'
            )
        return None
    if subscription:
        return (
            f"Claude Code (developers, {calls:,} calls): ${dollars:,.2f} at list price, included "
            f"in the subscription, not spend; see it with {how_to_see}"
        )
    return (
        f"Claude Code (developers, {calls:,} calls): ${dollars:,.2f} of spend left out; "
        f"see it with {how_to_see}"
    )


def _print_spend_notes(
    db: Path | str, span: Any, cfg: Config, sources: SourceFilter | None = None
) -> None:
    """Server tools, assumed-TTL dollars and code execution of the period (of ``sources``'
    calls), under the table."""
    from clauditor.analytics.costs import restrict_to_sources
    from clauditor.analytics.engine import is_clickhouse
    from clauditor.analytics.spend_notes import spend_notes
    from clauditor.store import read_connection

    if is_clickhouse(db):
        from clauditor.clickhouse.engine import clickhouse_spend_notes

        notes = clickhouse_spend_notes(str(db), span.start, span.end, cfg.price_table(), sources)
    else:
        with read_connection(db) as con:
            restrict_to_sources(con, sources)
            notes = spend_notes(con, span.start, span.end, cfg.price_table())
    for line in notes.lines():
        out.print(line, markup=False)


def _widened(span: Any, history: dt.timedelta) -> Any:
    """``span`` starting ``history`` earlier (a baseline's look-back), same label and zone."""
    from clauditor.analytics.periods import Period

    return Period(span.start - history, span.end, span.label, span.tz)


def _in_period(frame: pl.DataFrame, span: Any, column: str) -> pl.DataFrame:
    import polars as pl

    if frame.height == 0 or column not in frame.columns:
        return frame
    return frame.filter(
        (pl.col(column) >= span.start) & (pl.col(column) < span.end)
        if frame.schema[column] != pl.Date
        else pl.col(column) >= span.start.date()
    )


@handles_errors
def cache(
    by: Annotated[str, typer.Option("--by", help="Comma-separated group keys.")] = "feature,model",
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Cache economics: hit ratio, dollars saved, wasted writes, 1h-vs-5m TTL, candidates."""
    from clauditor.analytics.runner import cache_tables

    _, span = resolve_span(config, period, as_of)
    tables = cache_tables(resolve_source(db), span, split_keys(by), candidates=fmt is Format.table)
    emit(tables[0], fmt, title=f"Cache economics — {span.label}")
    if fmt is Format.table:
        emit(tables[1], fmt, title="Caching candidates (large uncached input)")
        emit(tables[2], fmt, title="Cache hit-ratio regressions")


@handles_errors
def errors(
    window: Annotated[str, typer.Option(help="Rolling window (Polars duration).")] = "5m",
    threshold: Annotated[
        float, typer.Option(help="Error rate that counts as degraded.", min=0.0, max=1.0)
    ] = 0.01,
    min_duration: Annotated[str, typer.Option(help="Shortest episode reported.")] = "5m",
    min_calls: Annotated[int, typer.Option(help="Fewest calls in an episode.", min=1)] = 20,
    period: PeriodOpt = "7d",
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Sustained error episodes per class (429, 529, 5xx, 4xx, timeouts); retry amplification."""
    from clauditor.analytics.runner import errors_tables

    _, span = resolve_span(config, period, as_of)
    episodes, amplification = errors_tables(
        resolve_source(db),
        span,
        window=window,
        threshold=threshold,
        min_duration=min_duration,
        min_calls=min_calls,
    )
    emit(episodes, fmt, title=f"Error episodes (> {threshold:.1%} over {window}) — {span.label}")
    if fmt is Format.table:
        emit(amplification, fmt, title="Retry amplification (attempts per call)")


@handles_errors
def latency(
    by: Annotated[str, typer.Option("--by", help="Comma-separated group keys.")] = "feature,model",
    every: Annotated[
        str, typer.Option(help="Bucket (1h, 1d, 1w) or 'none' for the whole period.")
    ] = "1d",
    period: PeriodOpt = "7d",
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """p50/p95/p99 of call duration and time to first token."""
    from clauditor.analytics.runner import latency_table

    cfg, span = resolve_span(config, period, as_of)
    bucket = None if every.lower() == "none" else every
    table = latency_table(resolve_source(db), span, split_keys(by), every=bucket, tz=cfg.timezone)
    emit(table, fmt, title=f"Latency — {span.label}")


@handles_errors
def budget(
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Month-to-date spend against the budget, forecast to month end, thresholds crossed.

    The budget is the app's: developers' Claude Code calls never count against it (a line
    says what they came to, and whether that is spend or included in a subscription).
    """
    from clauditor.analytics.costs import APP_SOURCES
    from clauditor.analytics.runner import budget_table

    cfg, month = resolve_span(config, "mtd", as_of)
    moment = month.end  # the evaluation moment (now, or --as-of)
    # The month so far and the look-back of the forecast before it.
    window = _widened(month, dt.timedelta(days=35))
    table = budget_table(resolve_source(db), window, config=cfg, as_of=moment, sources=APP_SOURCES)
    emit(table, fmt, title=f"Budget as of {moment:%Y-%m-%d %H:%M} UTC")
    if fmt is Format.table:
        note = _claude_code_note(
            resolve_source(db),
            month,
            cfg,
            APP_SOURCES,
            "clauditor costs --source claude-code --period mtd",
        )
        if note:
            out.print(note, markup=False)
    if fmt is Format.table and cfg.budget.monthly_usd is None:
        err.print(
            "no [budget] monthly_usd in the config: showing spend and forecast only", markup=False
        )


@handles_errors
def spikes(
    by: Annotated[str, typer.Option("--by", help="Group key.")] = "feature",
    period: PeriodOpt = "7d",
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Hourly spend spikes against a robust trailing baseline (runaway loops, model changes)."""
    from clauditor.analytics.runner import spikes_table

    _, span = resolve_span(config, period, as_of)
    # A week before the period: the trailing baseline of its first hours.
    found = spikes_table(resolve_source(db), _widened(span, dt.timedelta(days=7)), by)
    emit(_in_period(found, span, "start"), fmt, title=f"Spend spikes by {by} — {span.label}")


@handles_errors
def failures(
    by: Annotated[str, typer.Option("--by", help="Comma-separated group keys.")] = "feature",
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Cost of failure: billed dollars of failed calls, truncated outputs, abandoned streams.

    Rejected requests (429, 529) are not billed: their resends are counted, not priced.
    """
    from clauditor.analytics.runner import failures_table

    _, span = resolve_span(config, period, as_of)
    table = failures_table(resolve_source(db), span, split_keys(by))
    emit(table, fmt, title=f"Cost of failure — {span.label}")


@handles_errors
def audit(
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: SourceOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Score the app against the production checklist items telemetry can judge."""
    from clauditor.analytics.runner import audit_table

    cfg, span = resolve_span(config, period, as_of)
    table = audit_table(resolve_source(db), span, config=cfg, as_of=span.end)
    emit(table, fmt, title=f"Production checklist audit — {span.label}")


__all__ = ["audit", "budget", "cache", "costs", "errors", "failures", "latency", "spikes"]
