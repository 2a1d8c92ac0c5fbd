"""clauditor on ClickHouse: the Collector's ``otel_traces`` turned into priced ``calls`` rows.

* :func:`connect` opens a ``clickhouse://user@host:8123/db`` server or an embedded
  ``chdb:///path`` through one client (``clickhouse-connect``);
* :func:`init` creates the ``calls`` table, the rate-card dictionary, the exporter's tables when
  absent and the materialized view, and backfills (:mod:`.ddl` says what and how);
* :func:`reprice` prices the stored calls again;
* :mod:`.view` generates the view's SQL from the Python conventions and rate cards.

Needs ``pip install 'clauditor[clickhouse]'`` (and ``chdb`` for the embedded engine).
"""

from .client import ClickHouse, ClickHouseError, connect, parse_url
from .ddl import InitResult, init, reprice

__all__ = ["ClickHouse", "ClickHouseError", "InitResult", "connect", "init", "parse_url", "reprice"]
