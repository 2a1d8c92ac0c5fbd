"""Sample data: ``demo`` (the committed sample end to end) and ``simulate`` (new traffic)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clauditor.cli._common import (
    handles_errors,
    parse_as_of,
)
from clauditor.output import out

if TYPE_CHECKING:
    pass


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


__all__ = ["demo", "simulate"]
