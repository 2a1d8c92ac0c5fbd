"""The ``clauditor`` command line: thin commands over the library (DESIGN §5).

Each command parses its options, calls one library function and prints the result. Library
errors (:class:`clauditor.errors.ClauditorError`) become a one-line ``error: ...`` on stderr and
exit code 2 here, at the boundary, and nowhere else. Shared options are defined once below.
Heavy modules are imported inside the commands so that ``clauditor --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
import zoneinfo
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from clauditor.errors import ClauditorError, ConfigError

if TYPE_CHECKING:
    import polars as pl

    from clauditor.config import Config

app = typer.Typer(
    name="clauditor",
    help="See, explain and control what your Claude API usage costs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
prices_app = typer.Typer(help="Show the price table, or import a newer one.", no_args_is_help=False)
app.add_typer(prices_app, name="prices")

# Piped output keeps whole rows on one line instead of squeezing tables into 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, soft_wrap=True)


class Format(StrEnum):
    """How commands that print data print it."""

    table = "table"
    csv = "csv"
    json = "json"


# --- shared options (defined once) ------------------------------------------------------------

DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB file. Default: $CLAUDITOR_DB, else ./clauditor.duckdb.",
        show_default=False,
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file. Default: $CLAUDITOR_CONFIG, ./clauditor.toml, ./pyproject.toml.",
        show_default=False,
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Evaluate as of this moment (ISO 8601; without an offset it is in the config's "
        "time zone). Default: now.",
        show_default=False,
    ),
]
PeriodOpt = Annotated[
    str,
    typer.Option(
        "--period",
        "-p",
        help="today, yesterday, 7d, 30d, Nd, mtd, YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn library errors into ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ClauditorError, ValueError) as exc:  # ValueError: bad option values
            _print_error(exc)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _print_error(exc: Exception) -> None:
    """One line on stderr; the message is text, never markup (it may quote user input)."""
    from rich.text import Text

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    err.print(Text("error: ", style="bold red") + Text(first), highlight=False)


def split_keys(by: str) -> list[str]:
    """``--by feature, model`` as ``["feature", "model"]``."""
    return [k.strip() for k in by.split(",") if k.strip()]


def _db(db: Path | None) -> Path:
    from clauditor.store import default_db_path

    return db or default_db_path()


def _config(path: Path | None) -> Config:
    from clauditor.config import load_config

    return load_config(path)


def parse_as_of(value: str | None, tz: str = "UTC", *, option: str = "--as-of") -> dt.datetime:
    """``--as-of`` as an aware UTC datetime; naive values are read in ``tz``; None is now."""
    if value is None or value.strip().lower() == "now":
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {value!r} is not an ISO 8601 moment (e.g. 2026-10-24T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return moment.astimezone(dt.UTC)


def emit(frame: pl.DataFrame, fmt: Format, *, title: str | None = None) -> None:
    """Print a frame as a rich table, CSV or a JSON array of objects."""
    import polars as pl

    # Whole-number decimals (DuckDB's sum of BIGINT) print as numbers, not strings.
    frame = frame.with_columns(
        pl.col(c).cast(pl.Int64 if t.scale == 0 else pl.Float64)  # type: ignore[attr-defined]
        for c, t in frame.schema.items()
        if isinstance(t, pl.Decimal)
    )
    if fmt is Format.csv:
        nested = [c for c, t in frame.schema.items() if t.is_nested()]
        flat = frame.with_columns(
            pl.col(c).map_elements(
                lambda v: json.dumps(v.to_list() if hasattr(v, "to_list") else v, default=str),
                return_dtype=pl.String,
            )
            for c in nested
        )
        sys.stdout.write(flat.write_csv())
        return
    if fmt is Format.json:
        rows = frame.with_columns(
            pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f%:z")
            for c, t in frame.schema.items()
            if isinstance(t, pl.Datetime)
        ).to_dicts()
        sys.stdout.write(json.dumps(rows, default=str, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for name, dtype in frame.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    for row in frame.iter_rows():
        table.add_row(*(_cell(v, n) for v, n in zip(row, frame.columns, strict=True)))
    out.print(table)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if column in ("share", "fraction", "change") or column.endswith(
            ("_ratio", "_rate", "_share")
        ):
            return f"{value:.1%}"
        if "usd" in column or column.startswith("cost"):
            return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


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
    summary = _ingest_with_progress(paths, _db(db), _config(config))
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
        f"{summary.spans_read:,} spans read, {summary.calls_written:,} calls written, "
        f"{summary.duplicates:,} duplicates skipped, {summary.rejected:,} rejected"
        + (f", {summary.unpriced:,} unpriced" if summary.unpriced else ""),
        highlight=False,
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
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Spend by feature (or any combination of keys) in a period, with the change against the
    period before. Untagged spend and unpriced calls are rows of their own, never hidden."""
    from clauditor.analytics import load_calls_in, resolve_period
    from clauditor.analytics.trends import cost_by_bucket, cost_change

    cfg = _config(config)
    span = resolve_period(period, as_of=parse_as_of(as_of, cfg.timezone), tz=cfg.timezone)
    keys = split_keys(by)
    calls = load_calls_in(_db(db), span)
    if every:
        table = cost_by_bucket(calls, keys, every=every, tz=cfg.timezone)
        title = f"Spend by {every} and {', '.join(keys) or 'total'} — {span.label}"
    else:
        previous = load_calls_in(_db(db), span.previous())
        table = cost_change(calls, previous, keys)
        title = (
            f"Spend by {', '.join(keys) or 'total'} — {span.label} (change vs the period before)"
        )
    emit(table, fmt, title=title)
    if fmt is Format.table and calls.height == 0:
        err.print(f"no calls between {span.start} and {span.end} (UTC); try --period or --as-of")


