"""Cost attribution: who spent what, grouped by feature, model, service, environment, user or
code location (issue 2).

The finishing functions here are pure: a rollup of the ``calls`` of a source
(:func:`clauditor.analytics.rollup.rollup_on`) in, a table out.

Conventions every caller can rely on:

* ``model`` is what answered the call, ``coalesce(response_model, request_model)``, as its
  canonical undated id (``claude-sonnet-4-5-20250929`` and ``claude-sonnet-4-5`` are one model:
  see :func:`clauditor.pricing.normalize_model_id`); ``user`` is ``user_id``. A NULL (or
  empty) key is shown as ``(untagged)`` for ``feature`` and ``(none)`` for every other key,
  so untagged spend is a row of its own and never disappears.
* A call with no price (its model is not in the price table) has ``cost_usd`` NULL. Groups count
  such calls in ``unpriced_calls``; a group made only of unpriced calls has ``cost_usd`` NULL,
  never 0, so "free" and "unknown" cannot be confused.
* ``share`` is a group's fraction of the priced total of the frame given, so shares of the
  priced groups add up to 1.
* ``calls`` leaves out ``count_tokens`` calls (free, not generations); they are counted apart in
  ``count_tokens_calls``, so cost per call is spend over the calls that could cost something.
* ``tools_usd`` is the server tools' part of ``cost_usd`` (web search fees; ``cost_tools_usd``
  summed, NULL when no call of the group has it) and ``web_searches`` the web search requests
  the group's calls made (``web_search_requests`` summed, 0 when none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from clauditor.pricing import model_key_expr
from clauditor.schema import CLAUDE_CODE_SOURCE, SOURCES, TOKEN_COLUMNS

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "APP_SOURCES",
    "GROUP_KEYS",
    "NO_KEY",
    "UNTAGGED",
    "SourceFilter",
    "check_keys",
    "cost_breakdown_from_hours",
    "free_call_expr",
    "group_key_expr",
    "keys_as_strings",
    "restrict_to_sources",
    "spend_by_day_from_hours",
    "with_group_keys",
]

GROUP_KEYS = ("feature", "model", "service", "environment", "user", "code_location")
UNTAGGED = "(untagged)"
NO_KEY = "(none)"

# The calls columns each group key is computed from.
_KEY_SOURCES: dict[str, tuple[str, ...]] = {
    "feature": ("feature",),
    "model": ("response_model", "request_model"),
    "service": ("service",),
    "environment": ("environment",),
    "user": ("user_id",),
    "code_location": ("code_location",),
}


# Columns a prepared frame (:func:`clauditor.analytics.frame.prepare_calls`) carries: the group
# key already computed, named ``_key_<key>``.
PREPARED_KEY = "_key_"


def _present(name: str) -> pl.Expr:
    """Column ``name`` with empty strings read as NULL (an empty tag is no tag).

    ``replace`` rather than a string function, so that Categorical columns work too.
    """
    return pl.col(name).replace("", None)


def group_key_expr(key: str) -> pl.Expr:
    """The expression computing group key ``key`` (one of :data:`GROUP_KEYS`), aliased ``key``.

    NULL keys become ``(untagged)`` for ``feature`` and ``(none)`` otherwise. The frame must hold
    the key's source columns (a rollup carries those of its keys); they may be
    String or Categorical. The result has the source's type (String or Categorical). The
    ``model`` key normalizes ids with regular expressions, so it is computed once per DISTINCT
    id and mapped onto the rows rather than evaluated on every row.
    """
    check_keys([key])
    sources = _KEY_SOURCES[key]
    value = (
        pl.coalesce([_present(c) for c in sources]) if len(sources) > 1 else _present(sources[0])
    )
    if key == "model":
        ids = value.unique(maintain_order=True).cast(pl.String)  # one order for old and new
        value = value.cast(pl.String).replace_strict(
            ids, model_key_expr(ids), default=None, return_dtype=pl.String
        )
    return value.fill_null(UNTAGGED if key == "feature" else NO_KEY).alias(key)


def with_group_keys(
    calls: pl.DataFrame | pl.LazyFrame, by: Sequence[str], *, prefix: str = ""
) -> pl.LazyFrame:
    """``calls`` (lazily) with one column per group key of ``by``, as :func:`group_key_expr`
    computes it, named ``<prefix><key>``.

    A prepared frame's ``_key_<key>`` columns are reused rather than recomputed. The key
    columns may be Categorical: aggregate on them, then :func:`keys_as_strings` on the (small)
    result so that callers always see String keys.
    """
    lf = calls.lazy()
    have = set(lf.collect_schema().names())
    exprs = [
        (pl.col(PREPARED_KEY + k) if PREPARED_KEY + k in have else group_key_expr(k)).alias(
            prefix + k
        )
        for k in by
    ]
    return lf.with_columns(exprs) if exprs else lf


def keys_as_strings(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """``frame`` with the ``keys`` columns cast to String (Categorical keys of a prepared frame
    must not leak into job results)."""
    return frame.with_columns([pl.col(k).cast(pl.String) for k in keys]) if keys else frame


def check_keys(by: Sequence[str]) -> None:
    """Raise :class:`ValueError` for a key not in :data:`GROUP_KEYS`, a repeated key, or a
    string given where a sequence of keys belongs."""
    if isinstance(by, str):
        raise ValueError(f"group keys must be a sequence like [{by!r}], not a string")
    unknown = [k for k in by if k not in GROUP_KEYS]
    if unknown:
        raise ValueError(
            f"unknown group key(s) {unknown}; group by any of: {', '.join(GROUP_KEYS)}"
        )
    if len(set(by)) != len(by):
        raise ValueError(f"group keys repeat: {list(by)}")


def _priced_sum(column: str = "cost_usd") -> pl.Expr:
    """Sum of the non-NULL costs, or NULL when every cost in the group is NULL."""
    return pl.when(pl.col(column).count() > 0).then(pl.col(column).sum()).otherwise(None)


def free_call_expr() -> pl.Expr:
    """True for a ``count_tokens`` call: free, kept as a row, left out of call counts, cost per
    call, error rates and latency, and counted on a line of its own."""
    return (pl.col("operation").cast(pl.String) == "count_tokens").fill_null(False)


def _tool_sums() -> list[pl.Expr]:
    """``tools_usd`` and ``web_searches`` of a group, from calls or from a rollup
    (whose rows carry the same two columns summed per hour: the sums are the same)."""
    return [
        _priced_sum("cost_tools_usd").alias("tools_usd"),
        pl.col("web_search_requests").sum().cast(pl.Int64).alias("web_searches"),
    ]


def _breakdown_table(grouped: pl.LazyFrame, by: Sequence[str]) -> pl.DataFrame:
    """The grouped sums of :func:`cost_breakdown_from_hours` with their share of the total,
    in the table's column order and sort."""
    total = pl.col("cost_usd").sum()
    columns = [
        *by, "calls", *TOKEN_COLUMNS, "cost_usd", "share", "unpriced_calls", "tools_usd",
        "web_searches", "count_tokens_calls",
    ]  # fmt: skip
    return (
        grouped.with_columns(
            pl.when(total > 0).then(pl.col("cost_usd") / total).otherwise(None).alias("share")
        )
        .select(columns)
        .with_columns([pl.col(k).cast(pl.String) for k in by])
        .sort(
            ["cost_usd", "calls", *by],
            descending=[True, True, *([False] * len(by))],
            nulls_last=True,
        )
        .collect()
    )


