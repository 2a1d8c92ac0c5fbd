"""The cost of failure: dollars that were billed and bought nothing, or less than asked for.

Only billed dollars count, per group:

* ``errored_usd``: the billed cost of calls that failed — a stream that broke after
  generating, say. A request Anthropic rejects (429, 529) is not billed: its cost is $0 and
  it adds nothing here;
* ``truncated_usd``: the cost of calls cut off by ``max_tokens`` (``stop_reason =
  'max_tokens'``); the answer was incomplete, so the call often has to be repeated;
* ``abandoned_usd``: the cost of streams the app closed or dropped before their end (a
  streamed call that did not fail and has no stop reason): the tokens generated until then
  were billed, the answer was never read to its end.

Resends are counted (``retries``), not priced: telemetry records the final attempt's usage
only, and most resends follow a rejection that was never billed, so any dollar figure for them
would be a guess. Their cost in time shows in the latency of the calls that needed them.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from clauditor.analytics.costs import free_call_expr, with_group_keys
from clauditor.analytics.errors import failed_expr

__all__ = ["cost_of_failure_from_hours"]


def _failure_table(grouped: pl.LazyFrame, by: list[str]) -> pl.DataFrame:
    """Total failure dollars and their share of spend, from the per-group sums."""
    failure = pl.col("errored_usd") + pl.col("truncated_usd") + pl.col("abandoned_usd")
    return (
        grouped.with_columns(failure.alias("failure_usd"), *[pl.col(k).cast(pl.String) for k in by])
        .with_columns(
            pl.when(pl.col("cost_usd") > 0)
            .then(pl.col("failure_usd") / pl.col("cost_usd"))
            .alias("failure_share")
        )
        .sort(["failure_usd", *by], descending=[True, *([False] * len(by))])
        .collect()
    )


def cost_of_failure_from_hours(
    hours: pl.DataFrame, *, by: Sequence[str] = ("feature",)
) -> pl.DataFrame:
    """Dollars lost to errors, resends and truncation per group of ``by`` keys, from a rollup
    (:func:`clauditor.analytics.rollup.rollup_on`).

    Columns: ``*by``, ``calls``, ``cost_usd``, ``errored_calls``, ``errored_usd``,
    ``retries`` (resends, counted), ``truncated_calls``, ``truncated_usd``,
    ``abandoned_calls``, ``abandoned_usd``, ``failure_usd`` (errored, truncated and abandoned
    dollars), ``failure_share`` (of ``cost_usd``);
    sorted by ``failure_usd`` descending. Unpriced calls count as $0 here.
    """
    by = list(by)
    cost = pl.col("cost_usd").fill_null(0.0)
    failed = failed_expr()
    lf = with_group_keys(hours, by)
    aggs = [
        pl.col("calls").filter(~free_call_expr()).sum().cast(pl.Int64).alias("calls"),
        cost.sum().alias("cost_usd"),
        pl.col("calls").filter(failed).sum().cast(pl.Int64).alias("errored_calls"),
        cost.filter(failed).sum().alias("errored_usd"),
        pl.col("retries").sum().cast(pl.Int64).alias("retries"),
        pl.col("_truncated").sum().cast(pl.Int64).alias("truncated_calls"),
        pl.col("_truncated_usd").sum().alias("truncated_usd"),
        pl.col("_abandoned").filter(~failed).sum().cast(pl.Int64).alias("abandoned_calls"),
        pl.col("_abandoned_usd").filter(~failed).sum().alias("abandoned_usd"),
    ]
    grouped = lf.group_by(by).agg(aggs) if by else lf.select(aggs)
    return _failure_table(grouped, by)
