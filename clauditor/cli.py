"""The ``clauditor`` command line: thin commands over the library.

Each command parses its options, calls one library function and prints the result. Library
errors (:class:`clauditor.errors.ClauditorError`) become a one-line ``error: ...`` on stderr and
exit code 2 at the boundary (:func:`clauditor._cli_common.handles_errors`), and nowhere else.
Shared options are defined once in :mod:`clauditor._cli_common`; the analytics jobs' commands
live in :mod:`clauditor._cli_jobs`. Heavy modules are imported inside the commands so that
``clauditor --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clauditor import _cli_jobs  # noqa: F401  (registers the analytics jobs' commands)
from clauditor._cli_common import (
    AsOfOpt,
    CliApp,
    ConfigOpt,
    DbOpt,
    Format,
    FormatOpt,
    PeriodOpt,
    SourceOpt,
    app,
    count,
    emit,
    err,
    handles_errors,
    out,
    parse_as_of,
    prices_app,
    resolve_config,
    resolve_db,
    resolve_source,
    split_keys,
)

if TYPE_CHECKING:
    from clauditor.config import Config

# --- commands ------------------------------------------------------------------------------------


@app.command()
@handles_errors
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of OTLP JSON lines.")],
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ingest OTLP JSON-lines telemetry (plain or .gz, files or folders) into the database.

    Idempotent: spans already stored are skipped. Malformed lines and spans are counted,
    reported with file and line, and quarantined; everything else is ingested. Exit code 1 when
    anything was rejected.
    """
    summary = _ingest_with_progress(paths, resolve_db(db), resolve_config(config))
    _print_ingest_summary(summary)
    if summary.rejected:
        raise typer.Exit(1)


def _ingest_with_progress(paths: list[Path], db: Path, config: Config) -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from clauditor.ingest import ingest_paths

    total_bytes = sum(
        f.stat().st_size
        for p in paths
        for f in ([p] if p.is_file() else (p.rglob("*") if p.is_dir() else []))
        if f.is_file()
    )
    if total_bytes < 2_000_000 or not err.is_terminal:
        return ingest_paths(paths, db, config=config)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("ingesting", total=total_bytes)
        return ingest_paths(
            paths, db, config=config, progress=lambda done, total: bar.update(task, completed=done)
        )


def _print_ingest_summary(summary: Any) -> None:
    err.print(
        f"{count(summary.spans_read, 'span')} read, {count(summary.calls_written, 'call')} "
        f"written, {count(summary.duplicates, 'duplicate')} skipped, {summary.rejected:,} rejected"
        + (f", {summary.unpriced:,} unpriced" if summary.unpriced else ""),
        highlight=False,
    )
    for model, calls in sorted(summary.unpriced_models.items()):
        err.print(
            f"  no price for model {model!r} ({count(calls, 'call')}): add a "
            f"[prices.{model!r}] card "
            "or run `clauditor prices check`; `clauditor reprice` prices them once it exists",
            highlight=False,
            markup=False,
        )
    for rejection in summary.rejections[:20]:
        err.print(
            f"  rejected {rejection.origin}: {rejection.reason}", highlight=False, markup=False
        )
    if summary.rejected > 20:
        err.print(
            f"  … and {summary.rejected - 20:,} more (all in the `quarantine` table)",
            highlight=False,
        )


@app.command()
@handles_errors
def query(
    sql: Annotated[
        str,
        typer.Argument(help="One read: SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN."),
    ],
    db: SourceOpt = None,
    fmt: FormatOpt = Format.table,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Stop the query after this many seconds.")
    ] = 60.0,
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="DuckDB's memory cap for the query, e.g. 2GB.")
    ] = "2GB",
) -> None:
    """Run read-only ad-hoc SQL over the views: calls, daily_costs, feature_costs, errors.

    The query runs in a sandbox that can read only the database (or Parquet folder) it is
    given: no file, extension or network, no change to the database, a time and memory limit.
    """
    from clauditor.analytics.engine import is_clickhouse
    from clauditor.sql import run_query

    source = resolve_source(db)
    if is_clickhouse(source):  # read-only by ClickHouse's own setting (clickhouse/query.py)
        from clauditor.clickhouse.query import run_query as run_on_clickhouse

        result = run_on_clickhouse(str(source), sql, timeout_s=timeout, memory_limit=memory_limit)
    else:
        result = run_query(source, sql, timeout_s=timeout, memory_limit=memory_limit)
    emit(result, fmt, exact=True)  # the SQL chose the precision: print every digit it returned


