"""Reconcile what clauditor metered with what Anthropic billed, per UTC day.

The bill is the Admin API's usage report (tokens per day, model, API key, …) and cost report
(dollars per day, model and token type), as :mod:`clauditor.ingest.bill` stores them. Days are
UTC days, because Anthropic's buckets are, whatever the configured time zone.

Metered means the stored calls, whatever instrumentation recorded them (Claude Code's too), at
their stored ``cost_usd``, which already uses the config's negotiated prices; ``count_tokens``
calls are free and left out.

Grains (``by``):

* ``model``: one row per day and model, with the cost report's token dollars as billed; the
  day's server tools (web search, code execution) are one more row, ``(server tools)``, since
  the cost report does not give them a model.
* ``workspace``: the same per workspace, the cost report's dollars included. Metered calls are
  placed in the workspace of their service's keys (``[reconcile] api_keys``, paired with
  workspaces by the usage report); calls of a service with no named key have no workspace.
* ``api_key``: one row per day, model and service, where ``[reconcile] api_keys`` names the
  service of each API key id (a key not named there is its own row, ``service`` NULL). The
  cost report has no dollars per key, so billed dollars are the usage report's tokens priced at
  clauditor's rate cards (``billed_basis`` says so).

Verdicts: ``matches`` (every token count equal, dollars within the tolerance), ``unmetered``
(the bill has more than clauditor saw), ``over-metered`` (clauditor saw more than the bill),
``price drift`` (the same tokens, other dollars: Anthropic charged a price clauditor's card
does not have). :func:`price_drift` finds the drifted prices themselves: the unit price the
cost report's dollars ÷ the usage report's tokens imply, per model and token type, against the
card of that day (Batch halves it, the 200k-1M context window takes the card's tier, US-only
inference its multiplier; other tiers are priced as standard), with the first day it differs.

Everything here is pure (frames in, frame out) but :func:`load_metered`, which reads the calls,
and :func:`reconcile_stored`, which reads the stored bill and the calls and compares them (what
`clauditor reconcile` and the bill's alerts run).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from clauditor.analytics.periods import resolve_period
from clauditor.pricing import PriceTable, model_key_expr
from clauditor.store import read_connection

if TYPE_CHECKING:
    from clauditor.config import Config

__all__ = [
    "RECONCILE_GRAINS",
    "TOKEN_TYPES",
    "VERDICTS",
    "Reconciliation",
    "load_metered",
    "metered_frame",
    "price_drift",
    "reconcile",
    "reconcile_grain",
    "reconcile_stored",
    "utc_days",
]

RECONCILE_GRAINS = ("model", "api_key", "workspace")
VERDICTS = ("matches", "unmetered", "over-metered", "price drift")
SERVER_TOOLS = "(server tools)"
DEFAULT_WORKSPACE = "(default workspace)"  # the reports' NULL workspace_id
NO_WORKSPACE = "(service without a named key)"
# Column of the usage report / metered frame -> (the cost report's token_type, the card's rate).
TOKEN_TYPES: Mapping[str, tuple[str, str]] = {
    "uncached_input_tokens": ("uncached_input_tokens", "input"),
    "cache_read_input_tokens": ("cache_read_input_tokens", "cache_read"),
    "cache_creation_5m_input_tokens": (
        "cache_creation.ephemeral_5m_input_tokens",
        "cache_write_5m",
    ),
    "cache_creation_1h_input_tokens": (
        "cache_creation.ephemeral_1h_input_tokens",
        "cache_write_1h",
    ),
    "output_tokens": ("output_tokens", "output"),
}
TOKENS = (*TOKEN_TYPES, "web_search_requests")
_SHORT = {
    "uncached_input_tokens": "input",
    "cache_read_input_tokens": "cache_read",
    "cache_creation_5m_input_tokens": "write_5m",
    "cache_creation_1h_input_tokens": "write_1h",
    "output_tokens": "output",
    "web_search_requests": "web_searches",
}
_CONDITIONS = ("service_tier", "context_window", "inference_geo")
_LEAD = {"model": [], "api_key": ["service", "api_key_id"], "workspace": ["workspace_id"]}


# --- the metered side (I/O) ------------------------------------------------------------------


# The calls summed per UTC day and every key metered_frame's arithmetic depends on, so that it
# runs on a few thousand rows rather than on every call: the sums are linear, and grouping by
# "cost_usd IS NULL" and "TTL split reported" keeps its NULL rules exact per group.
_METERED_SQL = """
SELECT
    min(start_time) AS start_time,
    request_model,
    response_model,
    service,
    cache_ttl_assumed,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cache_creation_5m_input_tokens) AS cache_creation_5m_input_tokens,
    sum(cache_creation_1h_input_tokens) AS cache_creation_1h_input_tokens,
    sum(web_search_requests) AS web_search_requests,
    sum(cost_usd) AS cost_usd,
    sum(cost_tools_usd) AS cost_tools_usd
