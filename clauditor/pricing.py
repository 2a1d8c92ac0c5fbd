"""Price Claude API calls: one vectorized Polars function over a frame of calls.

The rates are data (:mod:`clauditor.rate_cards`: ``prices.toml`` beside this module plus the
user's overrides). How the parts of a call's price combine, in this order:

1. **The card** is the newest rate card of the call's model whose ``effective_from`` is on or
   before the call's start date (UTC), so a price change never rewrites history.
2. **The prompt-size tier**: when input + cache read + cache write tokens are above a tier's
   threshold, that tier's five rates replace the card's for the WHOLE request, output included
   (the highest tier crossed wins). Exactly at the threshold is not above it.
3. **Fast mode** (``speed = fast``) replaces the five rates with the card's fast rates, whatever
   the tier; a model without fast rates keeps its standard ones.
4. **Multipliers**, on every token rate, cache rates included: the Batch API (``service_tier =
   batch`` or ``operation = batch``) x0.5; US-only inference (``inference_geo = us``) x the
   card's ``us_only_multiplier`` where it has one; a regional Bedrock/Vertex endpoint x the
   card's ``regional_multiplier`` where it has one. Regional means a Bedrock id that is not a
   ``global.`` profile (``us.``, ``eu.``, ``jp.``, ``au.``, ``apac.`` or a plain in-region
   ``anthropic.`` id), or a ``cloud_region`` other than ``global`` (Vertex's location).
5. **Server tools** are added per use at the fees in force that day (web search and web fetch
   per 1,000 requests), never discounted or multiplied. Code execution is billed per
   container-hour beyond a monthly free allowance per organization, so it is not a per-call
   dollar: :func:`code_execution_cost` prices it for a period.

Cache writes whose 5-minute/1-hour split the source did not report are priced at the table's
assumed TTL for the call's service (``[pricing] cache_ttl``, default 5m) and the row's
``cache_ttl_assumed`` names that TTL (NULL when the split was reported). ``count_tokens`` calls
are free. A call whose model has no card gets NULL costs (never a silent 0);
:func:`unpriced_calls` counts them so every report can show them.

Each row also keeps the five rates it was priced at (``rate_*``, $ per million tokens, after
tier, fast mode and multipliers), so analytics answer what-ifs (caching saved, the other TTL)
from the call's own card.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from clauditor.rate_cards import (
    ID_PATTERNS,
    MAX_TIERS,
    RATE_NAMES,
    PriceTable,
    RateCard,
    Rates,
    ServerToolFees,
    load_price_table,
    normalize_model_id,
)

__all__ = [
    "BATCH_DISCOUNT",
    "COST_PARTS",
    "PER_MTOK",
    "RATE_COLUMNS",
    "PriceTable",
    "RateCard",
    "Rates",
    "ServerToolFees",
    "code_execution_cost",
    "load_price_table",
    "model_key_expr",
    "model_key_sql",
    "normalize_model_id",
    "price_calls",
    "price_table_frame",
    "unpriced_calls",
]

BATCH_DISCOUNT = 0.5
PER_MTOK = 1e-6
# The rates a row was priced at, $ per million tokens, in rate_cards.RATE_NAMES order.
RATE_COLUMNS = tuple(f"rate_{name}" for name in RATE_NAMES)
COST_PARTS = (
    "cost_input_usd",
    "cost_output_usd",
    "cost_cache_read_usd",
    "cost_cache_write_usd",
    "cost_tools_usd",
)
_OUTPUTS = ("cost_usd", *COST_PARTS, "price_version", "cache_ttl_assumed", *RATE_COLUMNS)
# Bedrock ids: `global.` profiles are global endpoints; other profiles and in-region ids are not.
_BEDROCK_REGIONAL = r"^(?:arn:aws:bedrock:[^/]*/)?(?:(?:us|eu|jp|au|apac)\.)?anthropic\."


def model_key_expr(column: str | pl.Expr) -> pl.Expr:
    """The vectorized :func:`normalize_model_id` of a string column."""
    expr = pl.col(column) if isinstance(column, str) else column
    expr = expr.str.strip_chars().str.to_lowercase()
    for pattern in ID_PATTERNS:
        expr = expr.str.replace(pattern, "")
    return expr


def model_key_sql(expression: str) -> str:
    """The DuckDB SQL of :func:`normalize_model_id` applied to the SQL ``expression``.

    For aggregates computed inside DuckDB, so that a dated snapshot and its undated id group as
    one model there too. The regular expressions are the same ones (RE2 accepts them).
    """
    key = f"lower(trim({expression}))"
    for pattern in ID_PATTERNS:
        key = f"regexp_replace({key}, '{pattern}', '')"
    return key


def _card_frame(table: PriceTable) -> pl.DataFrame:
    """One row per (model key, card): aliases repeat their card under their own key."""
    rows = []
    for card in table.cards:
        row: dict[str, Any] = {
            "effective_from": card.effective_from,
            "price_version": card.version,
            "geo": card.us_only_multiplier,
            "regional": card.regional_multiplier,
        }
        row.update(zip([f"b_{n}" for n in RATE_NAMES], card.rates.as_tuple(), strict=True))
        fast = card.fast.as_tuple() if card.fast else (None,) * 5
        row.update(zip([f"f_{n}" for n in RATE_NAMES], fast, strict=True))
        for i in range(MAX_TIERS):
            tier = card.tiers[i] if i < len(card.tiers) else None
            row[f"t{i}_above"] = tier.above if tier else None
            values = tier.rates.as_tuple() if tier else (None,) * 5
            row.update(zip([f"t{i}_{n}" for n in RATE_NAMES], values, strict=True))
        for key in (card.id, *card.aliases):
            rows.append({"__model_key": key, **row})
    schema: dict[str, Any] = {
        "__model_key": pl.String,
        "effective_from": pl.Date,
        "price_version": pl.String,
        "geo": pl.Float64,
        "regional": pl.Float64,
    }
    for prefix in ("b", "f", *(f"t{i}" for i in range(MAX_TIERS))):
        if prefix.startswith("t"):
            schema[f"{prefix}_above"] = pl.Int64
        schema.update({f"{prefix}_{n}": pl.Float64 for n in RATE_NAMES})
    return pl.DataFrame(rows, schema=schema).sort("effective_from")


def _fee_expr(fees: tuple[ServerToolFees, ...], day: pl.Expr, name: str) -> pl.Expr:
    """The fee ``name`` in force on ``day`` (NULL before the first schedule)."""
    expr: pl.Expr = pl.lit(None, dtype=pl.Float64)
    for f in sorted(fees, key=lambda f: f.effective_from):
        expr = pl.when(day >= f.effective_from).then(pl.lit(getattr(f, name))).otherwise(expr)
    return expr


def price_calls(calls: pl.DataFrame, table: PriceTable | None = None) -> pl.DataFrame:
    """``calls`` with the cost columns, ``price_version``, the TTL mark and the rates filled in.

    ``calls`` needs the token columns, ``start_time``, ``request_model``/``response_model`` and,
    when present, ``service``, ``service_tier``, ``operation``, ``inference_geo``, ``speed``,
    ``cloud_region``, the 5m/1h split and the server-tool counts. Row order and every other
    column are kept. Rows of unknown models get NULL costs and rates.
    """
    table = table or load_price_table()
    out_columns = list(calls.columns) + [c for c in _OUTPUTS if c not in calls.columns]
    if calls.height == 0:
        return calls.with_columns(
            *[pl.lit(None, dtype=pl.Float64).alias(c) for c in _OUTPUTS if c.startswith(("c", "r"))
              and c != "cache_ttl_assumed"],
            pl.lit(None, dtype=pl.String).alias("price_version"),
            pl.lit(None, dtype=pl.String).alias("cache_ttl_assumed"),
        ).select(out_columns)  # fmt: skip

    def col(name: str, dtype: Any) -> pl.Expr:
        if name in calls.columns:
            return pl.col(name).cast(dtype, strict=False)
        return pl.lit(None, dtype=dtype)

    def tokens(name: str) -> pl.Expr:
        return col(name, pl.Int64).fill_null(0).clip(lower_bound=0).cast(pl.Float64)

    def named(name: str) -> pl.Expr:  # an empty model string counts as no model
        value = col(name, pl.String)
        return pl.when(value.str.strip_chars() == "").then(None).otherwise(value)

    model = pl.coalesce(named("response_model"), named("request_model"))
    keyed = calls.drop([c for c in _OUTPUTS if c in calls.columns]).with_columns(
        model.alias("__model"),
        col("start_time", pl.Datetime("us", "UTC")).dt.date().alias("__day"),
    )
    # The id spellings and the card in force are worked out once per distinct (model, day), a
    # few hundred pairs, then joined onto the calls (in their order).
    pairs = (
        keyed.select("__model", "__day")
        .unique()
        .with_columns(
            model_key_expr("__model").alias("__model_key"),
            pl.col("__model")
            .str.strip_chars()
            .str.to_lowercase()
            .str.contains(_BEDROCK_REGIONAL)
            .alias("__br"),
        )
        .sort("__day", nulls_last=True)
        .join_asof(
            _card_frame(table),
            left_on="__day",
            right_on="effective_from",
            by="__model_key",
            strategy="backward",
            check_sortedness=False,
        )
    )
    joined = keyed.join(
        pairs, on=["__model", "__day"], how="left", nulls_equal=True, maintain_order="left"
    )

    read = tokens("cache_read_input_tokens")
    write = tokens("cache_creation_input_tokens")
    known_5m, known_1h = (
        col("cache_creation_5m_input_tokens", pl.Int64),
        col("cache_creation_1h_input_tokens", pl.Int64),
    )
    split_known = known_5m.is_not_null() | known_1h.is_not_null()
    ttl = (
        col("service", pl.String)
        .replace_strict(dict(table.cache_ttl_by_service), default=table.cache_ttl,
                        return_dtype=pl.String)
        .fill_null(table.cache_ttl)
    )  # fmt: skip
    assumed_1h = ttl == "1h"
    write_1h = (
        pl.when(known_1h.is_not_null())
        .then(known_1h.cast(pl.Float64).clip(0))
        .when(known_5m.is_not_null())
        .then(write - known_5m.cast(pl.Float64).clip(0))
        .when(assumed_1h)
        .then(write)
        .otherwise(0.0)
        .clip(0)
    )
    write_1h = pl.min_horizontal(write_1h, write)
    write_5m = write - write_1h

    prompt = tokens("input_tokens") + read + write
    fast = (col("speed", pl.String).str.to_lowercase() == "fast").fill_null(False) & pl.col(
        "f_input"
    ).is_not_null()
    batch = (col("service_tier", pl.String).str.to_lowercase() == "batch").fill_null(False) | (
        col("operation", pl.String) == "batch"
    ).fill_null(False)
    us_only = (
        col("inference_geo", pl.String).str.to_lowercase().is_in(["us", "us-only", "us_only"])
    ).fill_null(False)
    region = col("cloud_region", pl.String).str.to_lowercase()
    regional = pl.col("__br").fill_null(False) | (region.is_not_null() & (region != "global"))
    multiplier = (
        pl.when(batch).then(BATCH_DISCOUNT).otherwise(1.0)
        * pl.when(us_only).then(pl.col("geo").fill_null(1.0)).otherwise(1.0)
        * pl.when(regional.fill_null(False)).then(pl.col("regional").fill_null(1.0)).otherwise(1.0)
    )

    free = (col("operation", pl.String) == "count_tokens").fill_null(False)

    def rate(name: str) -> pl.Expr:
        # Built from the lowest precedence up: base, then each tier, then fast mode on top.
        chosen: pl.Expr = pl.col(f"b_{name}")
        for i in range(MAX_TIERS):
            above = pl.col(f"t{i}_above")
            crossed = above.is_not_null() & (prompt > above)
            chosen = pl.when(crossed).then(pl.col(f"t{i}_{name}")).otherwise(chosen)
        chosen = pl.when(fast).then(pl.col(f"f_{name}")).otherwise(chosen)
        rated = chosen * multiplier
        # A free call (count_tokens) is priced at zero per token, whatever its model.
        return pl.when(free).then(0.0).otherwise(rated).alias(f"rate_{name}")

    fees = table.tool_fees
    day = pl.col("__day")
    tools = (
        tokens("web_search_requests") * _fee_expr(fees, day, "web_search_per_1k") / 1000
        + tokens("web_fetch_requests") * _fee_expr(fees, day, "web_fetch_per_1k") / 1000
    )

    def cost(amount: pl.Expr, rate_column: str) -> pl.Expr:
        return amount * pl.col(rate_column) * PER_MTOK

    priced = (
        joined.lazy()
        .with_columns(*(rate(n) for n in RATE_NAMES))
        .with_columns(
            cost(tokens("input_tokens"), "rate_input").alias("cost_input_usd"),
            cost(tokens("output_tokens"), "rate_output").alias("cost_output_usd"),
            cost(read, "rate_cache_read").alias("cost_cache_read_usd"),
            pl.when(free)
            .then(0.0)
            .otherwise(
                (
                    write_5m * pl.col("rate_cache_write_5m")
                    + write_1h * pl.col("rate_cache_write_1h")
                )
                * PER_MTOK
            )
            .alias("cost_cache_write_usd"),
            pl.when(free).then(0.0).otherwise(tools.fill_null(0.0)).alias("cost_tools_usd"),
            pl.when((write > 0) & ~split_known).then(ttl).alias("cache_ttl_assumed"),
        )
        .with_columns(
            (
                pl.col("cost_input_usd")
                + pl.col("cost_output_usd")
                + pl.col("cost_cache_read_usd")
                + pl.col("cost_cache_write_usd")
                + pl.col("cost_tools_usd")
            ).alias("cost_usd")
        )
        .collect()
    )
    # Unpriced rows: the rates are NULL there, so every token cost and the total are NULL too.
    return priced.select(out_columns)


def code_execution_cost(
    container_hours: float, months: float, table: PriceTable, on: dt.date
) -> float:
    """Dollars for ``container_hours`` of code execution over ``months`` calendar months.

    The free allowance is per organization and month (``months`` may be a fraction for a part
    of a month); the hourly fee in force on ``on`` applies to the hours beyond it. An estimate
    from what clauditor saw: other services of the organization share the allowance.
    """
    fees = table.fees_on(on)
    if fees is None:
        return 0.0
    billable = max(0.0, container_hours - months * fees.code_execution_free_hours_per_month)
    return billable * fees.code_execution_per_hour


def unpriced_calls(calls: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Calls with no price, per model: ``model``, ``calls``. Empty when everything is priced."""
    lf = calls.lazy()
    return (
        lf.filter(pl.col("cost_usd").is_null())
        .with_columns(
            pl.coalesce("response_model", "request_model").fill_null("(no model)").alias("model")
        )
        .group_by("model")
        .agg(pl.len().alias("calls"))
        .sort(["calls", "model"], descending=[True, False])
        .collect()
    )


def _tier_text(card: RateCard) -> str:
    return "; ".join(
        f">{t.above:,}: " + " / ".join(f"{v:g}" for v in t.rates.as_tuple()) for t in card.tiers
    )


def price_table_frame(table: PriceTable) -> pl.DataFrame:
    """The table for people: one row per card, rates in $/MTok, with each card's source."""
    rows = [
        {
            "model": c.id,
            "aliases": ", ".join(c.aliases),
            "effective_from": c.effective_from,
            **dict(zip(RATE_NAMES, c.rates.as_tuple(), strict=True)),
            "tiers (in / out / read / 5m / 1h)": _tier_text(c),
            "fast": " / ".join(f"{v:g}" for v in c.fast.as_tuple()) if c.fast else "",
            "us_only": f"x{c.us_only_multiplier:g}" if c.us_only_multiplier else "",
            "regional": f"x{c.regional_multiplier:g}" if c.regional_multiplier else "",
            "deprecated_on": c.deprecated_on,
            "origin": c.origin,
            "source": c.source,
        }
        for c in table.cards
    ]
    return pl.DataFrame(rows).sort(["model", "effective_from"])