def _window(
    db: Path | None, config: Path | None, period: str, as_of: str | None, *, history: dt.timedelta
) -> tuple[Config, Any, pl.DataFrame]:
    """Config, the resolved period, and its calls plus ``history`` before it (for baselines)."""
    from clauditor.analytics import load_calls_in, resolve_period
    from clauditor.analytics.periods import Period

    cfg = _config(config)
    span = resolve_period(period, as_of=parse_as_of(as_of, cfg.timezone), tz=cfg.timezone)
    widened = Period(span.start - history, span.end, span.label, span.tz)
    return cfg, span, load_calls_in(_db(db), widened)


def _in_period(frame: pl.DataFrame, span: Any, column: str) -> pl.DataFrame:
    import polars as pl

    if frame.height == 0 or column not in frame.columns:
        return frame
    return frame.filter(
        (pl.col(column) >= span.start) & (pl.col(column) < span.end)
        if frame.schema[column] != pl.Date
        else pl.col(column) >= span.start.date()
    )


@app.command()
@handles_errors
def cache(
    by: Annotated[str, typer.Option("--by", help="Comma-separated group keys.")] = "feature,model",
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Cache economics: hit ratio, dollars saved, wasted writes, 1h-vs-5m TTL, candidates."""
    from clauditor.analytics.cache import cache_economics, cache_regressions, caching_candidates

    _, span, calls = _window(db, config, period, as_of, history=dt.timedelta(0))
    keys = split_keys(by)
    emit(cache_economics(calls, by=keys), fmt, title=f"Cache economics — {span.label}")
    if fmt is Format.table:
        emit(caching_candidates(calls), fmt, title="Caching candidates (large uncached input)")
        emit(cache_regressions(calls), fmt, title="Cache hit-ratio regressions")


@app.command()
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
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Sustained error episodes per class (429, 529, 5xx, 4xx, timeouts); retry amplification."""
    from clauditor.analytics.errors import error_episodes, retry_amplification

    _, span, calls = _window(db, config, period, as_of, history=dt.timedelta(0))
    episodes = error_episodes(
        calls, window=window, threshold=threshold, min_duration=min_duration, min_calls=min_calls
    )
    emit(episodes, fmt, title=f"Error episodes (> {threshold:.1%} over {window}) — {span.label}")
    if fmt is Format.table:
        emit(retry_amplification(calls), fmt, title="Retry amplification (attempts per call)")


@app.command()
@handles_errors
def latency(
    by: Annotated[str, typer.Option("--by", help="Comma-separated group keys.")] = "feature,model",
    every: Annotated[
        str, typer.Option(help="Bucket (1h, 1d, 1w) or 'none' for the whole period.")
    ] = "1d",
    period: PeriodOpt = "7d",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """p50/p95/p99 of call duration and time to first token."""
    from clauditor.analytics.latency import latency_percentiles

    cfg, span, calls = _window(db, config, period, as_of, history=dt.timedelta(0))
    keys = split_keys(by)
    table = latency_percentiles(
        calls, by=keys, every=None if every.lower() == "none" else every, tz=cfg.timezone
    )
    emit(table, fmt, title=f"Latency — {span.label}")


@app.command()
@handles_errors
def budget(
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Month-to-date spend against the budget, forecast to month end, thresholds crossed."""
    from clauditor.analytics.budget import budget_status

    cfg, _, calls = _window(db, config, "mtd", as_of, history=dt.timedelta(days=35))
    moment = parse_as_of(as_of, cfg.timezone)
    table = budget_status(
        calls,
        monthly_usd=cfg.budget.monthly_usd,
        feature_budgets=cfg.budget.features,
        thresholds=cfg.budget.thresholds,
        as_of=moment,
        tz=cfg.timezone,
    )
    emit(table, fmt, title=f"Budget as of {moment:%Y-%m-%d %H:%M} UTC")
    if fmt is Format.table and cfg.budget.monthly_usd is None:
        err.print("no [budget] monthly_usd in the config: showing spend and forecast only")


@app.command()
@handles_errors
def spikes(
    by: Annotated[str, typer.Option("--by", help="Group key.")] = "feature",
    period: PeriodOpt = "7d",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Hourly spend spikes against a robust trailing baseline (runaway loops, model changes)."""
    from clauditor.analytics.spikes import spike_episodes

    _, span, calls = _window(db, config, period, as_of, history=dt.timedelta(days=7))
    episodes = _in_period(spike_episodes(calls, by=by), span, "start")
    emit(episodes, fmt, title=f"Spend spikes by {by} — {span.label}")


@app.command()
@handles_errors
def failures(
    by: Annotated[str, typer.Option("--by", help="Comma-separated group keys.")] = "feature",
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Cost of failure: dollars on errored calls, on retries and on outputs cut at max_tokens."""
    from clauditor.analytics.failure import cost_of_failure

    _, span, calls = _window(db, config, period, as_of, history=dt.timedelta(0))
    keys = split_keys(by)
    emit(cost_of_failure(calls, by=keys), fmt, title=f"Cost of failure — {span.label}")


@app.command()
@handles_errors
def audit(
    period: PeriodOpt = "30d",
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Score the app against the production checklist items telemetry can judge."""
    from clauditor.analytics.audit import audit as run_audit

    cfg, span, calls = _window(db, config, period, as_of, history=dt.timedelta(0))
    emit(run_audit(calls, config=cfg), fmt, title=f"Production checklist audit — {span.label}")


@app.command()
@handles_errors
def query(
    sql: Annotated[str, typer.Argument(help="One read-only SQL statement (SELECT, EXPLAIN).")],
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Run read-only ad-hoc SQL over the views: calls, daily_costs, feature_costs, errors."""
    from clauditor.sql import run_query

    emit(run_query(_db(db), sql), fmt)


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
) -> None:
    """Write the self-contained HTML cost report (opens offline, no network requests)."""
    from clauditor.dashboards import write_report

    cfg = _config(config)
    zone = tz or cfg.timezone
    summary = write_report(
        _db(db), out_file, period=period, as_of=parse_as_of(as_of, zone), config=cfg, tz=zone
    )
    out.print(f"report: {summary.out} ({summary.bytes / 1e6:.1f} MB, {summary.calls:,} calls)")
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
    from clauditor.simulate import simulate as run_simulation

    summary = run_simulation(
        out_file,
        days=days,
        seed=seed,
        end=None if end is None else parse_as_of(end, option="--end"),
        scale=scale,
    )
    out.print(
        f"wrote {summary.spans:,} spans in {summary.lines:,} lines to {summary.out} "
        f"({summary.start:%Y-%m-%d %H:%M} .. {summary.end:%Y-%m-%d %H:%M} UTC)"
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
            f"({auth}; writing {_db(db)})",
            highlight=False,
        )

    run_server(
        _db(db),
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        config=_config(config),
        ready=ready,
    )


@app.command()
@handles_errors
def reprice(db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Recompute every stored cost with the current price table and config overrides."""
    from clauditor.sql import reprice_all

    changed, unpriced = reprice_all(_db(db), _config(config))
    out.print(f"repriced: {changed:,} calls changed cost; {unpriced:,} calls have no price")


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
    """Write the calls as a Parquet dataset, one folder per UTC day (re-exported days are
    replaced). Any command's --db also takes such a folder."""
    from clauditor.dataset import export_dataset
    from clauditor.store import read_connection

    start = end = None
    if period is not None:
        from clauditor.analytics import resolve_period

        cfg = _config(config)
        span = resolve_period(period, as_of=parse_as_of(as_of, cfg.timezone), tz=cfg.timezone)
        start, end = span.start, span.end
    with read_connection(_db(db)) as con:
        summary = export_dataset(con, out_dir, start=start, end=end)
    days = summary.days
    where = f"{days[0]}..{days[-1]}, {len(days)} day(s)" if days else "no calls in range"
    out.print(f"exported {summary.rows:,} calls to {summary.path} ({where})")


alerts_app = typer.Typer(help="Budget, error-rate, spike and cache alerts to Slack or a webhook.")
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

    cfg = _config(config)
    result = check_alerts(_db(db), cfg, as_of=parse_as_of(as_of, cfg.timezone), dry_run=dry_run)
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

    cfg = _config(config)
    table = backtest(_db(db), cfg, since=since, as_of=parse_as_of(as_of, cfg.timezone), step=step)
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
        price_table_frame(_config(config).price_table()),
        fmt,
        title="Prices (USD per million tokens)",
    )


@prices_app.command("import")
@handles_errors
def prices_import(
    file: Annotated[Path, typer.Argument(help="LiteLLM's model_prices_and_context_window.json.")],
    to: Annotated[
        Path, typer.Option("--to", help="Price file to write (TOML, [[model]] entries).")
    ] = Path("clauditor-prices.toml"),
) -> None:
    """Import Anthropic prices from LiteLLM's community price list into a TOML price file.

    The file is read on top of the built-in table when it is listed in the config's
    ``price_files`` or, by default, when ``./clauditor-prices.toml`` exists.
    """
    from clauditor.pricing import import_litellm

    count = import_litellm(file, to)
    out.print(f"imported {count} Anthropic price entries into {to}")


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


__all__ = ["app", "emit", "main", "parse_as_of"]
