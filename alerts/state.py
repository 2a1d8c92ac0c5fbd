"""Alert state in the DuckDB file: the ``alerts`` table (migration 3 in :mod:`clauditor.store`).

One row per message of an incident: its ``start``, each ``escalate:<level>``, its ``resolve``.
The table is both the state machine's memory (an incident is open while it has a start and no
resolve; its level is the highest level messaged) and the delivery outbox:

1. in ONE transaction a run reads the open incidents, decides the transitions and inserts their
   rows with ``status = 'sending'`` and its own ``claimed_by``; the primary key ``(rule, key,
   incident, transition)`` makes a second run that decided the same transition insert nothing
   (or fail to commit and re-decide, seeing the first run's rows), so it never sends it;
2. it sends only the rows it claimed, after closing the database (HTTP retries must not hold
   the single-writer lock);
3. it records each outcome: ``sent``, ``failed`` (retried by the next run, which claims failed
   rows in step 1), or ``undelivered`` (no destination configured; not retried).

A row a crashed run left in ``sending`` is reclaimed after ``stale_after``; that one message
may then be sent twice, the price of never losing it.

The daily digest of ``clauditor report --notify`` uses the same table: rule ``report``, key
and incident the day, transition ``digest``. Its rows are never an open incident.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from clauditor.alerts.message import AlertMessage
from clauditor.errors import StoreError
from clauditor.redact import scrub
from clauditor.store import read_connection, write_connection

__all__ = [
    "Claimed",
    "Delivery",
    "Incident",
    "claim_transitions",
    "load_open_incidents",
    "record_deliveries",
]

SENDING, SENT, FAILED, UNDELIVERED = "sending", "sent", "failed", "undelivered"
_CONFLICT = (duckdb.TransactionException, duckdb.ConstraintException)


@dataclass(frozen=True)
class Incident:
    """An open incident of ``rule`` on ``key``: when its condition began and the highest level
    it has been messaged at."""

    rule: str
    key: str
    incident: str
    started_at: dt.datetime
    level: int
    severity: str


@dataclass(frozen=True)
class Claimed:
    """What one run must send: each message with the sinks that already have it (retries)."""

    decided: list[AlertMessage] = field(default_factory=list)
    to_send: list[tuple[AlertMessage, frozenset[str]]] = field(default_factory=list)


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one claimed message."""

    message: AlertMessage
    status: str
    delivered_to: frozenset[str] = frozenset()
    error: str | None = None


_OPEN_SQL = """
SELECT rule, key, incident, timezone('UTC', min(started_at)) AS started_at,
       max(level) AS level, arg_max(severity, level) AS severity
FROM alerts
WHERE transition <> 'digest'
GROUP BY rule, key, incident
HAVING NOT bool_or(transition = 'resolve')
ORDER BY rule, key, started_at
"""


def _open_incidents(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], Incident]:
    found: dict[tuple[str, str], Incident] = {}
    for rule, key, incident, started, level, severity in con.execute(_OPEN_SQL).fetchall():
        # ORDER BY started_at: should two ever be open, the newest one wins.
        # Read as naive UTC (DuckDB needs pytz to hand out aware datetimes).
        found[(rule, key)] = Incident(
            rule, key, incident, started.replace(tzinfo=dt.UTC), int(level), severity
        )
    return found


def load_open_incidents(db: str | Path) -> dict[tuple[str, str], Incident]:
    """The open incidents per ``(rule, key)``, read-only (what ``--dry-run`` compares with)."""
    with read_connection(db) as con:
        return _open_incidents(con)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK").fetchall()


def claim_transitions(
    db: str | Path,
    decide: Callable[[Mapping[tuple[str, str], Incident]], Sequence[AlertMessage]],
    *,
    run_id: str,
    now: dt.datetime | None = None,
    stale_after: dt.timedelta = dt.timedelta(minutes=10),
    attempts: int = 5,
    timeout_s: float = 30.0,
    retry_rule: str | None = None,
) -> Claimed:
    """Decide and claim, atomically, the messages this run sends (step 1 of the module
    docstring).

    ``decide`` gets the open incidents and returns the transitions to make; it runs inside the
    transaction, and again if a racing run committed first. The result lists what this run
    inserted plus the failed (or stale) rows of earlier runs it took over for a retry (only
    those of ``retry_rule`` when given: ``report --notify`` retries digests, not alerts).
    """
    now = now or dt.datetime.now(dt.UTC)
    last: Exception | None = None
    for _ in range(attempts):
        with write_connection(db, timeout_s=timeout_s) as con:
            con.execute("BEGIN TRANSACTION").fetchall()
            try:
                decided = list(decide(_open_incidents(con)))
                for m in decided:
                    con.execute(
                        "INSERT INTO alerts (rule, key, incident, transition, level, severity, "
                        "started_at, evaluated_at, created_at, message, status, attempts, "
                        "claimed_by, claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        [
                            m.rule,
                            m.key,
                            m.incident,
                            m.transition_key,
                            m.level,
                            m.severity,
                            m.started_at,
                            m.as_of,
                            now,
                            m.to_json(),
                            SENDING,
                            run_id,
                            now,
                        ],
                    ).fetchall()
                con.execute(
                    "UPDATE alerts SET status = ?, claimed_by = ?, claimed_at = ? "
                    "WHERE (status = ? OR (status = ? AND claimed_at < ?)) "
                    "AND (? IS NULL OR rule = ?)",
                    [SENDING, run_id, now, FAILED, SENDING, now - stale_after]
                    + [retry_rule, retry_rule],
                ).fetchall()
                rows = con.execute(
                    "SELECT message, delivered_to FROM alerts WHERE claimed_by = ? AND status = ? "
                    "ORDER BY created_at, started_at, rule, key, transition",
                    [run_id, SENDING],
                ).fetchall()
                con.execute("COMMIT").fetchall()
            except _CONFLICT as exc:
                # A racing run committed the same transition first: decide again on its state.
                _rollback(con)
                last = exc
                continue
            except Exception:
                _rollback(con)
                raise
        to_send = [
            (AlertMessage.from_json(text), frozenset(filter(None, (done or "").split(","))))
            for text, done in rows
        ]
        return Claimed(decided=decided, to_send=to_send)
    raise StoreError(f"could not record alert state after {attempts} attempts: {last}")


def record_deliveries(
    db: str | Path,
    deliveries: Sequence[Delivery],
    *,
    run_id: str,
    now: dt.datetime | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Write each delivery's outcome (step 3): status, sinks done, attempts, last error.

    Only rows still claimed by ``run_id`` are updated: a row another run reclaimed as stale
    belongs to that run now.
    """
    if not deliveries:
        return
    now = now or dt.datetime.now(dt.UTC)
    with write_connection(db, timeout_s=timeout_s) as con:
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            for d in deliveries:
                m = d.message
                con.execute(
                    "UPDATE alerts SET status = ?, delivered_to = ?, attempts = attempts + 1, "
                    "delivered_at = CASE WHEN ? = 'sent' THEN ? ELSE delivered_at END, "
                    "last_error = ? "
                    "WHERE rule = ? AND key = ? AND incident = ? AND transition = ? "
                    "AND claimed_by = ?",
                    [
                        d.status,
                        ",".join(sorted(d.delivered_to)) or None,
                        d.status,
                        now,
                        scrub(d.error) if d.error else None,
                        m.rule,
                        m.key,
                        m.incident,
                        m.transition_key,
                        run_id,
                    ],
                ).fetchall()
            con.execute("COMMIT").fetchall()
        except Exception:
            _rollback(con)
            raise
