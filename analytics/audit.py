"""The production-checklist audit: the checklist items that telemetry (and the config) can judge.

:func:`audit` reduces a per-call frame to each item's figures (per model, per workload, per
conversation) and hands them to the row builders of :mod:`clauditor.analytics.audit_items`,
which hold the items' limits, status rules and evidence text (re-exported here).

What counts as *interactive*: a feature (or, for untagged calls, a code location) whose calls
carry end-user ids or stream. Features that never stream, never name a user and run on the
synchronous API are *non-interactive*: Batch API candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

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
    retries_row,
    streaming_row,
    token_cost,
    usage_logged_row,
)
from clauditor.analytics.cache import cache_economics, caching_candidates
from clauditor.analytics.costs import PREPARED_KEY, UNTAGGED, group_key_expr
from clauditor.analytics.errors import failed_expr
from clauditor.analytics.failure import cost_of_failure
from clauditor.config import Config
from clauditor.pricing import PriceTable, load_price_table, model_key_expr

__all__ = ["AUDIT_ITEMS", "audit", "prompt_caching_row"]

_PROMPT_COLUMNS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost_input_usd",
    "cost_cache_read_usd",
    "cost_cache_write_usd",
)


def _by_workload(frame: pl.DataFrame, *aggs: pl.Expr) -> pl.DataFrame:
    """``aggs`` per workload: the feature, or for untagged calls the code location.

    Grouping on the raw columns and naming the few groups afterwards keeps string building off
    the per-row path.
    """
    untagged = pl.col("feature").is_null() | (pl.col("feature") == "")
    grouped = frame.group_by(
        pl.when(~untagged).then(pl.col("feature")).alias("_feature"),
        pl.when(untagged).then(pl.col("code_location").fill_null("?")).alias("_location"),
    ).agg(*aggs)
    grouped = grouped.with_columns(pl.col("_feature", "_location").cast(pl.String))
    return grouped.with_columns(
        pl.when(pl.col("_feature").is_null())
        .then(pl.format("{} {}", pl.lit(UNTAGGED), pl.col("_location")))
        .otherwise(pl.col("_feature"))
        .alias("workload")
    ).drop("_feature", "_location")


def _model_id(frame: pl.DataFrame) -> pl.Expr:
    """The model id as answered, from a prepared frame's column when there is one."""
    if "_model_id" in frame.columns:
        return pl.col("_model_id")
    return pl.coalesce("response_model", "request_model")


def _has_user(frame: pl.DataFrame) -> pl.Expr:
    """Whether a call names an end user (a prepared frame may carry only ``_has_user``)."""
    return pl.col("_has_user") if "_has_user" in frame.columns else pl.col("user_id").is_not_null()


def _models(frame: pl.DataFrame, *aggs: pl.Expr) -> pl.DataFrame:
    """Calls per model id as answered (``model``), with the normalized table key (``key``)."""
    return (
        frame.group_by(_model_id(frame).alias("model"))
        .agg(pl.len().alias("calls"), *aggs)
        .filter(pl.col("model").is_not_null())
        .with_columns(pl.col("model").cast(pl.String))
        .with_columns(model_key_expr("model").alias("key"))
    )


def _model_mix(chat: pl.DataFrame, table: PriceTable) -> dict[str, Any]:
    def saving(opus_ids: list[str]) -> float | None:
        opus = chat.filter(_model_id(chat).cast(pl.String).is_in(opus_ids))
        if opus.height == 0:
            return None
        sonnet = opus.with_columns(pl.col(pl.Categorical).cast(pl.String)).with_columns(
            pl.lit(REPRICE_AS).alias("request_model"),
            pl.lit(REPRICE_AS).alias("response_model"),
        )
        from clauditor.pricing import price_calls

        repriced = price_calls(sonnet, table)
        return float(opus["cost_usd"].fill_null(0).sum()) - float(
            repriced["cost_usd"].fill_null(0).sum()
        )

    return model_mix_row(_models(chat), saving)


