"""clauditor.analytics: Polars jobs over the ``calls`` table.

Functions here are pure (a frame of calls in, an aggregate frame out); the only I/O is
:func:`load_calls_in`, which reads one :class:`Period` of calls from the DuckDB file.
"""

from clauditor.analytics.costs import (
    GROUP_KEYS,
    cost_breakdown,
    group_key_expr,
    load_calls_in,
    spend_by_day,
)
from clauditor.analytics.periods import ACCEPTED_SPECS, Period, resolve_period

__all__ = [
    "ACCEPTED_SPECS",
    "GROUP_KEYS",
    "Period",
    "cost_breakdown",
    "group_key_expr",
    "load_calls_in",
    "resolve_period",
    "spend_by_day",
]
