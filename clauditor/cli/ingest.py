"""Getting telemetry in: ``ingest`` (files) and ``serve`` (the OTLP receiver)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clauditor.cli._common import (
    ConfigOpt,
    DbOpt,
    handles_errors,
    resolve_config,
    resolve_db,
)
from clauditor.output import count, err

if TYPE_CHECKING:
    from clauditor.config import Config


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


__all__ = ["ingest", "serve"]