FROM calls
WHERE start_time >= $start AND start_time < $end
  AND coalesce(operation, '') <> 'count_tokens'
GROUP BY epoch_us(start_time) // 86400000000, request_model, response_model, service,
    cache_ttl_assumed, cost_usd IS NULL,
    cache_creation_5m_input_tokens IS NULL AND cache_creation_1h_input_tokens IS NULL
"""


def reconcile_grain(by: str) -> str:
    """``--by`` as one of :data:`RECONCILE_GRAINS` (``api-key`` and ``API_KEY`` read as
    ``api_key``); anything else is a ValueError naming the choices."""
    grain = by.strip().lower().replace("-", "_")
    if grain not in RECONCILE_GRAINS:
        raise ValueError(f"--by takes one of {', '.join(RECONCILE_GRAINS)}, not {by!r}")
    return grain


def utc_days(period: str, as_of: dt.datetime) -> tuple[dt.date, dt.date]:
    """The first and last day of ``period`` (a period spec) as of ``as_of``, in UTC whatever
    the configured time zone: Anthropic's buckets are UTC days."""
    span = resolve_period(period, as_of=as_of, tz="UTC")
    return span.start.date(), (span.end - dt.timedelta(microseconds=1)).date()


def load_metered(db: str | Path, first: dt.date, last: dt.date) -> pl.DataFrame:
    """The stored calls of UTC days ``[first, last]`` summed per day, model and service.

    Columns: ``day``, ``model`` (as recorded), ``service``, the usage report's token columns,
    ``metered_usd`` (token dollars) and ``metered_tools_usd`` (server tools). Cache writes whose
    TTL split was not reported count at the TTL pricing assumed for them. DuckDB sums the
    calls first (a month of 10M calls is a few thousand rows by then); the result is
    :func:`metered_frame` of the calls.
    """
    start = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC)
    end = dt.datetime(last.year, last.month, last.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    with read_connection(db) as con:
        sums = con.sql(_METERED_SQL, params={"start": start, "end": end}).pl()
    return metered_frame(sums.with_columns(pl.col("start_time").dt.convert_time_zone("UTC")))


def metered_frame(calls: pl.DataFrame) -> pl.DataFrame:
    """:func:`load_metered`'s sums of a frame of calls (or of sums of calls that share their
    model, service, assumed TTL, whether their cost is NULL and whether their TTL split is)."""
    n = lambda c: pl.col(c).fill_null(0)  # noqa: E731
    unsplit = (
        pl.col("cache_creation_5m_input_tokens").is_null()
        & pl.col("cache_creation_1h_input_tokens").is_null()
    )
    ttl = pl.col("cache_ttl_assumed").fill_null("5m")
    tools = n("cost_tools_usd")
    return (
        calls.with_columns(
            day=pl.col("start_time").dt.convert_time_zone("UTC").dt.date(),
            model=pl.coalesce("response_model", "request_model"),
            uncached_input_tokens=n("input_tokens"),
            cache_creation_5m_input_tokens=pl.when(unsplit & (ttl == "5m"))
            .then(n("cache_creation_input_tokens"))
            .otherwise(n("cache_creation_5m_input_tokens")),
            cache_creation_1h_input_tokens=pl.when(unsplit & (ttl == "1h"))
            .then(n("cache_creation_input_tokens"))
            .otherwise(n("cache_creation_1h_input_tokens")),
            metered_usd=pl.col("cost_usd") - tools,
            metered_tools_usd=tools,
        )
        .group_by("day", "model", "service")
        .agg(
            *(n(c).sum().cast(pl.Int64) for c in TOKENS),
            pl.col("metered_usd").sum(),
            pl.col("metered_tools_usd").sum(),
        )
    )


# --- prices ----------------------------------------------------------------------------------


def _card_rates(models: pl.DataFrame, table: PriceTable) -> pl.DataFrame:
    """Per (day, model key): the card id and the rate of each token type under each condition.

    One lookup per distinct day and model (a month of a dozen models is a few hundred).
    """
    rows = []
    for day, key in models.select("day", "model_key").unique().iter_rows():
        card = table.lookup(key, day) if key else None
        fees = table.fees_on(day)
        row: dict[str, object] = {
            "day": day,
            "model_key": key,
            "card": card.id if card else None,
            "web_search_fee": fees.web_search_per_1k / 1000 if fees else None,
            "us_multiplier": (card.us_only_multiplier if card else None) or 1.0,
        }
        for column, (_, rate) in TOKEN_TYPES.items():
            base = getattr(card.rates, rate) if card else None
            tier = getattr(card.tiers[0].rates, rate) if card and card.tiers else base
            row[f"rate_{column}"] = base
            row[f"tier_rate_{column}"] = tier
        rows.append(row)
    schema = {
        "day": pl.Date,
        "model_key": pl.String,
        "card": pl.String,
        "web_search_fee": pl.Float64,
        "us_multiplier": pl.Float64,
        **{f"{p}rate_{c}": pl.Float64 for c in TOKEN_TYPES for p in ("", "tier_")},
    }
    return pl.DataFrame(rows, schema=schema)


def _rate_expr(column: str) -> pl.Expr:
    """The card's $/MTok for ``column`` under the row's service tier, window and geo."""
    rate = (
        pl.when(pl.col("context_window") == "200k-1M")
        .then(pl.col(f"tier_rate_{column}"))
        .otherwise(pl.col(f"rate_{column}"))
    )
    batch = pl.when(pl.col("service_tier") == "batch").then(0.5).otherwise(1.0)
    geo = pl.when(pl.col("inference_geo") == "us").then(pl.col("us_multiplier")).otherwise(1.0)
    return rate * batch * geo


def _with_model_key(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(model_key=model_key_expr(pl.col("model").fill_null("")))


def _with_cards(frame: pl.DataFrame, table: PriceTable) -> pl.DataFrame:
    """``frame`` (day, model) with the card's id as ``model`` (the key where none) and rates."""
    keyed = _with_model_key(frame)
    cards = _card_rates(keyed, table)
    return keyed.join(cards, on=["day", "model_key"], how="left").with_columns(
        model=pl.coalesce("card", pl.when(pl.col("model_key") != "").then("model_key"))
    )


def price_drift(
    usage: pl.DataFrame, costs: pl.DataFrame, table: PriceTable, *, tolerance: float = 0.005
) -> pl.DataFrame:
    """Every price Anthropic billed that clauditor's card for the day does not have.

    One row per day, model, token type and condition (service tier, context window, inference
    geo) where the billed unit price (cost ÷ usage, $/MTok; $ per search for web search) differs
    from the card's by more than ``tolerance``; ``first_day`` is the first day that model, token
    type and condition differ in the frames given. Models without a card are left out (their
    calls are unpriced, which the cost commands report).
    """
    tokens = _with_cards(usage, table).with_columns(
        _rate_expr(c).alias(f"expected_{c}") for c in TOKEN_TYPES
    )
    long_usage = pl.concat(
        [
            tokens.group_by("day", "model", *_CONDITIONS).agg(
                pl.lit(TOKEN_TYPES[c][0]).alias("token_type"),
                pl.col(c).sum().alias("tokens"),
                pl.col(f"expected_{c}").first().alias("card_per_mtok"),
            )
            for c in TOKEN_TYPES
        ]
    )
    token_costs = (
        _with_cards(costs.filter(pl.col("cost_type") == "tokens"), table)
        .group_by("day", "model", "token_type", *_CONDITIONS)
        .agg(pl.col("amount_usd").sum().alias("billed_usd"))
    )
    per_type = long_usage.join(
        token_costs, on=["day", "model", "token_type", *_CONDITIONS], how="inner", nulls_equal=True
    ).filter((pl.col("tokens") > 0) & pl.col("card_per_mtok").is_not_null())
    per_type = per_type.with_columns(
        billed_per_mtok=pl.col("billed_usd") / pl.col("tokens") * 1e6
    ).drop("tokens", "billed_usd")

    searches = (
        _with_cards(usage, table)
        .group_by("day")
        .agg(pl.col("web_search_requests").sum(), pl.col("web_search_fee").max())
        .join(
            costs.filter(pl.col("cost_type") == "web_search")
            .group_by("day")
            .agg(pl.col("amount_usd").sum().alias("billed_usd")),
            on="day",
        )
        .filter((pl.col("web_search_requests") > 0) & pl.col("web_search_fee").is_not_null())
        .select(
            "day",
            model=pl.lit(SERVER_TOOLS),
            **{c: pl.lit(None, pl.String) for c in _CONDITIONS},
            token_type=pl.lit("web_search_requests"),
            card_per_mtok=pl.col("web_search_fee") * 1e6,
            billed_per_mtok=pl.col("billed_usd") / pl.col("web_search_requests") * 1e6,
        )
    )
    found = pl.concat([per_type, searches], how="diagonal_relaxed").filter(
        (pl.col("billed_per_mtok") - pl.col("card_per_mtok")).abs()
        > tolerance * pl.col("card_per_mtok")
    )
    keys = ["model", "token_type", *_CONDITIONS]
    return (
        found.with_columns(
            first_day=pl.col("day").min().over(keys, order_by=None),
        )
        .select("day", *keys, "billed_per_mtok", "card_per_mtok", "first_day")
        .sort("day", "model", "token_type")
    )


# --- the comparison --------------------------------------------------------------------------


def _billed_by_model(
    usage: pl.DataFrame, costs: pl.DataFrame, table: PriceTable, extra: tuple[str, ...] = ()
) -> pl.DataFrame:
    """The reports per day and model (and ``extra`` columns both carry), server tools apart."""
    tokens = (
        _with_cards(usage, table)
        .group_by("day", "model", *extra)
        .agg(*(pl.col(c).sum() for c in TOKEN_TYPES))
        .with_columns(web_search_requests=pl.lit(None, pl.Int64))
    )
    dollars = (
        _with_cards(costs.filter(pl.col("cost_type") == "tokens"), table)
        .group_by("day", "model", *extra)
        .agg(pl.col("amount_usd").sum().alias("billed_usd"))
    )
    models = tokens.join(dollars, on=["day", "model", *extra], how="full", coalesce=True)
    tools = (
        usage.group_by("day", *extra)
        .agg(pl.col("web_search_requests").sum())
        .join(
            costs.filter(pl.col("cost_type") != "tokens")
            .group_by("day", *extra)
            .agg(pl.col("amount_usd").sum().alias("billed_usd")),
            on=["day", *extra],
            how="full",
            coalesce=True,
            nulls_equal=True,
        )
        .with_columns(model=pl.lit(SERVER_TOOLS))
    )
    return pl.concat([models, tools], how="diagonal_relaxed").with_columns(
        billed_basis=pl.lit("cost report")
    )


def _metered_by_model(
    metered: pl.DataFrame, table: PriceTable, extra: tuple[str, ...] = ()
) -> pl.DataFrame:
    models = (
        _with_cards(metered, table)
        .group_by("day", "model", *extra)
        .agg(*(pl.col(c).sum() for c in TOKEN_TYPES), pl.col("metered_usd").sum())
    )
    tools = (
        metered.group_by("day", *extra)
        .agg(pl.col("web_search_requests").sum(), pl.col("metered_tools_usd").sum())
        .select("day", *extra, "web_search_requests", metered_usd="metered_tools_usd")
        .with_columns(model=pl.lit(SERVER_TOOLS))
    )
    return pl.concat([models, tools], how="diagonal_relaxed")


def _service_workspaces(usage: pl.DataFrame, api_keys: Mapping[str, str]) -> pl.DataFrame:
    """service -> the workspace its keys belong to (as the usage report pairs them), or
    ``(several workspaces)`` when its keys are in more than one."""
    pairs = (
        usage.select("api_key_id", "workspace_id")
        .unique()
        .with_columns(
            service=pl.col("api_key_id").replace_strict(
                dict(api_keys), default=None, return_dtype=pl.String
            )
        )
        .drop_nulls("service")
    )
    return pairs.group_by("service").agg(
        workspace_id=pl.when(pl.col("workspace_id").n_unique() == 1)
        .then(pl.col("workspace_id").first())
        .otherwise(pl.lit("(several workspaces)"))
    )


def _billed_by_key(
    usage: pl.DataFrame, table: PriceTable, api_keys: Mapping[str, str]
) -> pl.DataFrame:
    priced = _with_cards(usage, table).with_columns(
        service=pl.col("api_key_id").replace_strict(
            dict(api_keys), default=None, return_dtype=pl.String
        )
    )
    dollars = pl.sum_horizontal(
        *(pl.col(c) * _rate_expr(c) * 1e-6 for c in TOKEN_TYPES),
        pl.col("web_search_requests") * pl.col("web_search_fee").fill_null(0.0),
    )
    return (
        priced.with_columns(
            row_usd=dollars,
            who=pl.coalesce("service", pl.lit("key ") + pl.col("api_key_id").fill_null("?")),
        )
        .group_by("day", "model", "who")
        .agg(
            pl.col("service").first(),
            pl.col("api_key_id").drop_nulls().unique().sort().str.join(", "),
            *(pl.col(c).sum() for c in TOKENS),
            pl.col("row_usd").sum().alias("billed_usd"),
        )
        .with_columns(billed_basis=pl.lit("usage report x rate cards"))
    )


def _metered_by_key(
    metered: pl.DataFrame, table: PriceTable, api_keys: Mapping[str, str]
) -> pl.DataFrame:
    known = sorted(set(api_keys.values()))
    return (
        _with_cards(metered, table)
        .with_columns(
            who=pl.when(pl.col("service").is_in(known))
            .then("service")
            .otherwise(pl.lit("service ") + pl.col("service").fill_null("(none)")),
        )
        .group_by("day", "model", "who")
        .agg(
            pl.col("service").first().alias("metered_service"),
            *(pl.col(c).sum() for c in TOKENS),
            (pl.col("metered_usd").fill_null(0.0) + pl.col("metered_tools_usd")).sum(),
        )
    )


def reconcile(
    usage: pl.DataFrame,
    costs: pl.DataFrame,
    metered: pl.DataFrame,
    table: PriceTable,
    *,
    by: str = "model",
    api_keys: Mapping[str, str] | None = None,
    tolerance: float = 0.005,
    days: pl.DataFrame | None = None,
    drift: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Billed against metered per UTC day (see the module docstring for grains and verdicts).

    ``usage`` and ``costs`` are the stored reports, ``metered`` is :func:`load_metered`'s frame,
    ``table`` the price table metered calls were priced with (built-in cards plus overrides).
    ``days`` (the stored bill's days, with ``usage_fetched_at``, ``cost_fetched_at`` and
    ``partial``) limits the rows to days the bill covers and adds their freshness; without it
    the rows are the days either side has. ``drift`` is :func:`price_drift` of a longer
    stretch of the bill, so that ``since`` names the first day it differs before this range
    (default: of the frames given).

    Columns: ``day``, ``model`` (``service`` and ``api_key_id`` by key), ``billed_<type>`` and
    ``metered_<type>`` per token type, ``token_gaps`` (billed minus metered, NULL when equal),
    ``billed_usd``, ``metered_usd``, ``unmetered_usd`` (billed minus metered, negative when
    clauditor saw more), ``billed_basis``, ``verdict``, ``price_drift`` and, with ``days``,
    ``bill_fetched_at`` and ``partial``.
    """
    if by not in RECONCILE_GRAINS:
        raise ValueError(f"reconcile by one of {list(RECONCILE_GRAINS)}, not {by!r}")
    keys = api_keys or {}
    if by == "model":
        billed = _billed_by_model(usage, costs, table)
        seen = _metered_by_model(metered, table)
        on = ["day", "model"]
    elif by == "workspace":
        extra = ("workspace_id",)
        default = pl.col("workspace_id").fill_null(DEFAULT_WORKSPACE)
        usage = usage.with_columns(default)
        billed = _billed_by_model(usage, costs.with_columns(default), table, extra)
        placed = metered.join(_service_workspaces(usage, keys), on="service", how="left")
        seen = _metered_by_model(
            placed.with_columns(pl.col("workspace_id").fill_null(NO_WORKSPACE)), table, extra
        )
        on = ["day", "model", *extra]
    else:
        billed = _billed_by_key(usage, table, keys)
        seen = _metered_by_key(metered, table, keys)
        on = ["day", "model", "who"]
    billed = billed.rename({c: f"billed_{_SHORT[c]}" for c in TOKENS})
    seen = seen.rename({c: f"metered_{_SHORT[c]}" for c in TOKENS})
    rows = billed.join(seen, on=on, how="full", coalesce=True, nulls_equal=True)
    if by == "api_key":
        rows = rows.with_columns(service=pl.coalesce("service", "metered_service")).drop(
            "metered_service", "who"
        )
    if days is not None:
        rows = rows.join(days.select("day"), on="day", how="semi")

    zero = lambda c: pl.col(c).fill_null(0)  # noqa: E731
    gaps = [
        pl.when(zero(f"billed_{s}") != zero(f"metered_{s}")).then(
            pl.format(
                "{} {}",
                pl.lit(s),
                (zero(f"billed_{s}") - zero(f"metered_{s}")).map_elements(
                    lambda v: f"{v:+,}", return_dtype=pl.String
                ),
            )
        )
        for s in _SHORT.values()
    ]
    rows = rows.with_columns(
        token_gaps=pl.concat_str(gaps, separator="; ", ignore_nulls=True).replace("", None),
        billed_usd=zero("billed_usd").cast(pl.Float64),
        metered_usd=zero("metered_usd").cast(pl.Float64),
    ).with_columns(
        # Micro-dollars: finer than any bill, and no float dust like -0.03999999999999998.
        pl.col("billed_usd", "metered_usd").round(6),
        unmetered_usd=(pl.col("billed_usd") - pl.col("metered_usd")).round(6),
    )

    if drift is None:
        drift = price_drift(usage, costs, table, tolerance=tolerance)
    rows = rows.join(_drift_notes(drift), on=["day", "model"], how="left")
    within = pl.col("unmetered_usd").abs() <= tolerance * pl.col("billed_usd").abs() + 1e-9
    more_billed = (pl.col("unmetered_usd") > 0) | (
        (pl.col("unmetered_usd") == 0)
        & (
            pl.sum_horizontal(zero(f"billed_{s}") for s in _SHORT.values())
            > pl.sum_horizontal(zero(f"metered_{s}") for s in _SHORT.values())
        )
    )
    rows = rows.with_columns(
        verdict=pl.when(pl.col("token_gaps").is_null() & within)
        .then(pl.lit("matches"))
        .when(pl.col("token_gaps").is_null())
        .then(pl.lit("price drift"))
        .when(more_billed)
        .then(pl.lit("unmetered"))
        .otherwise(pl.lit("over-metered"))
    )
    if days is not None:
        rows = rows.join(
            days.select(
                "day",
                bill_fetched_at=pl.min_horizontal("usage_fetched_at", "cost_fetched_at"),
                partial="partial",
            ),
            on="day",
            how="left",
        )
    lead = ["day", "model", *_LEAD[by]]
    tail = ["bill_fetched_at", "partial"] if days is not None else []
    columns = [
        *lead,
        *(f"{side}_{s}" for s in _SHORT.values() for side in ("billed", "metered")),
        "token_gaps",
        "billed_usd",
        "metered_usd",
        "unmetered_usd",
        "billed_basis",
        "verdict",
        "price_drift",
        *tail,
    ]
    return (
        rows.with_columns(billed_basis=pl.col("billed_basis").fill_null("cost report"))
        .select(columns)
        .sort(lead, nulls_last=True)
    )


def _drift_notes(found: pl.DataFrame) -> pl.DataFrame:
    """Per day and model, the drifted prices in words (NULL where none)."""
    return found.group_by("day", "model").agg(
        pl.format(
            "{} billed ${}/MTok, card ${}/MTok, since {}",
            "token_type",
            pl.col("billed_per_mtok").round(4),
            pl.col("card_per_mtok").round(4),
            pl.col("first_day").dt.to_string("%Y-%m-%d"),
        )
        .sort()
        .str.join("; ")
        .alias("price_drift")
    )


@dataclass(frozen=True)
class Reconciliation:
    """:func:`reconcile_stored`'s answer: the rows, the drifted prices (from the first stored
    day on), the stored days with their freshness, and the days of the range with no bill."""

    rows: pl.DataFrame
    drift: pl.DataFrame
    days: pl.DataFrame
    missing_days: tuple[dt.date, ...]


def reconcile_stored(
    db: str | Path, first: dt.date, last: dt.date, config: Config, *, by: str = "model"
) -> Reconciliation:
    """Reconcile the UTC days ``[first, last]`` of the bill stored in ``db`` with its calls.

    Prices and attribution come from ``config`` (its price table with the overrides, and
    ``[reconcile]``). Raises :class:`ValueError` when no day of the range has a stored bill.
    """
    from clauditor.ingest.bill import load_bill

    bill = load_bill(db, first, last)
    if bill.days.height == 0:
        raise ValueError(
            f"no bill stored for {first}..{last}: run `clauditor reconcile --fetch` "
            "with $ANTHROPIC_ADMIN_KEY set"
        )
    table = config.price_table()
    tolerance = config.reconcile.tolerance
    history = load_bill(db, dt.date(1970, 1, 1), last)
    drift = price_drift(history.usage, history.costs, table, tolerance=tolerance)
    rows = reconcile(
        bill.usage,
        bill.costs,
        load_metered(db, first, last),
        table,
        by=by,
        api_keys=config.reconcile.api_keys,
        tolerance=tolerance,
        days=bill.days,
        drift=drift,
    )
    stored = set(bill.days["day"].to_list())
    every = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return Reconciliation(
        rows=rows,
        drift=drift.filter(pl.col("day").is_between(first, last)),
        days=bill.days,
        missing_days=tuple(d for d in every if d not in stored),
    )
