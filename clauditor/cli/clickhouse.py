"""``clickhouse init`` / ``clickhouse reprice``: ClickHouse as the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from clauditor.cli._common import (
    ConfigOpt,
    handles_errors,
    resolve_config,
)
from clauditor.output import count, out

if TYPE_CHECKING:
    pass


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


@handles_errors
def clickhouse_reprice(
    db: ClickHouseUrlOpt, cluster: ClusterOpt = None, config: ConfigOpt = None
) -> None:
    """Price every call stored in ClickHouse again at the current rate cards."""
    from clauditor.clickhouse import connect, reprice

    with connect(db) as client:
        n = reprice(client, resolve_config(config).price_table(), cluster=cluster)
    out.print(f"clickhouse: repriced {count(n, 'call')}", markup=False)


__all__ = ["ClickHouseUrlOpt", "ClusterOpt", "clickhouse_init", "clickhouse_reprice"]