def prompt_caching_row(
    calls: pl.DataFrame | None, results: Mapping[str, pl.DataFrame], total: float
) -> dict[str, Any]:
    """The prompt-caching item's row from the cache jobs' results (``cache_economics`` and
    ``caching_candidates``; computed from ``calls`` when missing, so ``calls`` may be None when
    ``results`` holds both) and the period's total spend."""
    candidates = results.get("caching_candidates")
    if candidates is None:
        assert calls is not None
        candidates = caching_candidates(calls)
    economics = results.get("cache_economics")
    if economics is None:
        assert calls is not None
        economics = cache_economics(calls, by=[])
    wasted = float(economics["wasted_write_usd"].sum()) if economics.height else 0.0
    if candidates.height == 0:
        return item_row(
            "prompt_caching",
            "cost",
            "pass",
            f"no feature sends >= 1,024 uncached input tokens repeatedly; "
            f"${wasted:,.2f} of cache-write premium never read back",
            wasted,
        )
    stake = float(candidates["dollars_at_stake"].sum())
    names = ", ".join(
        f"{r['feature']} ({r['avg_input_tokens']:,.0f} tok)"
        for r in candidates.head(3).iter_rows(named=True)
    )
    status = "fail" if stake > 0.05 * max(total, 1e-9) else "warn"
    return item_row(
        "prompt_caching",
        "cost",
        status,
        f"{candidates.height} feature/model pairs send long prompts uncached: {names}",
        stake,
    )


def _batch_api(chat: pl.DataFrame, total: float) -> dict[str, Any]:
    per = _by_workload(
        chat,
        pl.len().alias("calls"),
        pl.col("stream").fill_null(False).any().alias("streams"),
        _has_user(chat).any().alias("has_users"),
        (pl.col("service_tier") == "batch").fill_null(False).any().alias("batched"),
        token_cost().sum().alias("cost"),
        pl.col("duration_ms").median().alias("p50_ms"),
    )
    return batch_api_row(per, total)


def _max_tokens(chat: pl.DataFrame) -> dict[str, Any]:
    columns = ["feature", "code_location", "max_tokens", "output_tokens", "stop_reason"]
    ok = chat.lazy().filter(~failed_expr()).select(*columns, "cost_usd").collect()
    per = _by_workload(
        ok.filter(pl.col("max_tokens").is_not_null()),
        pl.col("max_tokens").max().alias("cap"),
        pl.col("output_tokens").quantile(0.99, "linear").alias("p99"),
        (pl.col("stop_reason") == "max_tokens").fill_null(False).mean().alias("truncated"),
        pl.col("cost_usd")
        .filter(pl.col("stop_reason") == "max_tokens")
        .fill_null(0)
        .sum()
        .alias("truncated_usd"),
    )
    return max_tokens_row(ok.height, per)


def _retries(calls: pl.DataFrame) -> dict[str, Any]:
    retried = int(calls.select((pl.col("retries").fill_null(0) > 0).sum()).item())
    # Failed calls are few: classify their distinct (status, type, HTTP status) combinations.
    failed = (
        calls.lazy()
        .filter(failed_expr())
        .group_by("status", "error_type", "http_status")
        .agg(pl.len().alias("n"))
        .collect()
    )
    longest = cast("float | None", calls["duration_ms"].max())  # a numeric column
    return retries_row(retried, failed, longest, calls.height)


