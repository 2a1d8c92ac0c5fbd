"""``reconcile``: what clauditor metered against what Anthropic billed."""

from __future__ import annotations

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
from clauditor.output import Format, emit, err

if TYPE_CHECKING:
    pass


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
    from clauditor.analytics.reconcile import reconcile_grain, reconcile_stored, utc_days
    from clauditor.ingest.bill import fetch_bill

    grain = reconcile_grain(by)
    cfg = resolve_config(config)
    path = resolve_db(db)
    now = parse_as_of(as_of, "UTC")
    first, last = utc_days(period, now)
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


__all__ = ["reconcile"]
