"""The analytics frame: calls loaded lean and prepared once, for the few figures that need
calls rather than a rollup (the audit's conversations, :mod:`clauditor.analytics.audit_figures`)
and for the rollup's derived keys (:func:`model_keys`, :func:`prepare_calls`).

Over many rows, two things dominate the cost of reading calls: moving strings from DuckDB into
Polars, and re-deriving the same keys (the canonical model id, the feature shown as
``(untagged)``). This module removes both:

* :func:`analytics_frame_from` reads only the columns asked for (default :data:`ANALYTICS_COLUMNS`;
  never ``attributes``/``resource``), and no string crosses from DuckDB row by row: each
  low-cardinality string column is sent as a small integer code (its position in the list of
  the period's distinct values) and turned into a Polars ``Categorical`` by a gather. Columns
  with more than :data:`MAX_CODED` distinct values are read as strings and made Categorical.
* ``user_id`` and ``conversation_id`` (one value per end user, per conversation: too many to
  code) are replaced by what the jobs need of them: ``_has_user`` (Boolean) and
  ``_conversation`` (a 64-bit hash, NULL when there is no id). Ask for them by name in
  ``columns`` when a caller needs the values.
* Derived keys are computed once, on the few DISTINCT values rather than on every row, and
  carried as columns that the jobs reuse when present (see :data:`DERIVED_COLUMNS`).

:func:`prepare_calls` adds the same derived columns to any calls frame (tests, callers that
loaded calls themselves). Job results are identical on a plain and on a prepared frame; only
the time they take differs. Group keys of job results are always String.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import polars as pl

from clauditor.analytics.costs import (
    NO_KEY,
    PREPARED_KEY,
    UNTAGGED,
)
from clauditor.analytics.periods import Period
from clauditor.pricing import model_key_expr
from clauditor.schema import CALLS_SCHEMA

__all__ = [
    "ANALYTICS_COLUMNS",
    "DERIVED_COLUMNS",
    "MAX_CODED",
    "analytics_frame_from",
    "model_keys",
    "prepare_calls",
]

# The calls columns the jobs read (user_id and conversation_id come as _has_user and
# _conversation unless asked for by name).
ANALYTICS_COLUMNS = (
    "start_time", "duration_ms", "ttft_ms", "feature", "code_location", "operation",
    "request_model", "response_model", "max_tokens", "stream", "service_tier", "input_tokens",
    "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_creation_5m_input_tokens", "cache_creation_1h_input_tokens", "inference_geo", "speed",
    "stop_reason", "status", "http_status", "error_type",
    "retries", "cost_usd", "cost_input_usd", "cost_output_usd", "cost_cache_read_usd",
    "cost_cache_write_usd", "cost_tools_usd", "cache_ttl_assumed", "rate_input", "rate_output",
    "rate_cache_read", "rate_cache_write_5m", "rate_cache_write_1h", "web_search_requests",
)  # fmt: skip

# Derived columns a prepared frame carries, and what they hold.
DERIVED_COLUMNS = {
    PREPARED_KEY + "feature": "the feature group key: NULL or empty is '(untagged)'",
    PREPARED_KEY + "model": "the model group key: canonical id of coalesce(response, request)",
    "_model_id": "coalesce(response_model, request_model) as recorded",
    "_has_user": "user_id is not NULL",
    "_conversation": "hash of conversation_id; NULL without one",
}

# A string column with at most this many distinct values in the period is sent as codes.
MAX_CODED = 1024

_STRING_COLUMNS = {name for name, dtype in CALLS_SCHEMA.items() if dtype == pl.String}


def model_keys(ids: list[str]) -> list[str]:
    """The model group key of each distinct (non-empty) model id."""
    frame = pl.DataFrame({"id": ids}, schema={"id": pl.String})
    return frame.select(model_key_expr("id").fill_null(NO_KEY))["id"].to_list()


def prepare_calls(calls: pl.DataFrame) -> pl.DataFrame:
    """``calls`` with the derived columns of :data:`DERIVED_COLUMNS` added (existing ones kept).

    The frame needs ``feature``, ``request_model`` and ``response_model``; ``user_id`` and
    ``conversation_id`` give ``_has_user`` and ``_conversation`` when present. Jobs given the
    result compute their keys from these columns instead of from the raw ones.
    """
    have = set(calls.columns)
    raw_model = pl.coalesce(
        pl.col("response_model").replace("", None), pl.col("request_model").replace("", None)
    )
    ids = calls.select(raw_model.unique().cast(pl.String).alias("id"))["id"].drop_nulls()
    keys = model_keys(ids.to_list())
    exprs: list[pl.Expr] = []
    if PREPARED_KEY + "feature" not in have:
        exprs.append(
            pl.col("feature").replace("", None).fill_null(UNTAGGED).alias(PREPARED_KEY + "feature")
        )
    if PREPARED_KEY + "model" not in have:
        exprs.append(
            raw_model.cast(pl.String)
            .replace_strict(ids, keys, default=NO_KEY, return_dtype=pl.String)
            .alias(PREPARED_KEY + "model")
        )
    if "_model_id" not in have:
        exprs.append(pl.coalesce("response_model", "request_model").alias("_model_id"))
    if "_has_user" not in have and "user_id" in have:
        exprs.append(pl.col("user_id").is_not_null().alias("_has_user"))
    if "_conversation" not in have and "conversation_id" in have:
        conversation = pl.col("conversation_id")
        exprs.append(
            pl.when(conversation.is_not_null()).then(conversation.hash()).alias("_conversation")
        )
    return calls.with_columns(exprs) if exprs else calls


def _coded(
    name: str, sql: str, values: list[str], null_as: str | None, transform: Any = None
) -> tuple[str, list[Any], pl.Series]:
    """SELECT item, its parameter, and the dictionary for a coded column.

    Code 0 is NULL (shown as ``null_as``); code i is ``values[i - 1]`` (after ``transform``).
    """
    shown = transform(values) if transform else values
    dictionary = pl.Series(name, [null_as, *shown], dtype=pl.String).cast(pl.Categorical)
    width = "UTINYINT" if len(values) < 255 else "USMALLINT"
    return f"CAST(coalesce(list_position(?, {sql}), 0) AS {width}) AS {name}", [values], dictionary


def analytics_frame_from(
    con: duckdb.DuckDBPyConnection,
    period: Period | None = None,
    *,
    columns: Sequence[str] | None = None,
    where: str | None = None,
) -> pl.DataFrame:
    """The calls of ``period`` (None: every call) on an open connection, with ``columns``
    (default :data:`ANALYTICS_COLUMNS`; unknown names raise :class:`ValueError`), lean and
    prepared: strings Categorical, and the :data:`DERIVED_COLUMNS`.

    ``where`` (trusted SQL from clauditor's own code, never user input) limits the calls
    further, e.g. to the cached calls the cache job follows one by one.
    """
    wanted = list(ANALYTICS_COLUMNS if columns is None else columns)
    unknown = [c for c in wanted if c not in CALLS_SCHEMA]
    if unknown:
        raise ValueError(f"unknown calls column(s) {unknown}")
    table = {row[0] for row in con.execute("DESCRIBE calls").fetchall()}
    wanted = [c for c in wanted if c in table]  # a trimmed table (benchmarks) lacks a few
    where_sql, where, params = where, "", []
    if period is not None:
        where, params = " WHERE start_time >= ? AND start_time < ?", [period.start, period.end]
    if where_sql is not None:
        where = f"{where} AND ({where_sql})" if where else f" WHERE ({where_sql})"
    needs_models = {"request_model", "response_model"} <= set(ANALYTICS_COLUMNS) | set(wanted)
    # Every string to code: (output name, SQL expression, NULL shown as, transform).
    coded: list[tuple[str, str, str | None, Any]] = [
        (c, c, None, None) for c in wanted if c in _STRING_COLUMNS
    ]
    coded.append((PREPARED_KEY + "feature", "nullif(feature, '')", UNTAGGED, None))
    if needs_models:
        coded.append(
            (
                PREPARED_KEY + "model",
                "coalesce(nullif(response_model, ''), nullif(request_model, ''))",
                NO_KEY,
                model_keys,
            )
        )
        coded.append(("_model_id", "coalesce(response_model, request_model)", None, None))
    distinct_sql = ", ".join(
        f"list(DISTINCT {sql}) FILTER ({sql} IS NOT NULL)" for _, sql, _, _ in coded
    )
    distinct = con.execute(f"SELECT {distinct_sql} FROM calls{where}", params).fetchall()[0]
    items, item_params, dictionaries = [], [], {}
    for (name, sql, null_as, transform), values in zip(coded, distinct, strict=True):
        values = sorted(values or [])
        if len(values) > MAX_CODED:
            items.append(f"{sql} AS {name}")
            continue
        item, param, dictionary = _coded(name, sql, values, null_as, transform)
        items.append(item)
        item_params += param
        dictionaries[name] = dictionary
    coded_names = {name for name, *_ in coded}
    items += [c for c in wanted if c not in coded_names]
    if "user_id" not in wanted:
        items.append("user_id IS NOT NULL AS _has_user")
    if "conversation_id" not in wanted:
        items.append(
            "CASE WHEN conversation_id IS NOT NULL THEN hash(conversation_id) END AS _conversation"
        )
    frame = con.sql(
        f"SELECT {', '.join(items)} FROM calls{where}", params=item_params + params
    ).pl()
    decode: list[pl.Series | pl.Expr] = []
    for name in coded_names:
        if name in dictionaries:
            decode.append(dictionaries[name].gather(frame[name]).alias(name))
        else:  # too many values to code: read as strings
            decode.append(pl.col(name).cast(pl.Categorical))
    if "start_time" in frame.columns:
        decode.append(pl.col("start_time").dt.convert_time_zone("UTC"))
    frame = frame.with_columns(decode)
    if "user_id" in wanted:
        frame = frame.with_columns(pl.col("user_id").is_not_null().alias("_has_user"))
    if "conversation_id" in wanted:
        frame = prepare_calls(frame)  # adds _conversation from the values
    return frame
