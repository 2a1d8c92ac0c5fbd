"""clauditor.analytics: the analytics jobs over the ``calls`` of a source.

:func:`run_jobs` (and the per-command functions of :mod:`clauditor.analytics.runner`) runs jobs
from the reductions of an :class:`Engine` (:func:`open_engine`: a DuckDB file, a Parquet folder
or a frame of calls), finished by pure Polars functions over the engine's rollup.
"""

from clauditor.analytics.audit_items import AUDIT_ITEMS
from clauditor.analytics.budget import (
    budget_status,
    budget_status_of,
    daily_spend,
    threshold_crossings,
)
from clauditor.analytics.costs import (
    GROUP_KEYS,
    group_key_expr,
)
from clauditor.analytics.engine import DuckDBEngine, Engine, open_engine
from clauditor.analytics.errors import ERROR_CLASSES
from clauditor.analytics.frame import (
    ANALYTICS_COLUMNS,
    analytics_frame_from,
    prepare_calls,
)
from clauditor.analytics.periods import ACCEPTED_SPECS, Period, resolve_period
from clauditor.analytics.runner import JOB_NAMES, run_jobs
from clauditor.analytics.spikes import spike_episodes_from_hours

__all__ = [
    "ACCEPTED_SPECS",
    "ANALYTICS_COLUMNS",
    "AUDIT_ITEMS",
    "ERROR_CLASSES",
    "GROUP_KEYS",
    "JOB_NAMES",
    "DuckDBEngine",
    "Engine",
    "Period",
    "analytics_frame_from",
    "budget_status",
    "budget_status_of",
    "daily_spend",
    "group_key_expr",
    "open_engine",
    "prepare_calls",
    "resolve_period",
    "run_jobs",
    "spike_episodes_from_hours",
    "threshold_crossings",
]
