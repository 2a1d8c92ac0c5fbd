"""The ``calls`` record: one row per Claude API call, all its retries included.

Token columns follow Anthropic's ``usage`` meaning: ``input_tokens`` is the UNCACHED input, and
the cache reads and writes are counted apart. Every stage hands rows to the next as a Polars
frame with exactly :data:`CALLS_SCHEMA`; :func:`conform` makes any frame fit it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

__all__ = [
    "CALLS_COLUMNS",
    "CALLS_SCHEMA",
    "CLAUDE_CODE_SOURCE",
    "COST_COLUMNS",
    "PRICED_COLUMNS",
    "RATE_COLUMNS",
    "SOURCES",
    "TOKEN_COLUMNS",
    "conform",
    "empty_calls",
    "frame_from_rows",
]

UTC_DATETIME = pl.Datetime("us", "UTC")

# (column, DuckDB type, Polars dtype); the order is the table's column order.
CALLS_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("span_id", "VARCHAR PRIMARY KEY", pl.String),
    ("trace_id", "VARCHAR", pl.String),
    ("parent_span_id", "VARCHAR", pl.String),
    ("start_time", "TIMESTAMPTZ", UTC_DATETIME),
    ("end_time", "TIMESTAMPTZ", UTC_DATETIME),
    ("duration_ms", "DOUBLE", pl.Float64),
    ("ttft_ms", "DOUBLE", pl.Float64),
    ("service", "VARCHAR", pl.String),
    ("environment", "VARCHAR", pl.String),
    ("feature", "VARCHAR", pl.String),
    ("user_id", "VARCHAR", pl.String),
    ("conversation_id", "VARCHAR", pl.String),
    ("code_location", "VARCHAR", pl.String),
    ("operation", "VARCHAR", pl.String),
    ("request_model", "VARCHAR", pl.String),
    ("response_model", "VARCHAR", pl.String),
    ("max_tokens", "INTEGER", pl.Int32),
    ("stream", "BOOLEAN", pl.Boolean),
    ("service_tier", "VARCHAR", pl.String),
    ("inference_geo", "VARCHAR", pl.String),
    ("speed", "VARCHAR", pl.String),
    ("input_tokens", "BIGINT", pl.Int64),
    ("output_tokens", "BIGINT", pl.Int64),
    ("cache_read_input_tokens", "BIGINT", pl.Int64),
    ("cache_creation_input_tokens", "BIGINT", pl.Int64),
    ("cache_creation_5m_input_tokens", "BIGINT", pl.Int64),
    ("cache_creation_1h_input_tokens", "BIGINT", pl.Int64),
    ("stop_reason", "VARCHAR", pl.String),
    ("status", "VARCHAR", pl.String),
    ("http_status", "INTEGER", pl.Int32),
    ("error_type", "VARCHAR", pl.String),
    ("retries", "INTEGER", pl.Int32),
    ("cost_usd", "DOUBLE", pl.Float64),
    ("cost_input_usd", "DOUBLE", pl.Float64),
    ("cost_output_usd", "DOUBLE", pl.Float64),
    ("cost_cache_read_usd", "DOUBLE", pl.Float64),
    ("cost_cache_write_usd", "DOUBLE", pl.Float64),
    ("price_version", "VARCHAR", pl.String),
    ("source", "VARCHAR", pl.String),
    ("attributes", "JSON", pl.String),
    ("resource", "JSON", pl.String),
    # gen_ai.response.id: the Anthropic message id, unique per call. Two instrumentations'
    # rows for one call are recognized by it, across batches too (clauditor.store).
    # Added by migration 5, hence last.
    ("response_id", "VARCHAR", pl.String),
    # Added by migration 6. Server tools used by the call (usage.server_tool_use; code
    # execution counted from the response's tool uses) and the code execution container.
    ("web_search_requests", "BIGINT", pl.Int64),
    ("web_fetch_requests", "BIGINT", pl.Int64),
    ("code_execution_requests", "BIGINT", pl.Int64),
    ("container_id", "VARCHAR", pl.String),
    # Bedrock/Vertex location when known (`global` or a region); regional endpoints cost more.
    ("cloud_region", "VARCHAR", pl.String),
    # What pricing filled in besides the costs: the server tools' fees, the TTL (5m or 1h) it
    # assumed for cache writes whose split the source did not report (NULL: reported), and the
    # five rates the call was priced at ($/MTok, after
    # tier, fast mode and multipliers), so what-ifs read the call's own card.
    ("cost_tools_usd", "DOUBLE", pl.Float64),
    ("cache_ttl_assumed", "VARCHAR", pl.String),
    ("rate_input", "DOUBLE", pl.Float64),
    ("rate_output", "DOUBLE", pl.Float64),
    ("rate_cache_read", "DOUBLE", pl.Float64),
    ("rate_cache_write_5m", "DOUBLE", pl.Float64),
    ("rate_cache_write_1h", "DOUBLE", pl.Float64),
    # Added by migration 8. The cost the source itself reported (Claude Code's ``cost_usd``),
    # beside clauditor's own ``cost_usd`` from the rate cards; NULL for every other source.
    ("reported_cost_usd", "DOUBLE", pl.Float64),
)

CALLS_SCHEMA: pl.Schema = pl.Schema({name: dtype for name, _, dtype in CALLS_COLUMNS})

TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
COST_COLUMNS = (
    "cost_usd",
    "cost_input_usd",
    "cost_output_usd",
    "cost_cache_read_usd",
    "cost_cache_write_usd",
    "cost_tools_usd",
)
RATE_COLUMNS = (
    "rate_input",
    "rate_output",
    "rate_cache_read",
    "rate_cache_write_5m",
    "rate_cache_write_1h",
)
# Every column that pricing (clauditor.pricing.price_calls) fills; ingest leaves them NULL.
PRICED_COLUMNS = (*COST_COLUMNS, "price_version", "cache_ttl_assumed", *RATE_COLUMNS)
# Every instrumentation whose spans become rows, in order of preference: when two of them
# describe the same call, the row of the earlier one is kept. Ours first, then the SDK's own
# (it has the cache TTL split, service tier and HTTP status), then the rest. ``claude-code``
# (Claude Code's own telemetry, :mod:`clauditor.ingest.claude_code`) is developers' usage, not
# the app's: reports keep it apart.
SOURCES = (
    "clauditor",
    "anthropic-sdk",
    "otel-genai",
    "openllmetry",
    "openinference",
    "openlit",
    "claude-code",
)
CLAUDE_CODE_SOURCE = "claude-code"


def empty_calls() -> pl.DataFrame:
    """A frame with the ``calls`` schema and no rows."""
    return pl.DataFrame(schema=CALLS_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with exactly the ``calls`` columns, in order, cast to their types.

    Missing columns are added as NULL; extra columns are dropped.
    """
    exprs = []
    for name, dtype in CALLS_SCHEMA.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype, strict=False))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)


def frame_from_rows(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """A ``calls`` frame from row dicts (missing keys are NULL)."""
    rows = list(rows)
    if not rows:
        return empty_calls()
    return pl.DataFrame(rows, schema=CALLS_SCHEMA, strict=False)