@app.command()
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


@app.command()
@handles_errors
def simulate(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output .jsonl or .jsonl.gz.")],
    days: Annotated[int, typer.Option(help="Days of traffic.", min=1)] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 7,
    end: Annotated[
        str | None,
        typer.Option(help="Last moment (ISO 8601 or 'now'). Default: the committed sample's end."),
    ] = None,
    scale: Annotated[float, typer.Option(help="Traffic volume multiplier.")] = 1.0,
) -> None:
    """Write realistic simulated telemetry with planted incidents (OTLP JSON lines)."""
    from clauditor.simulator import simulate as run_simulation

    summary = run_simulation(
        out_file,
        days=days,
        seed=seed,
        end=None if end is None else parse_as_of(end, option="--end"),
        scale=scale,
    )
    out.print(
        f"wrote {summary.spans:,} spans in {summary.lines:,} lines to {summary.out} "
        f"({summary.start:%Y-%m-%d %H:%M} .. {summary.end:%Y-%m-%d %H:%M} UTC)",
        markup=False,
    )
    for incident in summary.incidents:
        out.print(
            f"  planted: {incident.name} at {incident.start:%Y-%m-%d %H:%M} "
            f"({incident.where}): {incident.description}",
            highlight=False,
        )


@app.command()
@handles_errors
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless told).")
    ] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="OTLP/HTTP port (0: any free port).")] = 4318,
    grpc_port: Annotated[int, typer.Option(help="OTLP/gRPC port (0: any free port).")] = 4317,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Receive OTLP traces over HTTP and gRPC from many processes; the database's single writer.

    A request is answered only once its spans are committed, so a sender that retries loses
    nothing. Set $CLAUDITOR_RECEIVER_TOKEN to require `Authorization: Bearer <token>`.
    SIGTERM or Ctrl-C drains the queue and exits.
    """
    import os

    from clauditor.ingest.serve import serve as run_server
    from clauditor.semconv import ENV_RECEIVER_TOKEN

    def ready(receiver: Any) -> None:
        auth = "bearer token required" if os.environ.get(ENV_RECEIVER_TOKEN) else "no auth"
        err.print(
            f"listening: OTLP/HTTP {receiver.http_endpoint}  OTLP/gRPC {receiver.grpc_endpoint}  "
            f"({auth}; writing {resolve_db(db)})",
            highlight=False,
            markup=False,
        )

    run_server(
        resolve_db(db),
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        config=resolve_config(config),
        ready=ready,
    )


@app.command()
@handles_errors
def reprice(db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Reprice every stored call whose rate card changed, unpriced calls included."""
    from clauditor.sql import reprice_all

    r = reprice_all(resolve_db(db), resolve_config(config))
    moved = r.usd_after - r.usd_before
    out.print(
        f"repriced: {count(r.changed, 'call')} changed ({r.newly_priced:,} newly priced); "
        f"${r.usd_before:,.6f} -> ${r.usd_after:,.6f} ({'+' if moved >= 0 else '-'}"
        f"${abs(moved):,.6f}); {count(r.unpriced, 'call')} "
        f"{'has' if r.unpriced == 1 else 'have'} no price"
        + (f" ({', '.join(r.unpriced_models)})" if r.unpriced_models else ""),
        markup=False,
    )


