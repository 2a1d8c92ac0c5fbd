"""``clauditor demo``: the whole pipeline on the committed sample.

It ingests ``sample_logs/sample-30d.jsonl.gz`` into a fresh ``DIR/clauditor.duckdb`` with the
sample's own config (``sample_logs/clauditor.toml``: its budget), prints the cost table, runs the
analytics and alert rules that exist, and writes ``DIR/report.html``. Time-relative views are
evaluated as of the end of the sample's last day, so the demo shows the same thing whenever it
runs.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from clauditor.config import Config, load_config
from clauditor.errors import IngestError
from clauditor.store import read_connection, spool_dir

if TYPE_CHECKING:
    from clauditor.analytics.periods import Period

__all__ = ["SAMPLE_NAME", "find_sample", "run_demo"]

SAMPLE_NAME = "sample-30d.jsonl.gz"


def find_sample() -> Path:
    """The committed sample: ``$CLAUDITOR_SAMPLE``, else the installed package's, else the
    checkout's, else ./sample_logs/.

    The wheel ships the sample and its ``clauditor.toml`` as package data
    (``clauditor/sample_logs/``, mapped from the repository's ``sample_logs/``), so an installed
    clauditor finds them from any folder.
    """
    candidates = []
    if os.environ.get("CLAUDITOR_SAMPLE"):
        candidates.append(Path(os.environ["CLAUDITOR_SAMPLE"]))
    candidates.append(Path(__file__).resolve().parent / "sample_logs" / SAMPLE_NAME)
    # An editable install or a checkout: sample_logs/ sits beside the clauditor/ package folder.
    candidates.append(Path(__file__).resolve().parent.parent / "sample_logs" / SAMPLE_NAME)
    candidates.append(Path.cwd() / "sample_logs" / SAMPLE_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise IngestError(
        "cannot find the committed sample (sample_logs/sample-30d.jsonl.gz, installed with the "
        "package): reinstall clauditor, or pass --sample FILE (`clauditor simulate --out FILE` "
        "makes one)"
    )


def _fresh(db: Path) -> None:
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(spool_dir(db), ignore_errors=True)


def _newest_day_end(db: Path, tz: str) -> dt.datetime:
    """Midnight after the newest call's day, in ``tz``, as UTC: the demo's --as-of."""
    import zoneinfo

    with read_connection(db) as con:
        # Through Polars: fetching TIMESTAMPTZ as Python objects would need pytz.
        newest = con.sql("SELECT max(start_time) AS newest FROM calls").pl().item()
    if newest is None:
        return dt.datetime.now(dt.UTC)
    local = newest.astimezone(zoneinfo.ZoneInfo(tz))
    next_midnight = dt.datetime.combine(
        local.date() + dt.timedelta(days=1), dt.time(), tzinfo=zoneinfo.ZoneInfo(tz)
    )
    return next_midnight.astimezone(dt.UTC)


def run_demo(out_dir: Path, sample: Path | None = None, *, console: Console | None = None) -> Path:
    """Run the demo into ``out_dir``; returns the report's path."""
    from clauditor.analytics import resolve_period
    from clauditor.dashboards import write_report
    from clauditor.ingest import ingest_paths

    console = console or Console()
    started = time.perf_counter()
    sample = sample or find_sample()
    config_file = sample.parent / "clauditor.toml"
    config = load_config(config_file) if config_file.is_file() else Config()
    out_dir.mkdir(parents=True, exist_ok=True)
    db = out_dir / "clauditor.duckdb"
    _fresh(db)

    console.print(f"[bold]1/4[/] ingesting {escape(str(sample))} …")
    summary = ingest_paths([sample], db, config=config)
    console.print(
        f"    {summary.spans_read:,} spans read, {summary.calls_written:,} calls written, "
        f"{summary.rejected:,} rejected, {summary.unpriced:,} unpriced",
        highlight=False,
    )

    as_of = _newest_day_end(db, config.timezone)
    period = resolve_period("30d", as_of=as_of, tz=config.timezone)
    console.print(f"[bold]2/4[/] costs for {period.label} (as of {as_of:%Y-%m-%d %H:%M} UTC)")
    _print_costs(db, period, console)

    console.print("[bold]3/4[/] incidents found by the analytics jobs and the alert rules")
    _print_incidents(db, period, config, as_of, console)

    console.print("[bold]4/4[/] writing the report …")
    report = write_report(db, out_dir / "report.html", period="30d", as_of=as_of, config=config)
    elapsed = time.perf_counter() - started
    console.print(
        f"\ndatabase: {db}\nreport:   {report.out}\n(done in {elapsed:.1f}s)", markup=False
    )
    files = f"--db {shlex.quote(str(db))}" + (
        f" --config {shlex.quote(str(config_file))}" if config_file.is_file() else ""
    )
    console.print(
        f"try:      clauditor costs {files} --by feature,model --as-of {as_of:%Y-%m-%dT%H:%M:%SZ}",
        highlight=False,
        markup=False,
    )
    return report.out


def _print_costs(db: Path, period: Period, console: Console) -> None:
    """Spend by feature and by model over ``period``, from the engine's rollup."""
    from clauditor.analytics.costs import cost_breakdown_from_hours
    from clauditor.analytics.engine import open_engine
    from clauditor.output import Format, emit

    with open_engine(db) as engine:
        hours = engine.rollup(period, as_of=period.end)
    emit(cost_breakdown_from_hours(hours, ["feature"]), Format.table, title="Spend by feature")
    emit(cost_breakdown_from_hours(hours, ["model"]), Format.table, title="Spend by model")


def _print_incidents(
    db: Path, period: Period, config: Config, as_of: dt.datetime, console: Console
) -> None:
    """The sample's incidents as the jobs see them (through the runner, over ``period``), and
    the alerts a cron run would have sent."""
    from clauditor.alerts import backtest, check_alerts, render_text
    from clauditor.analytics.runner import run_jobs
    from clauditor.output import Format, emit

    jobs = ["error_episodes", "spike_episodes", "cache_regressions", "budget_status"]
    found = run_jobs(db, period, config=config, as_of=as_of, jobs=jobs)
    emit(found["error_episodes"], Format.table, title="Error episodes (clauditor errors)")
    emit(found["spike_episodes"], Format.table, title="Spend spikes (clauditor spikes)")
    emit(found["cache_regressions"], Format.table, title="Cache regressions (clauditor cache)")
    emit(found["budget_status"], Format.table, title="Budget (clauditor budget)")
    emit(
        backtest(db, config, since="30d", as_of=as_of),
        Format.table,
        title="Alerts that would have fired over the month (clauditor alerts backtest)",
    )
    firing = check_alerts(db, config, as_of=as_of, dry_run=True)
    console.print(
        f"Slack messages `clauditor alerts check` would send now ({len(firing.printed)}, dry run):"
    )
    for message in firing.printed:
        console.print(render_text(message), highlight=False, markup=False)
        console.print()
