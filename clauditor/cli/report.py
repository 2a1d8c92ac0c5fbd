"""The report and the alerts: ``report`` (HTML, optionally the digest) and ``alerts check``
/ ``alerts backtest``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clauditor.cli._common import (
    AsOfOpt,
    ConfigOpt,
    DbOpt,
    FormatOpt,
    PeriodOpt,
    handles_errors,
    parse_as_of,
    resolve_config,
    resolve_db,
)
from clauditor.output import Format, count, emit, err, out

if TYPE_CHECKING:
    pass


@handles_errors
def report(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="IANA time zone for days and times. Default: the config's."),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the report in the default browser.")
    ] = False,
    notify: Annotated[
        bool,
        typer.Option(
            "--notify",
            help="Also post yesterday's digest to $CLAUDITOR_SLACK_WEBHOOK_URL and/or "
            "$CLAUDITOR_WEBHOOK_URL, once per day however often it runs (for cron).",
        ),
    ] = False,
) -> None:
    """Write the self-contained HTML cost report (opens offline, no network requests).

    With --notify, exit code 1 when the digest could not be delivered (the next run retries it).
    """
    from clauditor.dashboards import write_report

    cfg = resolve_config(config)
    zone = tz or cfg.timezone
    moment = parse_as_of(as_of, zone)
    sinks: list[Any] = []
    if notify:
        from clauditor.alerts.deliver import sinks_from_env

        sinks = sinks_from_env()  # a malformed URL fails before any work is done
    summary = write_report(
        resolve_db(db), out_file, period=period, as_of=moment, config=cfg, tz=zone
    )
    out.print(
        f"report: {summary.out} ({summary.bytes / 1e6:.1f} MB, {count(summary.calls, 'call')})",
        markup=False,
    )
    if notify:
        from clauditor.dashboards.digest import notify as post_digest

        where = cfg.report.url or str(summary.out.resolve())
        result = post_digest(resolve_db(db), cfg, report=where, as_of=moment, sinks=sinks)
        for message in result.sent:
            out.print(f"digest for {message.key} sent", markup=False)
        if not result.sent and not result.failed:
            out.print(f"digest for {result.day} already sent; nothing to do", markup=False)
        for message, reason in result.failed:
            err.print(
                f"digest for {message.key} not delivered (retried on the next run): {reason}",
                markup=False,
            )
        if result.failed:
            raise typer.Exit(1)
    if open_browser:
        import webbrowser

        if not webbrowser.open(summary.out.resolve().as_uri()):
            err.print("no browser found to open it; open the file above by hand")


@handles_errors
def alerts_check(
    as_of: AsOfOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the messages; send nothing, change no state.")
    ] = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Evaluate every alert rule and send what started, escalated or resolved (for cron).

    Exit code 1 while any alert is firing, 0 otherwise. The destination comes from
    $CLAUDITOR_SLACK_WEBHOOK_URL and/or $CLAUDITOR_WEBHOOK_URL; without one the messages are
    printed.
    """
    from clauditor.alerts import check_alerts, render_text

    cfg = resolve_config(config)
    result = check_alerts(
        resolve_db(db), cfg, as_of=parse_as_of(as_of, cfg.timezone), dry_run=dry_run
    )
    for message in result.printed:
        out.print(render_text(message), highlight=False, markup=False)
        out.print()
    for message, reason in result.failed:
        err.print(f"delivery failed (retried next run): {message.title}: {reason}", markup=False)
    out.print(
        f"{len(result.firing)} firing, {len(result.sent)} sent"
        + (f", {len(result.failed)} failed" if result.failed else "")
        + (" (dry run: nothing sent or recorded)" if dry_run else ""),
        highlight=False,
    )
    if result.firing:
        raise typer.Exit(1)


@handles_errors
def alerts_backtest(
    since: Annotated[str, typer.Option(help="How far back to replay (a period spec).")] = "30d",
    step: Annotated[str, typer.Option(help="Evaluation step, as cron would run.")] = "1h",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Replay history through the rules: every alert that would have fired, to tune thresholds."""
    from clauditor.alerts import backtest

    cfg = resolve_config(config)
    table = backtest(
        resolve_db(db), cfg, since=since, as_of=parse_as_of(as_of, cfg.timezone), step=step
    )
    emit(table, fmt, title=f"Alerts that would have fired ({since})")


__all__ = ["alerts_backtest", "alerts_check", "report"]