@dataclass(frozen=True)
class SourceFilter:
    """Which sources' calls a job sees: ``only`` these (None: every source) minus ``without``.

    Names must be of :data:`clauditor.schema.SOURCES` (else :class:`ValueError`), so the SQL
    predicate is built from known names only. :data:`APP_SOURCES` is the app's own calls:
    every source but ``claude-code`` (developers' Claude Code usage, kept apart).
    """

    only: tuple[str, ...] | None = None
    without: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [s for s in (*(self.only or ()), *self.without) if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; known: {', '.join(SOURCES)}")

    def sql(self) -> str:
        """The predicate on ``source`` (``TRUE`` when every call passes)."""
        parts = []
        if self.only is not None:
            parts.append(f"source IN ({', '.join(_quoted(s) for s in self.only) or 'NULL'})")
        if self.without:
            listed = ", ".join(_quoted(s) for s in self.without)
            parts.append(f"(source IS NULL OR source NOT IN ({listed}))")
        return " AND ".join(parts) or "TRUE"

    def admits(self, source: str) -> bool:
        """Whether calls of ``source`` pass."""
        return (self.only is None or source in self.only) and source not in self.without


def _quoted(source: str) -> str:
    return "'" + source.replace("'", "''") + "'"  # names of SOURCES only (checked on creation)


APP_SOURCES = SourceFilter(without=(CLAUDE_CODE_SOURCE,))


def restrict_to_sources(con: duckdb.DuckDBPyConnection, sources: SourceFilter | None) -> None:
    """Make ``calls`` on ``con`` show only the calls ``sources`` admits, for every statement
    run on it after this: a temporary view of that name shadows the table, so the jobs' SQL is
    filtered before it runs, unchanged. A cursor of ``con`` is a session of its own and sees
    the table (:meth:`clauditor.analytics.engine.DuckDBEngine.fork` repeats the view on it)."""
    if sources is None or sources == SourceFilter():
        return
    database = con.sql("SELECT current_database()").fetchall()[0][0]
    table = '"' + str(database).replace('"', '""') + '".main.calls'
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW calls AS SELECT * FROM {table} WHERE {sources.sql()}"
    ).fetchall()


