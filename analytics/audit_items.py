"""The checklist items of the audit: their limits, and how an item's figures become its row.

Each item is a row: ``item``, ``category``, ``status`` (``pass`` | ``warn`` | ``fail`` |
``n/a`` when the data cannot say), ``evidence`` (a short sentence with the numbers) and
``usd_at_stake`` (dollars in the frame that the item concerns; NULL when no dollar figure is
defensible). The limits each item uses are module constants, written next to the item.

The ``*_row`` builders here take figures already reduced (per model, per workload, per
conversation) by :mod:`clauditor.analytics.audit_figures` from an engine's aggregates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

import polars as pl

from clauditor.analytics.errors import error_class_expr
from clauditor.config import Config
from clauditor.pricing import BATCH_DISCOUNT, PriceTable

__all__ = [
    "AUDIT_ITEMS",
    "CAP_OVER_P99",
    "ERROR_FAIL",
    "ERROR_WARN",
    "GROWTH_WARN",
    "MIN_TURNS",
    "OPUS_FAIL",
    "OPUS_WARN",
    "PROMPT_WARN_TOKENS",
    "REPRICE_AS",
    "STREAM_AFTER_MS",
    "TARGET_MIX",
    "TRUNCATED_WARN",
    "UNTAGGED_FAIL",
    "UNTAGGED_WARN",
    "attribution_row",
    "batch_api_row",
    "budget_row",
    "context_growth_row",
    "deprecated_row",
    "error_rate_row",
    "item_row",
    "max_tokens_row",
    "model_mix_row",
    "prompt_caching_row",
    "retries_row",
    "streaming_row",
    "token_cost",
    "usage_logged_row",
]

AUDIT_ITEMS = (
    "model_mix",
    "prompt_caching",
    "batch_api",
    "max_tokens_sized",
    "retries_visible",
    "usage_logged",
    "error_rate",
    "feature_attribution",
    "streaming",
    "context_growth",
    "deprecated_models",
    "budget_configured",
)

# model_mix: target shares of calls (the 80/15/5 rule) and how far Opus may exceed its share.
TARGET_MIX = {"haiku": 0.80, "sonnet": 0.15, "opus": 0.05}
OPUS_WARN, OPUS_FAIL = 0.05, 0.15
# max_tokens_sized: a cap above this multiple of the feature's p99 output is oversized (the p99
# is under 10 % of the cap); more than this share of calls stopped by max_tokens: too tight.
CAP_OVER_P99 = 10.0
TRUNCATED_WARN = 0.02
# error_rate: the checklist's 1 % alert line; above 5 % it fails.
ERROR_WARN, ERROR_FAIL = 0.01, 0.05
# feature_attribution: untagged share of spend.
UNTAGGED_WARN, UNTAGGED_FAIL = 0.05, 0.20
# batch_api: a non-interactive feature with calls this long is batch work for sure.
# streaming: interactive calls longer than this should stream.
STREAM_AFTER_MS = 2000.0
# context_growth: median last-turn / first-turn prompt ratio, and the prompt size that warns.
GROWTH_WARN = 3.0
PROMPT_WARN_TOKENS = 100_000
MIN_TURNS = 3

# What Opus calls are repriced as, for the dollars of the model_mix item.
REPRICE_AS = "claude-sonnet-5-5"


def item_row(
    item: str, category: str, status: str, evidence: str, usd: float | None = None
) -> dict[str, Any]:
    """One row of the audit table (``usd`` is the item's dollars at stake, None when none)."""
    return {
        "item": item,
        "category": category,
        "status": status,
        "evidence": evidence,
        "usd_at_stake": None if usd is None else float(usd),
    }


def _count(n: int, noun: str) -> str:
    """``1 call``, ``2 calls``: the noun agrees with the number."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _seconds(ms: float | None) -> str:
    """A median duration for evidence text; other instrumentations may not record durations."""
    return "duration unknown" if ms is None else f"{ms / 1000:.1f} s"


def _tier() -> pl.Expr:
    model = pl.col("key")
    return (
        pl.when(model.str.contains("haiku"))
        .then(pl.lit("haiku"))
        .when(model.str.contains("sonnet"))
        .then(pl.lit("sonnet"))
        .when(model.str.contains("opus"))
        .then(pl.lit("opus"))
        .alias("tier")
    )


def model_mix_row(models: pl.DataFrame, saving: Any) -> dict[str, Any]:
    """The ``model_mix`` item from calls per model id (``model``, ``calls``, ``key``) and
    ``saving(opus_ids)``: Opus dollars minus the same calls priced as :data:`REPRICE_AS`
    (None when there are no such calls). Called only when Opus exceeds its share."""
    models = models.with_columns(_tier()).filter(pl.col("tier").is_not_null())
    counted = int(models["calls"].sum())
    if counted == 0:
        return item_row("model_mix", "cost", "n/a", "no Haiku, Sonnet or Opus calls")
    shares = {
        t: int(models.filter(pl.col("tier") == t)["calls"].sum()) / counted for t in TARGET_MIX
    }
    opus_ids = models.filter(pl.col("tier") == "opus")["model"].to_list()
    usd = 0.0
    if shares["opus"] > OPUS_WARN:
        # What the Opus calls beyond a 5 % share would have cost on Sonnet 4.5.
        found = saving(opus_ids)
        if found is not None:
            usd = found * (shares["opus"] - OPUS_WARN) / shares["opus"]
    status = "pass"
    if shares["opus"] > OPUS_FAIL:
        status = "fail"
    elif shares["opus"] > OPUS_WARN or shares["haiku"] < 0.5:
        status = "warn"
    evidence = (
        f"calls by tier: Haiku {_pct(shares['haiku'])}, Sonnet {_pct(shares['sonnet'])}, "
        f"Opus {_pct(shares['opus'])} (target 80/15/5)"
    )
    return item_row("model_mix", "cost", status, evidence, usd)


def token_cost() -> pl.Expr:
    """A call's (or an aggregate row's) token dollars: its cost without the server tools' fees,
    which the Batch API does not discount."""
    tools = pl.col("cost_tools_usd").fill_null(0.0)
    return (pl.col("cost_usd") - tools).fill_null(0.0)


def batch_api_row(per: pl.DataFrame, total: float) -> dict[str, Any]:
    """The ``batch_api`` item from per-workload figures of the synchronous generation calls
    (``workload``, ``calls``, ``streams``, ``has_users``, ``batched``, ``cost``, ``p50_ms``)."""
    per = per.filter(~pl.col("streams") & ~pl.col("has_users") & ~pl.col("batched")).sort(
        ["cost", "workload"],
        descending=[True, False],  # names break ties: one order always
    )
    if per.height == 0:
        return item_row(
            "batch_api", "cost", "pass", "every synchronous workload looks interactive", 0.0
        )
    stake = float(per["cost"].sum()) * (1.0 - BATCH_DISCOUNT)
    names = ", ".join(
        f"{r['workload']} (${r['cost']:,.2f}, p50 {_seconds(r['p50_ms'])})"
        for r in per.head(3).iter_rows(named=True)
    )
    status = "fail" if stake >= 0.1 * total else "warn"
    return item_row(
        "batch_api",
        "cost",
        status,
        f"{per.height} non-interactive workloads (no stream, no user ids) on the sync API: "
        f"{names}; the Batch API halves their price",
        stake,
    )


def max_tokens_row(ok_calls: int, per: pl.DataFrame) -> dict[str, Any]:
    """The ``max_tokens_sized`` item from the successful synchronous generation calls: their
    number and, per workload that records its cap, the ``cap``, ``p99`` output and the
    ``truncated`` share and USD of calls cut off at it.

    The Messages API requires max_tokens, so the question is not whether a cap is set but
    whether it fits what the workload uses: a cap more than 10x the p99 output leaves a
    runaway answer unbounded (warn, nothing billed yet); more than 2 % of calls cut off at the
    cap pay for answers that must be asked again (warn; those calls' dollars at stake).
    """
    if ok_calls == 0 or per.height == 0:
        evidence = "no successful generation calls" if ok_calls == 0 else "no cap recorded"
        return item_row("max_tokens_sized", "cost", "n/a", evidence)
    per = per.sort("workload")
    oversized = per.filter(pl.col("cap") > CAP_OVER_P99 * pl.col("p99").clip(lower_bound=1))
    tight = per.filter(pl.col("truncated") > TRUNCATED_WARN)
    notes = [
        f"{r['workload']}: {_pct(r['truncated'])} of calls cut off at max_tokens {r['cap']:,} "
        f"(${r['truncated_usd']:,.2f})"
        for r in tight.iter_rows(named=True)
    ] + [
        f"{r['workload']} caps at {r['cap']:,}, over 10x its p99 output of {r['p99']:,.0f}"
        for r in oversized.iter_rows(named=True)
    ]
    status = "warn" if notes else "pass"
    evidence = (
        "; ".join(notes[:4])
        if notes
        else "every cap is within 10x of its p99 output and cuts off at most 2 % of calls"
    )
    return item_row(
        "max_tokens_sized", "cost", status, evidence, float(tight["truncated_usd"].sum())
    )


def retries_row(
    retried: int, failed: pl.DataFrame, longest_ms: float | None, calls: int
) -> dict[str, Any]:
    """The ``retries_visible`` item: calls resent, failed calls per (``status``,
    ``error_type``, ``http_status``) with their number ``n``, the longest duration."""
    classed = failed.with_columns(pl.col("status", "error_type").cast(pl.String)).with_columns(
        error_class_expr()
    )
    transient = int(
        classed.filter(pl.col("error_class").is_in(["rate_limited", "overloaded"]))["n"].sum()
    )
    timeouts = int(classed.filter(pl.col("error_class") == "timeout")["n"].sum())
    longest = float(longest_ms or 0.0) / 1000.0
    evidence = (
        f"{_count(retried, 'call')} resent ({_pct(retried / calls)}); {transient:,} final "
        f"429/529; {_count(timeouts, 'timeout')} recorded; longest call {longest:,.0f} s"
    )
    if transient and not retried:
        status = "fail"  # transient errors with no resend on record: no retries, or not logged
    elif longest > 600:
        status = "warn"  # a call over ten minutes: no timeout set on some path
    elif not retried and not transient:
        status = "n/a"
    else:
        status = "pass"
    return item_row("retries_visible", "reliability", status, evidence)


def usage_logged_row(ok_calls: int, logged: int) -> dict[str, Any]:
    """The ``usage_logged`` item: successful generation calls, and those with token counts."""
    if ok_calls == 0:
        return item_row("usage_logged", "observability", "n/a", "no successful generation calls")
    share = logged / ok_calls
    status = "pass" if share >= 0.99 else ("warn" if share >= 0.9 else "fail")
    return item_row(
        "usage_logged",
        "observability",
        status,
        f"{_pct(share)} of {ok_calls:,} successful calls carry input and output token counts",
    )


def error_rate_row(failed: int, calls: int, failure: pl.DataFrame) -> dict[str, Any]:
    """The ``error_rate`` item: failed calls of all calls, and the cost-of-failure result."""
    rate = failed / calls
    status = "pass" if rate <= ERROR_WARN else ("warn" if rate <= ERROR_FAIL else "fail")
    usd = float(failure["errored_usd"].sum()) if failure.height else 0.0
    return item_row(
        "error_rate",
        "reliability",
        status,
        f"{failed:,} of {calls:,} calls failed ({_pct(rate)}; alert line 1 %)",
        usd,
    )


def attribution_row(untagged: float, total: float) -> dict[str, Any]:
    """The ``feature_attribution`` item: untagged spend of total spend."""
    share = untagged / total if total > 0 else 0.0
    status = "pass" if share <= UNTAGGED_WARN else ("warn" if share <= UNTAGGED_FAIL else "fail")
    return item_row(
        "feature_attribution",
        "observability",
        status,
        f"${untagged:,.2f} of ${total:,.2f} ({_pct(share)}) of spend has no feature tag",
        untagged,
    )


def streaming_row(per: pl.DataFrame) -> dict[str, Any]:
    """The ``streaming`` item from per-workload figures of the successful synchronous calls
    off the batch tier (``workload``, ``streamed`` share, ``has_users``, ``p50_ms``)."""
    per = per.sort("workload").filter(pl.col("has_users") | (pl.col("streamed") > 0))
    if per.height == 0:
        return item_row("streaming", "performance", "n/a", "no interactive workloads")
    slow = per.filter((pl.col("streamed") < 0.5) & (pl.col("p50_ms") > STREAM_AFTER_MS))
    if slow.height == 0:
        return item_row(
            "streaming",
            "performance",
            "pass",
            f"{per.height} interactive workloads; those slower than 2 s stream",
        )
    names = ", ".join(
        f"{r['workload']} (p50 {_seconds(r['p50_ms'])})" for r in slow.iter_rows(named=True)
    )
    return item_row(
        "streaming", "performance", "warn", f"interactive and not streamed, over 2 s: {names}"
    )


def context_growth_row(per: pl.DataFrame | None) -> dict[str, Any]:
    """The ``context_growth`` item from per-conversation figures of conversations with
    :data:`MIN_TURNS`+ turns (``first``, ``last``, ``peak`` prompt, ``history_usd``); None
    when no successful call names a conversation."""
    if per is None:
        return item_row("context_growth", "cost", "n/a", "no conversation ids recorded")
    if per.height == 0:
        return item_row("context_growth", "cost", "n/a", f"no conversation has {MIN_TURNS}+ turns")
    # median() and max() are typed as any Python scalar; these columns are numeric.
    growth = float(cast(float, (per["last"] / per["first"].clip(lower_bound=1)).median()))
    peak = int(cast(int, per["peak"].max()))
    usd = float(per["history_usd"].sum())
    status = "warn" if growth >= GROWTH_WARN or peak >= PROMPT_WARN_TOKENS else "pass"
    return item_row(
        "context_growth",
        "cost",
        status,
        f"{per.height:,} conversations of {MIN_TURNS}+ turns: median prompt growth "
        f"{growth:.1f}x first to last turn, largest prompt {peak:,} tokens; "
        f"${usd:,.2f} of input spent re-sending history",
        usd,
    )


def deprecated_row(reference: Any, models: pl.DataFrame, table: PriceTable) -> dict[str, Any]:
    """The ``deprecated_models`` item: the latest call time, and per model id (``model``,
    ``calls``, ``key``, ``cost``) of all calls."""
    day = reference.date() if isinstance(reference, dt.datetime) else dt.date.today()
    flagged: dict[str, tuple[str, dt.date]] = {}
    for entry in table.entries:
        for date, label in ((entry.retired_on, "retired"), (entry.deprecated_on, "deprecated")):
            if date is not None and date <= day:
                for key in (entry.id, *entry.aliases):
                    flagged.setdefault(key, (label, date))
                break
    if not flagged:
        return item_row(
            "deprecated_models", "reliability", "pass", "no model in use is deprecated", 0.0
        )
    models = models.filter(pl.col("key").is_in(list(flagged)))
    if models.height == 0:
        return item_row(
            "deprecated_models", "reliability", "pass", "no model in use is deprecated", 0.0
        )
    used = (
        models.group_by(pl.col("key").alias("_key"))
        .agg(pl.col("calls").sum())
        .sort("calls", "_key", descending=[True, False])
    )
    notes = [
        f"{r['_key']} ({flagged[r['_key']][0]} {flagged[r['_key']][1]}, {r['calls']:,} calls)"
        for r in used.iter_rows(named=True)
    ]
    status = "fail" if any(flagged[k][0] == "retired" for k in used["_key"]) else "warn"
    return item_row(
        "deprecated_models",
        "reliability",
        status,
        "; ".join(notes),
        float(models["cost"].sum()),
    )


def budget_row(config: Config | None) -> dict[str, Any]:
    """The budget item's row: whether ``config`` sets a monthly budget."""
    if config is None:
        return item_row("budget_configured", "cost", "n/a", "no configuration given")
    if config.budget.monthly_usd is None:
        return item_row(
            "budget_configured",
            "cost",
            "warn",
            "no [budget] monthly_usd: spend is not checked against a budget",
        )
    lines = ", ".join(f"{t:.0%}" for t in config.budget.thresholds)
    return item_row(
        "budget_configured",
        "cost",
        "pass",
        f"monthly budget ${config.budget.monthly_usd:,.0f}, alerts at {lines}, "
        f"{len(config.budget.features)} feature budgets",
    )


def prompt_caching_row(results: Mapping[str, pl.DataFrame], total: float) -> dict[str, Any]:
    """The prompt-caching item's row from the cache jobs' results (``cache_economics`` by any
    keys, its rows summed, and ``caching_candidates``) and the period's total spend."""
    candidates = results["caching_candidates"]
    economics = results["cache_economics"]
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
