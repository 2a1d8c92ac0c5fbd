"""Latency percentiles: how long calls take and how long users wait for the first token.

``duration_ms`` is the whole call (retries and stream reading included); ``ttft_ms`` exists
only for streamed calls. By default only successful ``chat`` calls count: a failed call's
duration measures the failure (often a client timeout), a ``count_tokens`` call is not a
generation, and a Batch API result's span measures fetching the result, not generating it.

The quantiles are an engine reduction (``Engine.latency``; DuckDB's ``quantile_cont``, the linear
interpolation between observations). Columns: ``period`` (the bucket start, in the zone; absent
for the whole period), the group keys, ``calls``, ``duration_p50_ms``, ``duration_p95_ms``,
``duration_p99_ms``, ``streamed_calls``, ``ttft_p50_ms``, ``ttft_p95_ms``, ``ttft_p99_ms``
(NULL without streamed calls). This module holds what the command checks before asking.
"""

from __future__ import annotations

import re

__all__ = ["PERCENTILES", "check_bucket"]

PERCENTILES = (0.5, 0.95, 0.99)
_BUCKET = re.compile(r"[1-9][0-9]*(?:h|d|w|mo)")


def check_bucket(every: str) -> None:
    """Raise :class:`ValueError` unless ``every`` is a latency bucket (``1h``, ``6h``, ``1d``,
    ``1w``, ``1mo``: a whole number and a unit)."""
    if not _BUCKET.fullmatch(every):
        raise ValueError(
            f"--every {every!r} is not a bucket; use a whole number and a unit: 1h, 6h, 1d, 1w, 1mo"
        )