def cost_breakdown_from_hours(hours: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Spend, calls and tokens per group of ``by`` keys (any of :data:`GROUP_KEYS`), from a
    rollup (:func:`clauditor.analytics.rollup.rollup_on`) carrying the raw columns of ``by``
    (``calls``/``_priced`` count the calls of a row).

    Columns: ``*by, calls, input_tokens, output_tokens, cache_read_input_tokens,
    cache_creation_input_tokens, cost_usd, share, unpriced_calls, tools_usd, web_searches,
    count_tokens_calls`` (see the module docstring); sorted by ``cost_usd`` descending (NULL
    last), then calls. ``by=[]`` gives one row for the whole rollup. Raises
    :class:`ValueError` listing :data:`GROUP_KEYS` for an unknown key.
    """
    by = list(by)
    check_keys(by)
    lf = with_group_keys(hours, by)
    free = free_call_expr()
    aggs = [
        pl.col("calls").filter(~free).sum().cast(pl.Int64).alias("calls"),
        *[pl.col(c).sum().cast(pl.Int64).alias(c) for c in TOKEN_COLUMNS],
        pl.when(pl.col("_priced").sum() > 0).then(pl.col("cost_usd").sum()).alias("cost_usd"),
        (pl.col("calls") - pl.col("_priced")).sum().cast(pl.Int64).alias("unpriced_calls"),
        *_tool_sums(),
        pl.col("calls").filter(free).sum().cast(pl.Int64).alias("count_tokens_calls"),
    ]
    grouped = lf.group_by(by).agg(aggs) if by else lf.select(aggs)
    return _breakdown_table(grouped, by)


def spend_by_day_from_hours(
    hours: pl.DataFrame, *, tz: str = "UTC", by: str = "feature"
) -> pl.DataFrame:
    """Spend per calendar day (in ``tz``) and per value of the group key ``by``, from a rollup
    at the grain of ``tz`` (:func:`clauditor.analytics.rollup.grain_for`: no slot straddles
    two local days).

    Columns: ``day`` (a Date in ``tz``), the key column named ``by`` (e.g. ``feature``),
    ``calls``, ``cost_usd`` (NULL when that day's calls of that key are all unpriced),
    ``unpriced_calls``. Sorted by day, then cost descending. Days without calls are absent.
    """
    check_keys([by])
    return (
        with_group_keys(hours, [by])
        .with_columns(pl.col("slot").dt.convert_time_zone(tz).dt.date().alias("day"))
        .group_by("day", by)
        .agg(
            pl.col("calls").sum().cast(pl.Int64),
            pl.when(pl.col("_priced").sum() > 0).then(pl.col("cost_usd").sum()).alias("cost_usd"),
            (pl.col("calls") - pl.col("_priced")).sum().cast(pl.Int64).alias("unpriced_calls"),
        )
        .with_columns(pl.col(by).cast(pl.String))
        .sort(["day", "cost_usd", by], descending=[False, True, False], nulls_last=True)
        .collect()
    )
