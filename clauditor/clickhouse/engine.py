"""The analytics engine on ClickHouse: :class:`ClickHouseEngine`, every reduction of
:class:`clauditor.analytics.engine.Engine` in ClickHouse SQL over ``<db>.calls``.

The runner (:mod:`clauditor.analytics.runner`) and the jobs' Polars finishing run unchanged on
what these reductions return: each gives the frame :class:`~clauditor.analytics.engine.DuckDBEngine`
gives (same columns, same dtypes — cast to the DuckDB engine's own result over no calls), and
the tests hold every job equal on the same calls.

Decisions:

* **One row per call**: ``calls`` is a ``ReplacingMergeTree`` (:mod:`.ddl`); every statement
  reads ``calls FINAL`` (with ``do_not_merge_across_partitions_select_final``: the table merges
  within a month partition only, so FINAL need not look across them). The source filter
  (default: developers' Claude Code calls kept apart) is applied after FINAL.
* **Exact quantiles**: ``quantileExactInclusive`` / ``quantilesExactInclusive`` (the linear
  interpolation of DuckDB's ``quantile_cont`` and of Polars), never ClickHouse's sampling
  ``quantile``; the discrete 10th percentile of the caching candidates is the sorted values'
  element ``floor((n - 1) q)``, as DuckDB's ``quantile_disc`` picks it. A group with no values
  gives NULL, as DuckDB does.
* **Local buckets** (latency per day): each 15-minute UTC slot is mapped to its local bucket
  once in Polars (:func:`clauditor.analytics.rollup.bucket_lookup`) and ClickHouse reads a
  call's bucket from that array, so any zone — whole hours or not — cuts days as DuckDB does.
  The rollup itself is in UTC slots; the runner cuts local days from them.
* **Times as integers**: the period bounds are passed as epoch microseconds and turned into
  ``DateTime64`` by ``fromUnixTimestamp64Micro`` (constant-folded, so month partitions are
  skipped), never as formatted strings whose zone a driver might reinterpret.
* **Group keys in SQL**: the feature key and the model key (``transform`` over the distinct
  model ids and their keys, from the rollup) are computed per call; DuckDB's hash-of-raw-columns
  shortcut is a DuckDB optimization, not part of the results.
* **Threads**: :meth:`ClickHouseEngine.fork` shares the client and a lock (one statement at a
  time per client: a clickhouse-connect session and chDB both serialize statements).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import polars as pl

from clauditor.analytics.audit_figures import audit_figures_with
from clauditor.analytics.cache_sequence import (
    caching_candidates_with,
    economics_from_terms,
    features_sql,
)
from clauditor.analytics.costs import APP_SOURCES, NO_KEY, UNTAGGED, SourceFilter
from clauditor.analytics.frame import ANALYTICS_COLUMNS, prepare_calls
from clauditor.analytics.periods import Period
from clauditor.analytics.rollup import (
    EXTRA_KEY_COLUMNS,
    FAILED_SQL,
    GRAINS,
    RAW_KEYS,
    READ_SQL,
    U_1H_SQL,
    U_5M_SQL,
    U_IN_SQL,
    U_READ_SQL,
    W1H_SQL,
    W5M_SQL,
    WRITE_SQL,
    bucket_lookup,
    extra_key_columns,
    model_mapping,
)
from clauditor.analytics.spend_notes import MIN_CONTAINER_S, SpendNotes, spend_notes_from
from clauditor.clickhouse.client import ClickHouse, ClickHouseError, connect
from clauditor.clickhouse.view import CALL_KEY, SOURCE_PREFERENCE
from clauditor.config import Config
from clauditor.pricing import PriceTable
from clauditor.schema import CALLS_SCHEMA, SOURCES

__all__ = ["ClickHouseEngine", "claude_code_totals", "clickhouse_spend_notes", "insert_calls"]

_UTC = pl.Datetime("us", "UTC")
_MICROS = "toUnixTimestamp64Micro(start_time)"
_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}


_UNPRICED_RUNS_SQL = """
SELECT model, run, min(t) AS first, max(t) AS last, toInt64(count()) AS calls
FROM (
    SELECT model, t, sum(brk) OVER (PARTITION BY model ORDER BY t
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
    FROM (
        SELECT model, t, toInt64(t - lagInFrame(t, 1, t) OVER (PARTITION BY model ORDER BY t
            ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) > {gap:Int64}) AS brk
        FROM (
            SELECT coalesce(response_model, request_model, '(no model)') AS model,
                toUnixTimestamp64Micro(start_time) AS t
            FROM {calls}{where}
        )
    )
)
GROUP BY model, run ORDER BY first, model
"""


def _where(period: Period | None, *conditions: str) -> tuple[str, dict[str, Any]]:
    """`` WHERE ...`` of ``conditions`` and the period (parameters ``start``, ``end``)."""
    parts, params = [c for c in conditions if c], {}
    if period is not None:
        parts.append(
            "start_time >= fromUnixTimestamp64Micro({start:Int64}, 'UTC') "
            "AND start_time < fromUnixTimestamp64Micro({end:Int64}, 'UTC')"
        )
        params = {"start": _micros(period.start), "end": _micros(period.end)}
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def _micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


_FKEY = f"coalesce(nullIf(feature, ''), '{UNTAGGED}')"
_MODEL = "coalesce(nullIf(response_model, ''), nullIf(request_model, ''))"
_MKEY = (
    f"if({_MODEL} IS NULL, '{NO_KEY}', "
    f"transform(assumeNotNull({_MODEL}), {{ids:Array(String)}}, {{keys:Array(String)}}, "
    f"'{NO_KEY}'))"
)


def _key_sql(key: str) -> str:
    """SQL of one group key of a call, as :func:`~clauditor.analytics.costs.group_key_expr`."""
    if key == "feature":
        return _FKEY
    if key == "model":
        return _MKEY
    return f"coalesce(nullIf({EXTRA_KEY_COLUMNS[key]}, ''), '{NO_KEY}')"


def _model_params(hours: pl.DataFrame) -> dict[str, Any]:
    ids, keys = model_mapping(hours)
    return {"ids": ids, "keys": [k if k is not None else NO_KEY for k in keys]}


# Aggregates are aliased _s_<name> (ClickHouse aliases shadow columns in the same SELECT).
_ROLLUP_SQL = """
SELECT intDiv(toUnixTimestamp64Micro(start_time), <grain_us>) AS _slot,
    start_time < fromUnixTimestamp64Micro({as_of:Int64}, 'UTC') AS _before,
    min(start_time) AS _s_start_time, feature, request_model, response_model, operation,
    status, error_type, http_status,
    CASE WHEN coalesce(feature, '') = '' THEN code_location END AS _location, stream,
    user_id IS NOT NULL AS _has_user, service_tier, max_tokens IS NOT NULL AS _capped,
    max(max_tokens) AS _cap,<extra>
    count() AS calls, count(cost_usd) AS _priced, sum(cost_usd) AS _s_cost_usd,
    sum(cost_tools_usd) AS _s_cost_tools_usd, sum(web_search_requests) AS _s_web_search_requests,
    sum(input_tokens) AS _s_input_tokens, sum(output_tokens) AS _s_output_tokens,
    sum(cache_read_input_tokens) AS _s_cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS _s_cache_creation_input_tokens,
    sum(coalesce(retries, 0)) AS _s_retries, countIf(coalesce(retries, 0) > 0) AS _retried,
    countIf(coalesce(stop_reason = 'max_tokens', false)) AS _truncated,
    coalesce(sumIf(cost_usd, coalesce(stop_reason = 'max_tokens', false)), 0.0)
        AS _truncated_usd,
    countIf(coalesce(stream, false) AND stop_reason IS NULL) AS _abandoned,
    coalesce(sumIf(cost_usd, coalesce(stream, false) AND stop_reason IS NULL), 0.0)
        AS _abandoned_usd,
    sum(coalesce(cost_input_usd, 0.0)) AS _input_usd, max(duration_ms) AS _max_duration_ms,
    countIf(coalesce(input_tokens, 0) + coalesce(cache_read_input_tokens, 0)
        + coalesce(cache_creation_input_tokens, 0) > 0 AND output_tokens IS NOT NULL)
        AS _usage_logged,
    max(start_time) AS _end_time
FROM {calls}{where}
GROUP BY ALL
"""

_INT_SUMS = (
    "calls", "_priced", "input_tokens", "output_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "retries", "_retried", "_truncated", "_usage_logged",
    "web_search_requests", "_abandoned",
)  # fmt: skip

_MINUTES_SQL = """
SELECT intDiv(toUnixTimestamp64Micro(start_time), 60000000) AS bucket, status, error_type,
    http_status, count() AS calls
FROM {calls}{where}
GROUP BY ALL
"""

_QUANTILES = "quantilesExactInclusive(0.5, 0.95, 0.99)"
_LATENCY_SQL = f"""
SELECT {{outer}}count() AS calls, {_QUANTILES}(duration_ms) AS _d,
    count(duration_ms) AS _nd, count(ttft_ms) AS streamed_calls, {_QUANTILES}(ttft_ms) AS _t
FROM (SELECT {{bucket}} AS _b, {{keys}}duration_ms, ttft_ms FROM {{calls}}{{where}}){{group}}
"""

_US_5M, _US_1H = 300_000_000, 3_600_000_000

# analytics.cache_sequence's sequence: the next read after each write and the previous cached
# call, per feature and model as recorded, ordered by time. DuckDB's lag and first_value
# IGNORE NULLS are here the max of the preceding times and the min of the later read times
# (the rows are ordered by time, so they are the same numbers). The later reads are the rows
# *preceding* in descending time: ClickHouse adds rows to a frame that starts at UNBOUNDED
# PRECEDING one by one, but recomputes a frame ending at UNBOUNDED FOLLOWING for every row
# (measured 40x slower on 2M calls).
_SEQUENCE_SQL = f"""
WITH c AS (
    SELECT {{raw}}, feature AS _g1, coalesce(response_model, request_model) AS _g2,
        toNullable(toUnixTimestamp64Micro(start_time)) AS t,
        {READ_SQL} AS rd, {WRITE_SQL} AS wr, {W5M_SQL} AS w5, {W1H_SQL} AS w1,
        {U_IN_SQL} AS u, {U_READ_SQL} AS ur, {U_5M_SQL} AS u5, {U_1H_SQL} AS u1,
        cost_cache_write_usd
    FROM {{calls}}{{where}}
), s AS (
    SELECT *,
        min(if(rd > 0, t, NULL)) OVER (PARTITION BY _g1, _g2 ORDER BY t DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) - t AS to_read,
        t - max(t) OVER (PARTITION BY _g1, _g2 ORDER BY t
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS gap,
        w5 > 0 AND coalesce(to_read > {_US_5M}, true) AS unread5,
        w1 > 0 AND coalesce(to_read > {_US_1H}, true) AS unread1,
        rd + wr AS prefix
    FROM c
)
SELECT {{raw_names}},
    sum(coalesce(rd * (u - ur), 0.0) - coalesce(w5 * (u5 - u) + w1 * (u1 - u), 0.0)) AS _saved,
    sum(coalesce(cost_cache_write_usd, 0.0)) AS _write_usd,
    sum(CASE WHEN unread5 THEN w5 * (u5 - u) ELSE 0.0 END
        + CASE WHEN unread1 THEN w1 * (u1 - u) ELSE 0.0 END) AS _wasted,
    sum(CASE WHEN unread5 THEN w5 ELSE 0 END + CASE WHEN unread1 THEN w1 ELSE 0 END) AS _unread,
    sum(prefix * CASE WHEN coalesce(gap > {_US_5M}, true) THEN u5 ELSE ur END
        - prefix * CASE WHEN coalesce(gap > {_US_1H}, true) THEN u1 ELSE ur END) AS _ttl_gain
FROM s GROUP BY {{raw_names}}
"""

_CANDIDATE_CALLS = "coalesce(operation, 'chat') != 'count_tokens' AND coalesce(status, 'ok') = 'ok'"

_PREFIX_SQL = f"""
SELECT {_FKEY} AS fkey, {_MKEY} AS mkey,
    arrayElement(arraySort(groupArray(coalesce(input_tokens, 0))),
        toUInt64(floor((count() - 1) * 0.1)) + 1) AS prefix_tokens
FROM {{calls}}{{where}} GROUP BY fkey, mkey
"""

_BUCKETS_SQL = f"""
WITH c AS (
    SELECT {_FKEY} AS fkey, {_MKEY} AS mkey, toUnixTimestamp64Micro(start_time) AS t,
        coalesce({U_IN_SQL} - {U_READ_SQL}, 0.0) AS g, coalesce({U_5M_SQL} - {U_IN_SQL}, 0.0) AS l
    FROM {{calls}}{{where}}
)
SELECT fkey, mkey, intDiv(t, {_US_5M}) AS _bucket, count() AS n, min(t) AS t0, max(t) AS t1,
    sum(g) AS sg, argMin(g, t) AS g0, argMin(l, t) AS l0
FROM c GROUP BY fkey, mkey, _bucket
"""

# The audit's statements (analytics.audit_figures).
_SYNC = "coalesce(operation, 'chat') = 'chat'"
_CHAT = "coalesce(operation, 'chat') IN ('chat', 'batch')"
_WORKLOAD_KEYS = (
    "CASE WHEN coalesce(feature, '') <> '' THEN feature END AS _feature, "
    "CASE WHEN coalesce(feature, '') = '' THEN coalesce(code_location, '?') END AS _location"
)
_P99_SQL = f"""
SELECT {_WORKLOAD_KEYS}, quantileExactInclusive(0.99)(output_tokens) AS p99
FROM {{calls}}{{where}} GROUP BY _feature, _location
"""
_MEDIANS_SQL = f"""
WITH c AS (
    SELECT {_WORKLOAD_KEYS}, duration_ms, {{batch}} AS _batch,
        {{stream}} AND NOT {FAILED_SQL} AND coalesce(service_tier, '') <> 'batch' AS _stream
    FROM {{calls}}{{where}} AND ({{batch}} OR {{stream}})
)
SELECT _feature, _location,
    if(countIf(duration_ms IS NOT NULL AND _batch) = 0, NULL,
        quantileExactInclusiveIf(0.5)(duration_ms, _batch)) AS p50_ms,
    if(countIf(duration_ms IS NOT NULL AND _stream) = 0, NULL,
        quantileExactInclusiveIf(0.5)(duration_ms, _stream)) AS s_p50_ms
FROM c GROUP BY _feature, _location
"""
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
    SELECT conversation_id AS conv, start_time AS t, {_PROMPT} AS prompt, {_INPUT_USD} AS icost
    FROM {{calls}}{{where}}
), g AS (
    SELECT conv, count() AS turns, argMin(prompt, t) AS _first, argMax(prompt, t) AS _last,
        max(prompt) AS peak
    FROM c GROUP BY conv HAVING count() >= {{min_turns}}
)
SELECT turns, _first, _last, peak,
    sum(greatest(icost * (1 - _first / greatest(prompt, 1)), 0.0)) AS history_usd
FROM c INNER JOIN g USING (conv) GROUP BY conv, turns, _first, _last, peak
"""


def _tok(name: str) -> str:
    return f"greatest(coalesce({name}, 0), 0)"


class ClickHouseEngine:
    """:class:`~clauditor.analytics.engine.Engine` over ``<database>.calls`` of a ClickHouse
    client (a server or chDB), showing the calls ``sources`` admits (None: every call).

    :meth:`close` closes the client when the engine owns it (``owns=True``, as
    :func:`~clauditor.analytics.engine.open_engine` makes it); forks never do.
    """

    def __init__(
        self,
        client: ClickHouse,
        *,
        sources: SourceFilter | None = APP_SOURCES,
        owns: bool = False,
        lock: threading.Lock | None = None,
        empty: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        # ``empty`` opens the reference engine (DuckDB's over no calls) whose output schemas
        # this engine's frames are cast to; the caller passes it, so that this module never
        # imports the analytics engine that dispatches to it.
        self.empty = empty
        self.client = client
        self.sources = sources
        self.owns = owns
        self.lock = lock or threading.Lock()
        admitted = sources.sql() if sources is not None else "TRUE"
        self.calls = f"(SELECT * FROM {client.database}.calls FINAL WHERE {admitted}) AS calls"
        self._schemas: dict[tuple[Any, ...], pl.Schema] = {}

    # --- plumbing ---------------------------------------------------------------------------

    def _frame(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """The result of ``sql`` (``{calls}`` standing for the admitted calls) as a frame."""
        text = sql.replace("{calls}", self.calls)
        try:
            with self.lock:
                table = self.client.raw.query_arrow(
                    text, parameters=params or {}, settings=_SETTINGS
                )
        except Exception as exc:
            raise ClickHouseError(f"ClickHouse query failed: {str(exc)[:1500]}") from exc
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def _reference(self, key: tuple[Any, ...], method: str, *args: Any, **kw: Any) -> pl.Schema:
        """The schema DuckDB's engine gives for the same reduction over no calls."""
        if key not in self._schemas:
            if self.empty is None:
                raise ClickHouseError("this ClickHouse engine was made without a reference engine")
            with self.empty() as duck:
                self._schemas[key] = getattr(duck, method)(*args, **kw).schema
        return self._schemas[key]

    @staticmethod
    def _as(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
        return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())

    # --- the reductions ---------------------------------------------------------------------

    def rollup(
        self,
        period: Period | None,
        *,
        as_of: dt.datetime,
        keys: Sequence[str] = (),
        grain: int = 60,
    ) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.rollup_on` in ClickHouse."""
        if grain not in GRAINS:
            raise ValueError(f"rollup grain {grain!r} minutes is not one of {GRAINS}")
        extra = "".join(f" {c}," for c in extra_key_columns(keys) if c != "code_location")
        if "code_location" in keys:
            extra += " code_location,"
        where, params = _where(period)
        sql = (
            _ROLLUP_SQL.replace("<grain_us>", str(grain * 60_000_000))
            .replace("<extra>", extra)
            .replace("{where}", where)
        )
        frame = self._frame(sql, params | {"as_of": _micros(as_of)})
        frame = frame.rename({c: c[3:] for c in frame.columns if c.startswith("_s_")})
        slot = pl.from_epoch(pl.col("_slot") * grain * 60, "s").dt.replace_time_zone("UTC")
        frame = frame.with_columns(
            slot.cast(_UTC).alias("slot"),
            slot.cast(_UTC).dt.truncate("1h").alias("hour"),
            pl.col("start_time", "_end_time").cast(_UTC),
            *[pl.col(c).cast(pl.Int64) for c in _INT_SUMS],
            pl.col("_before", "_has_user", "_capped").cast(pl.Boolean),
        ).drop("_slot")
        schema = self._reference(
            ("rollup", tuple(keys), grain), "rollup", None, as_of=as_of, keys=keys, grain=grain
        )
        return self._as(prepare_calls(frame), schema)

    def error_minutes(self, period: Period | None) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.error_minutes_on` in ClickHouse."""
        where, params = _where(period, "coalesce(operation, 'chat') <> 'count_tokens'")
        minutes = self._frame(_MINUTES_SQL.replace("{where}", where), params)
        minutes = minutes.with_columns(
            pl.from_epoch(pl.col("bucket") * 60, "s").dt.replace_time_zone("UTC").cast(_UTC)
        )
        return self._as(minutes, self._reference(("minutes",), "error_minutes", None))

    def unpriced_runs(self, period: Period | None, gap: dt.timedelta) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.unpriced_runs_on` in ClickHouse: a new run starts
        where a model's unpriced call comes more than ``gap`` after its previous one."""
        where, params = _where(period, "cost_usd IS NULL")
        params = params | {"gap": int(gap.total_seconds() * 1_000_000)}
        runs = self._frame(_UNPRICED_RUNS_SQL.replace("{where}", where), params)
        runs = runs.select(
            "model",
            *[
                pl.from_epoch(pl.col(c), time_unit="us").dt.replace_time_zone("UTC").alias(c)
                for c in ("first", "last")
            ],
            pl.col("calls").cast(pl.Int64),
        )
        return self._as(runs, self._reference(("unpriced",), "unpriced_runs", None, gap))

    def slot_calls(
        self, period: Period | None, slots: Sequence[dt.datetime], grain: int
    ) -> pl.DataFrame:
        """:func:`clauditor.analytics.rollup.slot_calls_on` in ClickHouse."""
        types: dict[str, pl.DataType] = {
            "start_time": _UTC,
            "feature": pl.String(),
            "cost_usd": pl.Float64(),
        }
        schema = pl.Schema(types)
        if not slots:
            return pl.DataFrame(schema=schema)
        grain_us = grain * 60_000_000
        numbers = ", ".join(str(_micros(s) // grain_us) for s in slots)
        where, params = _where(
            period,
            "start_time >= fromUnixTimestamp64Micro({first:Int64}, 'UTC')",
            "start_time < fromUnixTimestamp64Micro({last:Int64}, 'UTC')",
            f"intDiv({_MICROS}, {grain_us}) IN ({numbers})",
        )
        params |= {"first": _micros(min(slots)), "last": _micros(max(slots)) + grain_us}
        calls = self._frame(f"SELECT start_time, feature, cost_usd FROM {{calls}}{where}", params)
        return self._as(calls, schema)

    def latency(
        self,
        period: Period | None,
        hours: pl.DataFrame,
        *,
        tz: str,
        by: Sequence[str],
        every: str | None,
    ) -> pl.DataFrame:
        """:func:`clauditor.analytics.engine.latency_on` in ClickHouse (exact quantiles)."""
        by = list(by)
        where, params = _where(
            period, "coalesce(operation, 'chat') = 'chat' AND coalesce(status, 'ok') = 'ok'"
        )
        bucket, buckets = "0", None
        if every is not None:
            first = hours["start_time"].min() if hours.height else None
            last = hours["_end_time"].max() if hours.height else None
            _, lookup, buckets = bucket_lookup(tz, every, first, last)  # type: ignore[arg-type]
            if first is None:
                bucket = "CAST(NULL AS Nullable(Int64))"
            else:
                origin = int(first.timestamp()) // 900  # type: ignore[union-attr]
                offset = f"intDiv({_MICROS}, 900000000) - {origin} + 1"
                bucket = f"arrayElement({{_slot_bucket:Array(Int64)}}, toInt64({offset}))"
                params |= lookup
        groups = [*(["_b"] if every is not None else []), *by]
        sql = _LATENCY_SQL.format(
            outer="".join(f"{g}, " for g in groups),
            bucket=bucket,
            keys="".join(f"{_key_sql(k)} AS {k}, " for k in by),
            calls="{calls}",
            where=where,
            group=" GROUP BY " + ", ".join(groups) if groups else "",
        )
        if "model" in by:
            params |= _model_params(hours)
        out = self._frame(sql, params)
        names_q = ("p50", "p95", "p99")

        def quantile(column: str, present: str, i: int) -> pl.Expr:
            return pl.when(pl.col(present) > 0).then(pl.col(column).list.get(i))

        out = out.with_columns(
            pl.col("calls", "streamed_calls").cast(pl.Int64),
            *[quantile("_d", "_nd", i).alias(f"duration_{n}_ms") for i, n in enumerate(names_q)],
            *[
                quantile("_t", "streamed_calls", i).alias(f"ttft_{n}_ms")
                for i, n in enumerate(names_q)
            ],
            *[pl.col(k).cast(pl.String) for k in by],
        )
        if buckets is not None:
            out = out.with_columns(pl.col("_b").cast(pl.Int64)).join(buckets, on="_b", how="left")
        keys_out = [*(["period"] if every is not None else []), *by]
        columns = [
            *keys_out,
            "calls",
            *[f"duration_{n}_ms" for n in names_q],
            "streamed_calls",
            *[f"ttft_{n}_ms" for n in names_q],
        ]
        dtypes: dict[str, pl.DataType] = {
            **({"period": pl.Datetime("us", tz)} if every is not None else {}),
            **{k: pl.String() for k in by},
            "calls": pl.Int64(),
            **{f"duration_{n}_ms": pl.Float64() for n in names_q},
            "streamed_calls": pl.Int64(),
            **{f"ttft_{n}_ms": pl.Float64() for n in names_q},
        }
        schema = pl.Schema(dtypes)
        return self._as(out.select(columns), schema).sort(keys_out or ["calls"])

    def cache_economics(
        self, period: Period | None, hours: pl.DataFrame, *, by: Sequence[str]
    ) -> pl.DataFrame:
        """:func:`clauditor.analytics.cache_sequence.cache_economics_sql` in ClickHouse."""
        by = list(by)
        columns = list(dict.fromkeys([*RAW_KEYS, *extra_key_columns(by)]))
        where, _ = _where(period, f"NOT {FAILED_SQL}", f"{READ_SQL} + {WRITE_SQL} > 0")
        names = ", ".join(f"_r{i}" for i in range(len(columns)))
        sql = _SEQUENCE_SQL.format(
            raw=", ".join(f"{c} AS _r{i}" for i, c in enumerate(columns)),
            raw_names=names,
            calls="{calls}",
            where=where,
        )
        _, params = _where(period)
        terms = self._frame(sql, params)
        terms = terms.rename({f"_r{i}": c for i, c in enumerate(columns)}).with_columns(
            pl.col(columns).cast(pl.String), pl.col("_unread").cast(pl.Int64)
        )
        return economics_from_terms(terms, hours, by)

    def caching_candidates(self, period: Period | None, hours: pl.DataFrame) -> pl.DataFrame:
        """:func:`clauditor.analytics.cache_sequence.caching_candidates_from` in ClickHouse."""

        def run(sql: str, features: list[str]) -> pl.DataFrame:
            where, params = _where(period, _CANDIDATE_CALLS, features_sql(hours, features))
            text = sql.replace("{where}", where)
            return self._frame(text, params | _model_params(hours))

        def prefix_of(features: list[str]) -> pl.DataFrame:
            return run(_PREFIX_SQL, features).with_columns(pl.col("prefix_tokens").cast(pl.Int64))

        def buckets_of(features: list[str]) -> pl.DataFrame:
            return run(_BUCKETS_SQL, features).with_columns(
                pl.col("_bucket", "n", "t0", "t1").cast(pl.Int64)
            )

        return caching_candidates_with(hours, prefix_of, buckets_of)

    def audit_figures(
        self, period: Period | None, hours: pl.DataFrame, *, config: Config | None
    ) -> dict[str, Any]:
        """:func:`clauditor.analytics.audit_figures.audit_figures` in ClickHouse."""
        return audit_figures_with(_Figures(self), period, hours, config=config)

    def fork(self) -> ClickHouseEngine:
        """An engine on the same client and lock (statements run one at a time)."""
        return ClickHouseEngine(self.client, sources=self.sources, lock=self.lock, empty=self.empty)

    def close(self) -> None:
        """Close the client if this engine opened it."""
        if self.owns:
            self.client.close()


class _Figures:
    """:class:`~clauditor.analytics.audit_figures.FigureQueries` in ClickHouse."""

    def __init__(self, engine: ClickHouseEngine) -> None:
        self.engine = engine

    def p99(self, period: Period | None) -> pl.DataFrame:
        where, params = _where(period, _SYNC, f"NOT {FAILED_SQL}", "max_tokens IS NOT NULL")
        return self.engine._frame(_P99_SQL.replace("{where}", where), params)

    def medians(self, period: Period | None, batch: str, stream: str) -> pl.DataFrame:
        where, params = _where(period, _SYNC)
        sql = _MEDIANS_SQL.format(calls="{calls}", where=where, batch=batch, stream=stream)
        return self.engine._frame(sql, params)

    def conversations(self, period: Period | None) -> pl.DataFrame | None:
        from clauditor.analytics.audit_items import MIN_TURNS

        where, params = _where(period, _CHAT, f"NOT {FAILED_SQL}", "conversation_id IS NOT NULL")
        sql = _CONVERSATIONS_SQL.format(calls="{calls}", where=where, min_turns=MIN_TURNS)
        per = self.engine._frame(sql, params).rename({"_first": "first", "_last": "last"})
        if per.height == 0:
            found = self.engine._frame(f"SELECT count() AS n FROM {{calls}}{where}", params)
            if not found["n"][0]:
                return None
        return per.with_columns(
            pl.col("turns", "first", "last", "peak").cast(pl.Int64),
            pl.col("history_usd").cast(pl.Float64),
        )

    def opus_groups(
        self, period: Period | None, opus_ids: list[str], long_above: float | None
    ) -> pl.DataFrame:
        w1h, write = _tok("cache_creation_1h_input_tokens"), _tok("cache_creation_input_tokens")
        total = f"{_tok('input_tokens')} + {_tok('cache_read_input_tokens')} + {write}"
        long_context = f"{total} > {long_above}" if long_above is not None else "false"
        where, params = _where(
            period, _CHAT, "coalesce(response_model, request_model) IN {ids:Array(String)}"
        )
        sql = f"""
            SELECT intDiv({_MICROS}, 86400000000) AS _day, service_tier, operation,
                inference_geo, speed, {long_context} AS _long,
                sum({_tok("input_tokens")}) AS _s_input_tokens,
                sum({_tok("output_tokens")}) AS _s_output_tokens,
                sum({_tok("cache_read_input_tokens")}) AS _s_cache_read_input_tokens,
                sum(greatest({write} - {w1h}, 0)) AS _w5m, sum({w1h}) AS _w1h,
                sum(coalesce(cost_usd, 0.0)) AS _opus_usd
            FROM {{calls}}{where} GROUP BY ALL
        """
        groups = self.engine._frame(sql, params | {"ids": opus_ids})
        groups = groups.rename({c: c[3:] for c in groups.columns if c.startswith("_s_")})
        return groups.with_columns(pl.col("_day").cast(pl.Int64), pl.col("_long").cast(pl.Boolean))

    def opus_calls(self, period: Period | None, opus_ids: list[str]) -> pl.DataFrame:
        where, params = _where(
            period, _CHAT, "coalesce(response_model, request_model) IN {ids:Array(String)}"
        )
        columns = ", ".join(ANALYTICS_COLUMNS)
        calls = self.engine._frame(
            f"SELECT {columns} FROM {{calls}}{where}", params | {"ids": opus_ids}
        )
        return prepare_calls(
            calls.select(pl.col(c).cast(CALLS_SCHEMA[c]) for c in ANALYTICS_COLUMNS)
        )


def insert_calls(client: ClickHouse, calls: pl.DataFrame) -> int:
    """Insert ``calls`` rows (the :data:`~clauditor.schema.CALLS_SCHEMA` columns; missing
    ones NULL) into ``<database>.calls``, with the table's key (the response id, else the span
    id) and source preference as the view computes them; returns the number of rows. The table
    holds no NULL ``attributes``, ``resource`` or ``end_time``: they become ``""`` and the
    call's ``start_time``.

    For moving calls already normalized in Python (a DuckDB store, a Parquet export) into
    ClickHouse; spans from the Collector go through the view instead."""
    if calls.height == 0:
        return 0
    preference = {source: len(SOURCES) - i for i, source in enumerate(SOURCES)}
    frame = calls.select(
        (pl.col(c).cast(t) if c in calls.columns else pl.lit(None, dtype=t)).alias(c)
        for c, t in CALLS_SCHEMA.items()
    ).with_columns(
        pl.col(pl.Categorical).cast(pl.String),
        pl.col("start_time").dt.convert_time_zone("UTC"),
        pl.coalesce("response_id", "span_id").alias(CALL_KEY),
        pl.col("source")
        .replace_strict(preference, default=0, return_dtype=pl.UInt8)
        .alias(SOURCE_PREFERENCE),
        # Columns the table keeps non-NULL: JSON text empty, an unknown end at the start.
        pl.col("attributes", "resource").fill_null(""),
        pl.col("end_time").fill_null(pl.col("start_time")).dt.convert_time_zone("UTC"),
    )
    try:
        client.raw.insert_arrow("calls", frame.to_arrow(), database=client.database)
    except Exception as exc:
        raise ClickHouseError(f"ClickHouse insert into calls failed: {str(exc)[:1500]}") from exc
    return frame.height


def claude_code_totals(url: str, period: Period) -> tuple[int, float]:
    """Calls and dollars of developers' Claude Code calls in ``period`` of ``url``'s calls."""
    from clauditor.schema import CLAUDE_CODE_SOURCE

    with connect(url) as client:
        engine = ClickHouseEngine(client, sources=SourceFilter(only=(CLAUDE_CODE_SOURCE,)))
        where, params = _where(period)
        sql = f"SELECT count() AS n, coalesce(sum(cost_usd), 0.0) AS usd FROM {{calls}}{where}"
        row = engine._frame(sql, params).row(0)
    return int(row[0]), float(row[1])


def clickhouse_spend_notes(
    url: str,
    start: dt.datetime,
    end: dt.datetime,
    table: PriceTable,
    sources: SourceFilter | None = APP_SOURCES,
) -> SpendNotes:
    """:func:`clauditor.analytics.spend_notes.spend_notes` of ``url``'s calls of ``sources``."""
    period = Period(start, end, "")
    with connect(url) as client:
        engine = ClickHouseEngine(client, sources=sources)
        where, params = _where(period)
        totals = engine._frame(
            "SELECT coalesce(sum(cost_tools_usd), 0.0), "
            "toInt64(coalesce(sum(web_search_requests), 0)), "
            "toInt64(coalesce(sum(web_fetch_requests), 0)), count(cache_ttl_assumed), "
            "coalesce(sumIf(cost_cache_write_usd, cache_ttl_assumed IS NOT NULL), 0.0) "
            f"FROM {{calls}}{where}",
            params,
        ).row(0)
        where, params = _where(period, "container_id IS NOT NULL")
        containers = engine._frame(
            f"SELECT count(), coalesce(sum(greatest(s, {MIN_CONTAINER_S})), 0.0) / 3600.0 FROM ("
            "SELECT (toUnixTimestamp64Micro(max(end_time)) "
            "- toUnixTimestamp64Micro(min(start_time))) / 1e6 AS s "
            f"FROM {{calls}}{where} GROUP BY container_id)",
            params,
        ).row(0)
    return spend_notes_from(totals, containers, start, end, table)
