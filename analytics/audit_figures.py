"""The checklist audit from DuckDB reductions, for :mod:`clauditor.analytics.runner`.

Over millions of calls, loading the calls costs more than every job together, so each item gets
its figures from what the engine can reduce first, and the row builders of
:mod:`clauditor.analytics.audit_items` turn them into the item's row:

* the rollup (``hours``): model mix, retries, usage logged, error rate,
  attribution, deprecated models;
* per workload (feature, or code location of untagged calls) of the synchronous generation
  calls, for the batch, max_tokens and streaming items: sums from ``hours`` (which carries the
  workload flags), the p99 output by DuckDB, and the median durations by DuckDB only for the
  workloads whose evidence shows one (``median`` and ``quantile_cont`` interpolate as Polars
  does);
* one statement over the conversations of 3+ turns: first, last and largest prompt, history
  dollars of each;
* when Opus is over its share, the Opus calls summed per day and pricing flags, priced as
  Sonnet with :func:`clauditor.pricing.price_calls` (cost is linear in tokens for calls that
  share a day, tier, operation, region, speed and long-context side).

The statements go through :class:`FigureQueries` (:class:`DuckDBFigures` here; the ClickHouse
engine has its own), so every engine shares the Polars around them
(:func:`audit_figures_with`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

import duckdb
import polars as pl

from clauditor.analytics.audit_items import (
    AUDIT_ITEMS,
    MIN_TURNS,
    REPRICE_AS,
    attribution_row,
    batch_api_row,
    budget_row,
    context_growth_row,
    deprecated_row,
    error_rate_row,
    item_row,
    max_tokens_row,
    model_mix_row,
    prompt_caching_row,
    retries_row,
    streaming_row,
    token_cost,
    usage_logged_row,
)
from clauditor.analytics.costs import PREPARED_KEY, UNTAGGED
from clauditor.analytics.errors import failed_expr
from clauditor.analytics.periods import Period
from clauditor.analytics.rollup import FAILED_SQL, where_sql
from clauditor.config import Config
from clauditor.pricing import (
    PER_MTOK,
    PriceTable,
    load_price_table,
    model_key_expr,
    price_calls,
)

__all__ = [
    "DuckDBFigures",
    "FigureQueries",
    "audit_figures",
    "audit_figures_with",
    "audit_from_figures",
    "calls_of",
]

_FAILED = FAILED_SQL

_WORKLOAD_KEYS = (
    "CASE WHEN coalesce(feature, '') <> '' THEN feature END AS _feature, "
    "CASE WHEN coalesce(feature, '') = '' THEN coalesce(code_location, '?') END AS _location"
)

# The p99 output of the capped successful calls per workload (the sums come from the hours).
_P99_SQL = f"""
SELECT {_WORKLOAD_KEYS}, quantile_cont(output_tokens, 0.99) AS p99
FROM calls{{where}} GROUP BY ALL
"""

# Median durations, read only for the workloads whose evidence shows one ({batch} and
# {stream}: SQL conditions naming those workloads' calls).
_MEDIANS_SQL = f"""
WITH c AS (
    SELECT {_WORKLOAD_KEYS}, duration_ms, {{batch}} AS _batch,
        {{stream}} AND NOT {_FAILED} AND coalesce(service_tier, '') <> 'batch' AS _stream
    FROM calls{{where}} AND ({{batch}} OR {{stream}})
)
SELECT _feature, _location, median(duration_ms) FILTER (_batch) AS p50_ms,
    median(duration_ms) FILTER (_stream) AS s_p50_ms
FROM c GROUP BY ALL
"""


def calls_of(workloads: pl.DataFrame) -> str:
    """SQL true for the calls of the ``workloads`` rows (``_feature``, ``_location``)."""
    named = [f for f in workloads["_feature"].to_list() if f is not None]
    located = [w for f, w in workloads.select("_feature", "_location").iter_rows() if f is None]
    parts = [f"feature IN ({_quoted(named)})"] if named else []
    if located:
        parts.append(
            f"(coalesce(feature, '') = '' AND coalesce(code_location, '?') IN ({_quoted(located)}))"
        )
    return "(" + " OR ".join(parts) + ")" if parts else "false"


_PROMPT = (
    "coalesce(input_tokens, 0) + coalesce(cache_read_input_tokens, 0) "
    "+ coalesce(cache_creation_input_tokens, 0)"
)
_INPUT_USD = (
    "coalesce(cost_input_usd, 0.0) + coalesce(cost_cache_read_usd, 0.0) "
    "+ coalesce(cost_cache_write_usd, 0.0)"
)
_CONVERSATIONS_SQL = f"""
WITH c AS (
    SELECT conversation_id AS conv, start_time, {_PROMPT} AS prompt, {_INPUT_USD} AS icost
    FROM calls{{where}}
), g AS (
    SELECT conv, count(*) AS turns, arg_min(prompt, start_time) AS first,
        arg_max(prompt, start_time) AS last, max(prompt) AS peak
    FROM c GROUP BY conv HAVING count(*) >= {MIN_TURNS}
)
SELECT turns, first, last, peak,
    sum(greatest(icost * (1 - first / greatest(prompt, 1)), 0.0)) AS history_usd