@app.command()
@handles_errors
def export(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder of the dataset (created if missing).")
    ],
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            "-p",
            help="Only these calls (as for the other commands). Default: every call.",
            show_default=False,
        ),
    ] = None,
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write the calls as a Parquet dataset, one folder per UTC day.

    Exporting a day again replaces it. Any reading command's --db also takes such a folder.
    """
    from clauditor.dataset import export_dataset
    from clauditor.store import read_connection

    start = end = None
    if period is not None:
        from clauditor.analytics import resolve_period

        cfg = resolve_config(config)
        span = resolve_period(period, as_of=parse_as_of(as_of, cfg.timezone), tz=cfg.timezone)
        start, end = span.start, span.end
    with read_connection(resolve_db(db)) as con:
        summary = export_dataset(con, out_dir, start=start, end=end)
    days = summary.days
    where = f"{days[0]}..{days[-1]}, {len(days)} day(s)" if days else "no calls in range"
    out.print(f"exported {count(summary.rows, 'call')} to {summary.path} ({where})", markup=False)


clickhouse_app = CliApp(help="ClickHouse as the store, fed by the OpenTelemetry Collector.")
app.add_typer(clickhouse_app, name="clickhouse")
ClickHouseUrlOpt = Annotated[
    str,
    typer.Option(
        "--db",
        help="clickhouse://user@host:8123/db or chdb:///path (password and TLS from "
        "CLAUDITOR_CLICKHOUSE_* environment variables only).",
    ),
]
ClusterOpt = Annotated[
    str | None, typer.Option("--cluster", help="Run ON CLUSTER, with replicated tables.")
]


@clickhouse_app.command("init")
@handles_errors
def clickhouse_init(
    db: ClickHouseUrlOpt,
    cluster: ClusterOpt = None,
    otel_database: Annotated[
        str, typer.Option("--otel-database", help="The exporter's database (its `database`).")
    ] = "default",
    config: ConfigOpt = None,
) -> None:
    """Create calls, the rate cards and the otel_traces view (idempotent); backfill."""
    from clauditor.clickhouse import connect, init

    cfg = resolve_config(config)
    with connect(db) as client:
        r = init(
            client,
            otel_database=otel_database,
            cluster=cluster,
            table=cfg.price_table(),
            feature_attributes=cfg.feature_attributes,
        )
    applied = ", ".join(map(str, r.migrations_applied)) or "none"
    view = (
        f"view created, {count(r.backfilled_spans, 'span')} backfilled"
        if r.view_created
        else ("view unchanged")
    )
    out.print(
        f"clickhouse: migrations applied: {applied}; {count(r.rate_card_rows, 'rate card row')}; "
        f"{view}",
        markup=False,
    )


@clickhouse_app.command("reprice")
@handles_errors
def clickhouse_reprice(
    db: ClickHouseUrlOpt, cluster: ClusterOpt = None, config: ConfigOpt = None
) -> None:
    """Price every call stored in ClickHouse again at the current rate cards."""
    from clauditor.clickhouse import connect, reprice

    with connect(db) as client:
        n = reprice(client, resolve_config(config).price_table(), cluster=cluster)
    out.print(f"clickhouse: repriced {count(n, 'call')}", markup=False)


alerts_app = CliApp(help="Budget, error-rate, spike and cache alerts to Slack or a webhook.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("check")
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


@alerts_app.command("backtest")
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


@prices_app.callback(invoke_without_command=True)
@handles_errors
def prices(
    ctx: typer.Context,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Print the price table in $/MTok (built-in entries plus config overrides)."""
    if ctx.invoked_subcommand is not None:
        return
    from clauditor.pricing import price_table_frame

    emit(
        price_table_frame(resolve_config(config).price_table()),
        fmt,
        title="Prices (USD per million tokens)",
    )