def _usage_logged(chat: pl.DataFrame) -> dict[str, Any]:
    ok = (
        chat.lazy()
        .filter(~failed_expr())
        .select("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                "output_tokens")
        .collect()
    )  # fmt: skip
    if ok.height == 0:
        return item_row("usage_logged", "observability", "n/a", "no successful generation calls")
    tokens = (
        pl.col("input_tokens").fill_null(0)
        + pl.col("cache_read_input_tokens").fill_null(0)
        + pl.col("cache_creation_input_tokens").fill_null(0)
    )
    return usage_logged_row(
        ok.height, ok.filter((tokens > 0) & pl.col("output_tokens").is_not_null()).height
    )


def _error_rate(calls: pl.DataFrame, results: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    failure = results.get("cost_of_failure")
    if failure is None:
        failure = cost_of_failure(calls, by=[])
    failed = int(calls.select(failed_expr().sum()).item())
    return error_rate_row(failed, calls.height, failure)


def _attribution(calls: pl.DataFrame, total: float) -> dict[str, Any]:
    key = (
        pl.col(PREPARED_KEY + "feature")
        if PREPARED_KEY + "feature" in calls.columns
        else group_key_expr("feature")
    )
    untagged = float(
        calls.select(pl.col("cost_usd").filter(key == UNTAGGED).fill_null(0).sum()).item()
    )
    return attribution_row(untagged, total)


def _streaming(chat: pl.DataFrame) -> dict[str, Any]:
    per = _by_workload(
        chat.lazy()
        .filter(~failed_expr() & (pl.col("service_tier").fill_null("") != "batch"))
        .select(
            "feature",
            "code_location",
            "stream",
            "duration_ms",
            _has_user(chat).alias("_has_user"),
        )  # fmt: skip
        .collect(),
        pl.col("stream").fill_null(False).mean().alias("streamed"),
        pl.col("_has_user").any().alias("has_users"),
        pl.col("duration_ms").median().alias("p50_ms"),
    )
    return streaming_row(per)


def _context_growth(chat: pl.DataFrame) -> dict[str, Any]:
    conversation = "_conversation" if "_conversation" in chat.columns else "conversation_id"
    conv = chat.filter(pl.col(conversation).is_not_null() & ~failed_expr()).select(
        conversation, "start_time", *_PROMPT_COLUMNS
    )
    if conv.height == 0:
        return item_row("context_growth", "cost", "n/a", "no conversation ids recorded")
    prompt = (
        pl.col("input_tokens").fill_null(0)
        + pl.col("cache_read_input_tokens").fill_null(0)
        + pl.col("cache_creation_input_tokens").fill_null(0)
    )
    input_cost = (
        pl.col("cost_input_usd").fill_null(0)
        + pl.col("cost_cache_read_usd").fill_null(0)
        + pl.col("cost_cache_write_usd").fill_null(0)
    )
    turns = conv.sort("start_time").with_columns(prompt.alias("prompt"), input_cost.alias("icost"))
    per = (
        turns.group_by(conversation)
        .agg(
            pl.len().alias("turns"),
            pl.col("prompt").first().alias("first"),
            pl.col("prompt").last().alias("last"),
            pl.col("prompt").max().alias("peak"),
            # Input dollars spent re-sending what the first turn did not hold: the history.
            (
                pl.col("icost")
                * (1 - pl.col("prompt").first() / pl.col("prompt").clip(lower_bound=1))
            )
            .clip(lower_bound=0)
            .sum()
            .alias("history_usd"),
        )
        .filter(pl.col("turns") >= MIN_TURNS)
    )
    return context_growth_row(per)


def _deprecated(calls: pl.DataFrame, table: PriceTable) -> dict[str, Any]:
    models = _models(calls, pl.col("cost_usd").fill_null(0).sum().alias("cost"))
    return deprecated_row(calls["start_time"].max(), models, table)


def audit(
    calls: pl.DataFrame,
    *,
    config: Config | None = None,
    results: Mapping[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Score the checklist items telemetry can judge (see :data:`AUDIT_ITEMS`).

    ``config`` supplies the price table (for what-if pricing and deprecation dates) and the
    budget; without it the built-in prices are used and ``budget_configured`` is ``n/a``.
    Columns: ``item``, ``category``, ``status``, ``evidence``, ``usd_at_stake``, one row per
    item in :data:`AUDIT_ITEMS` order. An empty frame gives every item ``n/a``.

    ``results`` lends job results already computed over the same ``calls`` so that the audit
    does not run them again: ``cache_economics`` and ``cost_of_failure`` (any ``by``: their
    rows are summed) and ``caching_candidates`` (default options). Missing ones are computed.
    """
    schema = {
        "item": pl.String,
        "category": pl.String,
        "status": pl.String,
        "evidence": pl.String,
        "usd_at_stake": pl.Float64,
    }
    if calls.height == 0:
        return pl.DataFrame(
            [item_row(i, "", "n/a", "no calls in the period") for i in AUDIT_ITEMS], schema=schema
        )
    table = config.price_table() if config is not None else load_price_table()
    results = results or {}
    operation = pl.col("operation").fill_null("chat")
    # Copy rows only when some are not generation calls (a copy of a big frame costs memory).
    operations = set(calls.select(operation.unique().cast(pl.String))["operation"].to_list())
    chat = (
        calls
        if operations <= {"chat", "batch"}
        else calls.filter(operation.is_in(["chat", "batch"]))
    )
    sync = chat.filter(operation == "chat") if "batch" in operations else chat
    total = float(calls["cost_usd"].fill_null(0).sum())
    rows = [
        _model_mix(chat, table),
        prompt_caching_row(calls, results, total),
        _batch_api(sync, total),
        _max_tokens(sync),
        _retries(calls),
        _usage_logged(chat),
        _error_rate(calls, results),
        _attribution(calls, total),
        _streaming(sync),
        _context_growth(chat),
        _deprecated(calls, table),
        budget_row(config),
    ]
    return pl.DataFrame(rows, schema=schema)
