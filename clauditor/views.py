"""The SQL views over ``calls`` (``daily_costs``, ``feature_costs``, ``errors``), by version.

Each ``VIEWS_Vn`` is the views as migration *n* of :data:`clauditor.store.MIGRATIONS` (re)defines
them; :data:`DATASET_VIEWS_SQL` is the newest, which a Parquet dataset
(:func:`clauditor.dataset.dataset_connection`) gets too. They live apart from the store so that
the store and the dataset both depend on them and not on each other.
"""

from __future__ import annotations

__all__ = ["DATASET_VIEWS_SQL", "VIEWS_V1", "VIEWS_V4", "VIEWS_V9"]

VIEWS_V1 = """
CREATE OR REPLACE VIEW daily_costs AS
SELECT
    CAST(timezone('UTC', start_time) AS DATE) AS day,
    coalesce(feature, '(untagged)') AS feature,
    coalesce(response_model, request_model, '(no model)') AS model,
    count(*) AS calls,
    count(*) FILTER (WHERE status = 'error') AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cost_usd) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls
FROM calls
GROUP BY ALL;

CREATE OR REPLACE VIEW feature_costs AS
SELECT
    coalesce(feature, '(untagged)') AS feature,
    count(*) AS calls,
    min(start_time) AS first_call,
    max(start_time) AS last_call,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cost_usd) AS cost_usd,
    sum(cost_usd) / nullif(count(cost_usd), 0) AS cost_per_call_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls
FROM calls
GROUP BY ALL;

CREATE OR REPLACE VIEW errors AS
SELECT * FROM calls WHERE status = 'error';
"""

# Version 4: token sums as BIGINT (DuckDB's sum of BIGINT is a DECIMAL(38,0), which JSON
# tools then read as text).
VIEWS_V4 = VIEWS_V1
for _column in (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
):
    VIEWS_V4 = VIEWS_V4.replace(
        f"sum({_column}) AS {_column}", f"CAST(sum({_column}) AS BIGINT) AS {_column}"
    )

# Version 9: count_tokens calls (free, not generations) out of the views' call counts, error
# counts and cost per call, counted apart in count_tokens_calls (the last column).
_GENERATION = "coalesce(operation, 'chat') <> 'count_tokens'"
VIEWS_V9 = (
    VIEWS_V4.replace(
        "    count(*) AS calls,\n",
        f"    count(*) FILTER (WHERE {_GENERATION}) AS calls,\n",
    )
    .replace(
        "count(*) FILTER (WHERE status = 'error') AS errors",
        f"count(*) FILTER (WHERE status = 'error' AND {_GENERATION}) AS errors",
    )
    .replace(
        "sum(cost_usd) / nullif(count(cost_usd), 0) AS cost_per_call_usd",
        f"sum(cost_usd) / nullif(count(cost_usd) FILTER (WHERE {_GENERATION}), 0)"
        " AS cost_per_call_usd",
    )
    .replace(
        "    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls\n",
        "    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls,\n"
        "    count(*) FILTER (WHERE operation = 'count_tokens') AS count_tokens_calls\n",
    )
)

# The views as the newest migration defines them: a migrated file's and a Parquet dataset's.
DATASET_VIEWS_SQL = VIEWS_V9