@prices_app.command("check")
@handles_errors
def prices_check(config: ConfigOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List every disagreement between clauditor's rate cards and the upstream price data.

    The upstream is Pydantic's genai-prices as installed; each row carries clauditor's reason
    where it has one. A model only the upstream knows is a card to add before its calls go
    unpriced.
    """
    from clauditor.upstream import check, upstream_version

    found = check(resolve_config(config).price_table())
    emit(found, fmt, title=f"clauditor vs genai-prices {upstream_version()} (USD per MTok)")


@prices_app.command("update")
@handles_errors
def prices_update(
    index_url: Annotated[
        str | None,
        typer.Option(help="Package index to fetch from (default: pip's configured index)."),
    ] = None,
) -> None:
    """Upgrade the upstream price data (genai-prices) from the package index, if reachable."""
    from clauditor.upstream import update

    result = update(index_url)
    where = index_url or "pip's configured package index"
    if not result.ok:
        out.print(
            f"could not update genai-prices from {where} (still {result.before}): {result.message}",
            markup=False,
        )
        raise typer.Exit(1)
    change = "unchanged" if result.before == result.after else f"{result.before} -> {result.after}"
    out.print(f"genai-prices from {where}: {result.message}; {change}", markup=False)


@app.command()
@handles_errors
def reconcile(
    period: PeriodOpt = "30d",
    by: Annotated[
        str,
        typer.Option(
            "--by", help="model, api_key (services named by [reconcile] api_keys) or workspace."
        ),
    ] = "model",
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch",
            help="Fetch the days not stored yet (and unsettled ones) from the Admin API first; "
            "needs $ANTHROPIC_ADMIN_KEY.",
        ),
    ] = False,
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """What clauditor metered against what Anthropic billed, per UTC day and model.

    Each row gets a verdict: matches, unmetered, over-metered or price drift. The bill comes
    from the Admin API's usage and cost reports, stored by --fetch so that later runs work
    offline. Days are UTC days (Anthropic's buckets), whatever the configured time zone.
    """
    from clauditor.analytics.periods import resolve_period
    from clauditor.analytics.reconcile import RECONCILE_GRAINS, reconcile_stored
    from clauditor.ingest.bill import fetch_bill

    grain = by.strip().lower().replace("-", "_")
    if grain not in RECONCILE_GRAINS:
        raise ValueError(f"--by takes one of {', '.join(RECONCILE_GRAINS)}, not {by!r}")
    cfg = resolve_config(config)
    path = resolve_db(db)
    now = parse_as_of(as_of, "UTC")
    span = resolve_period(period, as_of=now, tz="UTC")  # UTC whatever cfg.timezone says
    first = span.start.date()
    last = (span.end - dt.timedelta(microseconds=1)).date()
    if fetch:
        got = fetch_bill(path, first, last, now=now, settle_days=cfg.reconcile.settle_days)
        err.print(
            f"fetched {len(got.days)} UTC day(s) of the bill "
            f"({got.usage_rows:,} usage rows, {got.cost_rows:,} cost rows)"
            if got.days
            else "the stored bill is settled for every day asked: nothing fetched",
            highlight=False,
        )
    result = reconcile_stored(path, first, last, cfg, by=grain)
    if fmt is Format.table:
        lead = [c for c in ("day", "model", "service", "api_key_id", "workspace_id")
                if c in result.rows.columns]  # fmt: skip
        shown = [*lead, "billed_usd", "metered_usd", "unmetered_usd", "verdict", "token_gaps"]
        emit(
            result.rows.select(*shown, "bill_fetched_at", "partial"),
            fmt,
            title=f"Billed vs metered, {first}..{last} (UTC days: Anthropic's buckets are UTC "
            "days whatever the configured time zone)",
        )
    else:
        emit(result.rows, fmt)
    _print_reconcile_notes(result, grain)


def _print_reconcile_notes(result: Any, grain: str) -> None:
    """The notes beside the rows, on stderr so that CSV and JSON stay machine-readable."""
    err.print(
        "days are UTC days (Anthropic's buckets), whatever the configured time zone",
        highlight=False,
    )
    if grain == "api_key":
        err.print(
            "billed dollars per key are the usage report's tokens at clauditor's rate "
            "cards: the cost report has no dollars per API key",
            highlight=False,
        )
    firsts = result.drift.unique(
        ["model", "token_type", "service_tier", "context_window", "inference_geo"],
        keep="first",
        maintain_order=True,
    )
    for model, token_type, billed, card, first in firsts.select(
        "model", "token_type", "billed_per_mtok", "card_per_mtok", "first_day"
    ).iter_rows():
        err.print(
            f"price drift: {model} {token_type} billed at ${billed:,.4f}/MTok, clauditor's card "
            f"says ${card:,.4f}/MTok, from {first}",
            highlight=False,
            markup=False,
        )
    days = result.days
    if result.missing_days:
        err.print(
            f"no bill stored for {len(result.missing_days)} day(s) of the period "
            f"({result.missing_days[0]}..{result.missing_days[-1]}): `--fetch` gets them",
            highlight=False,
        )
    partial = days.filter("partial")["day"].to_list()
    if partial:
        err.print(
            f"partial days (fetched before they ended): {', '.join(map(str, partial))}",
            highlight=False,
        )
    if days.height:
        oldest = days["usage_fetched_at"].min()
        err.print(
            f"bill stored for {days.height} day(s), oldest fetch {oldest:%Y-%m-%d %H:%M} UTC",
            highlight=False,
        )


@app.command()
@handles_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.")] = Path(
        "clauditor-demo"
    ),
    sample: Annotated[
        Path | None,
        typer.Option(help="Telemetry to ingest. Default: the committed sample_logs/ sample."),
    ] = None,
) -> None:
    """Ingest the committed sample into a fresh database, print costs and write the report."""
    from clauditor.demo import run_demo

    run_demo(out_dir, sample, console=out)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["Format", "app", "emit", "main", "parse_as_of", "split_keys"]
