"""``clauditor query --db clickhouse://...``: ad-hoc SQL over ``calls`` on a ClickHouse server,
read-only by the engine's own setting (not on embedded chDB: :func:`run_query`).

Every statement runs with these ClickHouse settings, ``readonly`` last (a setting cannot be
changed after it, neither by the request nor by the query's own ``SETTINGS`` or ``SET``):

* ``readonly = 1``: reads only. ClickHouse refuses writes (INSERT, ALTER, DROP, CREATE,
  OPTIMIZE, SYSTEM, ``INSERT INTO FUNCTION``), changing any setting, and the table functions
  that reach outside the database (``file()``, ``url()``, ``s3()``, ``executable()``...; the
  read-only-safe ones such as ``numbers()`` still work). Nothing here matches strings: no
  allow-list parses the statement, the server refuses.
* ``final = 1``: every table is read as with ``FINAL``, so ``calls`` shows one row per call.
* ``max_execution_time`` (``--timeout``) and ``max_memory_usage`` (``--memory-limit``).

For a server, give clauditor a user with ``readonly`` in its profile as well (a server's
administrator can make the setting unchangeable there); the setting above holds either way.
"""

from __future__ import annotations

import math
import re

import polars as pl

from clauditor.clickhouse.client import ClickHouse, connect, parse_url
from clauditor.errors import ReadOnlyQueryError, StoreError

__all__ = ["memory_bytes", "read_only_query", "run_query"]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
_READONLY = 164  # ClickHouse's error code READONLY
_TIMEOUT = 159  # TIMEOUT_EXCEEDED
_MEMORY = 241  # MEMORY_LIMIT_EXCEEDED


def memory_bytes(limit: str) -> int:
    """``"2GB"``, ``"500MB"``, ``"1GiB"`` as bytes (the ``--memory-limit`` syntax of DuckDB)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", limit)
    if not found or found.group(2).upper() not in _UNITS:
        raise ValueError(f"--memory-limit {limit!r}: give a size such as 2GB or 500MB")
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()])


def run_query(
    url: str, sql: str, *, timeout_s: float = 60.0, memory_limit: str = "2GB"
) -> pl.DataFrame:
    """Run one read-only statement on the server of ``url`` (module docstring).

    Embedded chDB (``chdb://``) is refused: it is ClickHouse's local engine, which writes a
    query's ``INTO OUTFILE`` itself even with ``readonly = 1`` (a server never does: only its
    client program writes output files), so no setting keeps a statement there from writing
    a file. Raises :class:`~clauditor.errors.ReadOnlyQueryError` for that and when the server
    refuses the statement in read-only mode, :class:`~clauditor.errors.StoreError` when it
    fails, runs past ``timeout_s`` or needs more than ``memory_limit``.
    """
    if parse_url(url).kind == "chdb":
        raise ReadOnlyQueryError(
            "clauditor query does not run on embedded chDB: it writes INTO OUTFILE even in "
            "read-only mode; query a ClickHouse server (clickhouse://...) or a DuckDB file"
        )
    with connect(url) as client:
        return read_only_query(client, sql, timeout_s=timeout_s, memory_limit=memory_limit)


def read_only_query(
    client: ClickHouse, sql: str, *, timeout_s: float = 60.0, memory_limit: str = "2GB"
) -> pl.DataFrame:
    """``sql`` on ``client``'s database with the settings of the module docstring (the part of
    :func:`run_query` that does not depend on the kind of ClickHouse; on chDB the tests hold
    it to the sandbox corpus, ``INTO OUTFILE`` aside)."""
    if not sql.strip():
        raise ReadOnlyQueryError("empty query: give one SELECT statement")
    settings = {
        "max_execution_time": max(1, math.ceil(timeout_s)),
        "max_memory_usage": memory_bytes(memory_limit),
        "final": 1,
        "readonly": 1,  # last: nothing after it can change a setting
    }
    client.raw.database = client.database  # unqualified names are the URL's database's
    try:
        table = client.raw.query_arrow(sql, settings=settings)
    except Exception as exc:
        text = str(exc)
        first = text.strip().splitlines()[0][:500] if text.strip() else type(exc).__name__
        code = getattr(exc, "code", None)
        if code == _READONLY or "(READONLY)" in text:
            raise ReadOnlyQueryError(
                f"refused: ClickHouse runs `clauditor query` read-only ({first})"
            ) from None
        if code == _TIMEOUT or "(TIMEOUT_EXCEEDED)" in text:
            raise StoreError(f"the query ran past --timeout {timeout_s:g} s") from None
        if code == _MEMORY or "(MEMORY_LIMIT_EXCEEDED)" in text:
            raise StoreError(f"the query needed more than --memory-limit {memory_limit}") from None
        raise StoreError(f"query failed: {first}") from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame
