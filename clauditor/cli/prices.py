"""Rate cards: ``prices`` (the table), ``prices check`` / ``prices update`` (the upstream
price data) and ``reprice`` (the stored calls again at the current cards)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from clauditor.cli._common import (
    ConfigOpt,
    DbOpt,
    FormatOpt,
    handles_errors,
    resolve_config,
    resolve_db,
)
from clauditor.output import Format, count, emit, out

if TYPE_CHECKING:
    pass


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


__all__ = ["prices", "prices_check", "prices_update", "reprice"]