FROM c JOIN g USING (conv) GROUP BY conv, turns, first, last, peak
"""


def _tok(name: str, have: set[str]) -> str:
    """A token column as :func:`clauditor.pricing.price_calls` reads it: NULL 0, never < 0."""
    return f"greatest(coalesce({name}, 0), 0)" if name in have else "0"


_where = where_sql

_SYNC = "coalesce(operation, 'chat') = 'chat'"
_CHAT = "coalesce(operation, 'chat') IN ('chat', 'batch')"


def _workload_name(frame: pl.DataFrame) -> pl.DataFrame:
    """``workload`` as :func:`clauditor.analytics.audit._by_workload` names it."""
    return frame.with_columns(
        pl.when(pl.col("_feature").is_null())
        .then(pl.format("{} {}", pl.lit(UNTAGGED), pl.col("_location")))
        .otherwise(pl.col("_feature"))
        .alias("workload")
    ).drop("_feature", "_location")


def _workloads(queries: FigureQueries, period: Period | None, hours: pl.DataFrame) -> pl.DataFrame:
    """Per workload of the synchronous generation calls: sums from ``hours``, the medians
    ``p50_ms`` (batch item) and ``s_p50_ms`` (streaming item) and ``p99`` output by DuckDB."""
    sync = hours.filter(pl.col("operation").cast(pl.String).fill_null("chat") == "chat")
    untagged = pl.col("feature").is_null() | (pl.col("feature") == "")
    ok = ~failed_expr()
    capped = pl.col("_capped")
    off_batch = pl.col("service_tier").fill_null("") != "batch"
    streamed = pl.col("stream").fill_null(False)
    calls = pl.col("calls")
    work = sync.group_by(
        pl.when(~untagged).then(pl.col("feature")).alias("_feature"),
        pl.when(untagged).then(pl.col("_location").fill_null("?")).alias("_location"),
    ).agg(
        calls.sum().cast(pl.Int64),
        streamed.any().alias("streams"),
        pl.col("_has_user").any().alias("has_users"),
        (pl.col("service_tier") == "batch").fill_null(False).any().alias("batched"),
        token_cost().sum().alias("cost"),
        calls.filter(ok).sum().cast(pl.Int64).alias("ok_calls"),
        calls.filter(ok & capped).sum().cast(pl.Int64).alias("capped_n"),
        pl.col("_cap").filter(ok & capped).max().cast(pl.Int64).alias("cap"),
        pl.col("_truncated").filter(ok & capped).sum().cast(pl.Int64).alias("cut_n"),
        pl.col("_truncated_usd").filter(ok & capped).sum().alias("truncated_usd"),
        calls.filter(ok & off_batch).sum().cast(pl.Int64).alias("s_n"),
        calls.filter(ok & off_batch & streamed).sum().cast(pl.Int64).alias("s_streamed"),
        pl.col("_has_user").filter(ok & off_batch).any().alias("s_has_users"),
    )
    keys = ["_feature", "_location"]
    work = work.with_columns(pl.col(keys).cast(pl.String))
    p99 = queries.p99(period)
    # The medians the items show: the three costliest non-interactive workloads (batch item),
    # the interactive ones streamed less than half the time (streaming item).
    named = _workload_name(work.with_columns(pl.col(k).alias("_k" + k) for k in keys))
    batch = (
        named.filter(~pl.col("streams") & ~pl.col("has_users") & ~pl.col("batched"))
        .sort(["cost", "workload"], descending=[True, False])
        .head(3)
        .select(pl.col("_k_feature").alias("_feature"), pl.col("_k_location").alias("_location"))
    )
    stream = work.filter(
        (pl.col("s_n") > 0)
        & (pl.col("s_has_users") | (pl.col("s_streamed") > 0))
        & (pl.col("s_streamed") < 0.5 * pl.col("s_n"))
    ).select(keys)
    medians = pl.DataFrame(
        schema={"_feature": pl.String, "_location": pl.String, "p50_ms": pl.Float64,
                "s_p50_ms": pl.Float64}
    )  # fmt: skip
    if batch.height or stream.height:
        medians = queries.medians(period, calls_of(batch), calls_of(stream))
    for found in (p99, medians):
        work = work.join(
            found.with_columns(pl.col(keys).cast(pl.String)), on=keys, how="left", nulls_equal=True
        )
    return _workload_name(work)


class FigureQueries(Protocol):
    """The statements :func:`audit_figures_with` needs, in an engine's own SQL (each over the
    calls of ``period`` the engine admits)."""

    def p99(self, period: Period | None) -> pl.DataFrame:
        """``_feature``, ``_location`` (the workload keys) and ``p99``: the interpolated 99th
        percentile of output tokens of the capped successful synchronous calls."""
        ...

    def medians(self, period: Period | None, batch: str, stream: str) -> pl.DataFrame:
        """Per workload of the synchronous calls of ``batch`` or ``stream`` (SQL conditions
        of :func:`calls_of`): ``p50_ms`` (median duration of the ``batch`` calls) and
        ``s_p50_ms`` (of the successful, non-batch-tier ``stream`` calls)."""
        ...

    def conversations(self, period: Period | None) -> pl.DataFrame | None:
        """Per conversation of 3+ successful chat turns: ``turns``, ``first``, ``last``,
        ``peak`` (prompt tokens, Int64) and ``history_usd``; None when no successful chat
        call has a conversation id."""
        ...

    def opus_groups(
        self, period: Period | None, opus_ids: list[str], long_above: float | None
    ) -> pl.DataFrame:
        """The chat calls of ``opus_ids`` summed per UTC day (``_day``, days since the epoch),
        ``service_tier``, ``operation``, ``inference_geo``, ``speed`` and ``_long`` (prompt
        over ``long_above``): token sums, ``_w5m``, ``_w1h`` and ``_opus_usd``."""
        ...

    def opus_calls(self, period: Period | None, opus_ids: list[str]) -> pl.DataFrame:
        """The chat calls of ``opus_ids`` as an analytics frame (priced one by one)."""
        ...


class DuckDBFigures:
    """:class:`FigureQueries` by DuckDB statements on an open connection (session zone UTC)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def p99(self, period: Period | None) -> pl.DataFrame:
        where, params = _where(period, _SYNC, f"NOT {_FAILED}", "max_tokens IS NOT NULL")
        return self.con.sql(_P99_SQL.format(where=where), params=params).pl()

    def medians(self, period: Period | None, batch: str, stream: str) -> pl.DataFrame:
        where, params = _where(period, _SYNC)
        sql = _MEDIANS_SQL.format(where=where, batch=batch, stream=stream)
        return self.con.sql(sql, params=params).pl()

    def conversations(self, period: Period | None) -> pl.DataFrame | None:
        where, params = _where(period, _CHAT, f"NOT {_FAILED}", "conversation_id IS NOT NULL")
        per = self.con.sql(_CONVERSATIONS_SQL.format(where=where), params=params).pl()
        if per.height == 0:
            found = self.con.execute(f"SELECT count(*) FROM calls{where}", params).fetchall()
            if not found[0][0]:
                return None
        return per.with_columns(pl.col("turns", "first", "last", "peak").cast(pl.Int64))

    def opus_groups(
        self, period: Period | None, opus_ids: list[str], long_above: float | None
    ) -> pl.DataFrame:
        con = self.con
        have = {row[0] for row in con.execute("DESCRIBE calls").fetchall()}
        w1h = _tok("cache_creation_1h_input_tokens", have)
        write = _tok("cache_creation_input_tokens", have)
        total = f"{_tok('input_tokens', have)} + {_tok('cache_read_input_tokens', have)} + {write}"
        long_context = f"{total} > {long_above}" if long_above is not None else "false"
        text = {c: (c if c in have else "NULL::VARCHAR") for c in
                ("service_tier", "operation", "inference_geo", "speed")}  # fmt: skip
        # The ids inline (quoted): DuckDB matches a constant list faster than a parameter's.
        where, params = _where(
            period, _CHAT, f"coalesce(response_model, request_model) IN ({_quoted(opus_ids)})"
        )
        sql = f"""
            SELECT epoch_us(start_time) // 86400000000 AS _day,
                {text["service_tier"]} AS service_tier, {text["operation"]} AS operation,
                {text["inference_geo"]} AS inference_geo, {text["speed"]} AS speed,
                {long_context} AS _long, sum({_tok("input_tokens", have)}) AS input_tokens,
                sum({_tok("output_tokens", have)}) AS output_tokens,
                sum({_tok("cache_read_input_tokens", have)}) AS cache_read_input_tokens,
                sum(greatest({write} - {w1h}, 0)) AS _w5m, sum({w1h}) AS _w1h,
                sum(coalesce(cost_usd, 0.0)) AS _opus_usd
            FROM calls{where} GROUP BY ALL
        """
        return con.sql(sql, params=params).pl()

    def opus_calls(self, period: Period | None, opus_ids: list[str]) -> pl.DataFrame:
        from clauditor.analytics.frame import analytics_frame_from

        ids = _quoted(opus_ids)
        where = f"{_CHAT} AND coalesce(response_model, request_model) IN ({ids})"
        return analytics_frame_from(self.con, period, where=where)


def _quoted(values: list[str]) -> str:
    """SQL string literals of ``values`` (quotes doubled), comma-separated."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _thresholds(table: PriceTable) -> list[float]:
    """The distinct long-context thresholds of the model Opus calls are repriced as."""
    key = pl.select(model_key_expr(pl.lit(REPRICE_AS))).item()
    cards = [c for c in table.cards if key == c.id or key in c.aliases]
    return sorted({t.above for c in cards for t in c.tiers})


def _repriced_saving(
    queries: FigureQueries,
    period: Period | None,
    opus_ids: list[str],
    table: PriceTable,
) -> float | None:
    """Opus dollars minus the same calls priced as :data:`REPRICE_AS` (None: no such calls).

    Calls are summed per UTC day, tier, operation, region, speed and long-context side
    (:meth:`FigureQueries.opus_groups`): within such a group every call has the same per-token
    prices, so pricing the summed tokens gives the sum of the calls' prices. On the
    long-context side the summed row is priced as it is (its prompt is longer still); on the
    other side the prices per token come from a one-token row, which cannot cross the threshold
    that the summed tokens might.
    """
    thresholds = _thresholds(table)
    if len(thresholds) > 1:  # the side would depend on the day's entry: price call by call
        opus = queries.opus_calls(period, opus_ids)
        if opus.height == 0:
            return None
        sonnet = opus.with_columns(pl.col(pl.Categorical).cast(pl.String)).with_columns(
            pl.lit(REPRICE_AS).alias("request_model"), pl.lit(REPRICE_AS).alias("response_model")
        )
        repriced = price_calls(sonnet, table)
        opus_usd = float(opus["cost_usd"].fill_null(0).sum())
        return opus_usd - float(repriced["cost_usd"].fill_null(0).sum())
    groups = queries.opus_groups(period, opus_ids, thresholds[0] if thresholds else None)
    if groups.height == 0:
        return None
    sums = ["input_tokens", "output_tokens", "cache_read_input_tokens", "_w5m", "_w1h"]
    groups = groups.with_columns(
        pl.col(sums).cast(pl.Int64),
        pl.from_epoch(pl.col("_day") * 86400, "s").dt.replace_time_zone("UTC").alias("start_time"),
        pl.lit(REPRICE_AS).alias("request_model"),
        pl.lit(REPRICE_AS).alias("response_model"),
    )
    one = pl.lit(1, dtype=pl.Int64)
    summed = price_calls(
        groups.with_columns(
            (pl.col("_w5m") + pl.col("_w1h")).alias("cache_creation_input_tokens"),
            pl.col("_w1h").alias("cache_creation_1h_input_tokens"),
        ),
        table,
    )
    probe = price_calls(
        groups.with_columns(
            one.alias("input_tokens"), one.alias("output_tokens"),
            one.alias("cache_read_input_tokens"), one.alias("cache_creation_input_tokens"),
            pl.lit(0, dtype=pl.Int64).alias("cache_creation_1h_input_tokens"),
        ),
        table,
    )  # fmt: skip
    by_unit = PER_MTOK * (
        groups["input_tokens"] * probe["rate_input"]
        + groups["output_tokens"] * probe["rate_output"]
        + groups["cache_read_input_tokens"] * probe["rate_cache_read"]
        + groups["_w5m"] * probe["rate_cache_write_5m"]
        + groups["_w1h"] * probe["rate_cache_write_1h"]
    )
    repriced = pl.select(
        pl.when(groups["_long"]).then(summed["cost_usd"]).otherwise(by_unit).fill_null(0.0).sum()
    ).item()
    return float(groups["_opus_usd"].sum() - repriced)


def _per_model(hours: pl.DataFrame) -> pl.DataFrame:
    return (
        hours.group_by(pl.col("_model_id").alias("model"))
        .agg(
            pl.col("calls").sum().cast(pl.Int64),
            pl.col("cost_usd").fill_null(0).sum().alias("cost"),
        )
        .filter(pl.col("model").is_not_null())
        .with_columns(pl.col("model").cast(pl.String))
        .with_columns(model_key_expr("model").alias("key"))
    )


def audit_figures(
    con: duckdb.DuckDBPyConnection,
    period: Period | None,
    hours: pl.DataFrame,
    *,
    config: Config | None,
) -> dict[str, Any]:
    """The audit's own DuckDB statements (workloads, conversations, Opus repriced when the
    model mix needs it), for :func:`audit_from_figures`; may run on another cursor while
    the other jobs run."""
    return audit_figures_with(DuckDBFigures(con), period, hours, config=config)


def audit_figures_with(
    queries: FigureQueries,
    period: Period | None,
    hours: pl.DataFrame,
    *,
    config: Config | None,
) -> dict[str, Any]:
    """:func:`audit_figures` through any engine's :class:`FigureQueries`."""
    if hours.height == 0 or int(hours["calls"].sum()) == 0:
        return {}
    table = config.price_table() if config is not None else load_price_table()
    saving: list[float | None] = []

    def reprice(ids: list[str]) -> float | None:
        saving.append(_repriced_saving(queries, period, ids, table))
        return saving[-1]

    model_mix_row(_per_model(_chat(hours)), reprice)  # reprices only when Opus is over share
    return {
        "workloads": _workloads(queries, period, hours),
        "conversations": queries.conversations(period),
        "opus_saving": saving[-1] if saving else None,
    }


def _chat(hours: pl.DataFrame) -> pl.DataFrame:
    operation = pl.col("operation").cast(pl.String).fill_null("chat")
    return hours.filter(operation.is_in(["chat", "batch"]))


def audit_from_figures(
    hours: pl.DataFrame,
    *,
    config: Config | None,
    results: Mapping[str, pl.DataFrame],
    figures: Mapping[str, Any],
) -> pl.DataFrame:
    """:func:`clauditor.analytics.audit.audit` finished from the reductions of the same calls.

    ``hours`` is their rollup; ``results`` must hold ``caching_candidates``,
    ``cache_economics`` and ``cost_of_failure`` of those calls; ``figures`` is
    :func:`audit_figures` of them.
    """
    schema = {"item": pl.String, "category": pl.String, "status": pl.String,
              "evidence": pl.String, "usd_at_stake": pl.Float64}  # fmt: skip
    calls = int(hours["calls"].sum()) if hours.height else 0
    if calls == 0:
        return pl.DataFrame(
            [item_row(i, "", "n/a", "no calls in the period") for i in AUDIT_ITEMS], schema=schema
        )
    table = config.price_table() if config is not None else load_price_table()
    chat = _chat(hours)
    failed = failed_expr()
    total = float(hours["cost_usd"].fill_null(0).sum())
    work = figures["workloads"]
    ok_chat = chat.filter(~failed)
    failures = (
        hours.filter(failed)
        .group_by("status", "error_type", "http_status")
        .agg(pl.col("calls").sum().alias("n"))
    )
    untagged = hours.filter(pl.col(PREPARED_KEY + "feature") == UNTAGGED)["cost_usd"]
    rows = [
        model_mix_row(_per_model(chat), lambda _: figures["opus_saving"]),
        prompt_caching_row(results, total),
        batch_api_row(work, total),
        max_tokens_row(
            int(work["ok_calls"].sum()),
            work.filter(pl.col("capped_n") > 0).select(
                "workload",
                "cap",
                "p99",
                (pl.col("cut_n") / pl.col("capped_n")).alias("truncated"),
                "truncated_usd",
            ),  # fmt: skip
        ),
        retries_row(int(hours["_retried"].sum()), failures, hours["_max_duration_ms"].max(), calls),  # type: ignore[arg-type]
        usage_logged_row(int(ok_chat["calls"].sum()), int(ok_chat["_usage_logged"].sum())),
        error_rate_row(int(hours.filter(failed)["calls"].sum()), calls, results["cost_of_failure"]),
        attribution_row(float(untagged.fill_null(0).sum()), total),
        streaming_row(
            work.filter(pl.col("s_n") > 0).select(
                "workload",
                (pl.col("s_streamed") / pl.col("s_n")).alias("streamed"),
                pl.col("s_has_users").alias("has_users"),
                pl.col("s_p50_ms").alias("p50_ms"),
            )
        ),
        context_growth_row(figures["conversations"]),
        deprecated_row(_last_call(hours), _per_model(hours), table),
        budget_row(config),
    ]
    return pl.DataFrame(rows, schema=schema)


def _last_call(hours: pl.DataFrame) -> dt.datetime | None:
    return hours["_end_time"].max()  # type: ignore[return-value]
