"""The write side of ingest: the receiver's queue in front of the one writer, and the front
half every write shares.

:func:`price_batch` is what every ingest path (file ingest, the receiver, the in-process
exporter) does to a batch before handing it to :class:`clauditor.store.Writer`, the one writer
(held connection, optimistic insert, side tables, quarantine, spool drain): one row per call,
priced.

DuckDB admits one writing process, so every receiver (HTTP and gRPC) hands its work to one
:class:`WriteQueue`: a bounded queue of :class:`Prepared` batches and one thread that takes
everything waiting (group commit, up to ``max_rows_per_write`` rows), prices it and writes it
through the writer in ONE transaction with its quarantined spans. The file is opened when work
arrives and kept open while work keeps coming (the next batch arriving within ``linger_s`` of
the last commit), and never longer than ``max_hold_s`` at a stretch (readers such as
``clauditor query`` retry with backoff and get their turn). Opening and closing the file (a
checkpoint) costs more than writing a few thousand rows, so under load this is what makes the
throughput.

Acknowledgement rule (what makes "exactly once" hold): a receiver answers 200 only after the
transaction holding its batch has committed. A crash before the commit leaves the request
unanswered, so the sender retries it; a crash after the commit but before the answer also makes
the sender retry, and ``span_id`` dedupe keeps the second copy out. A full
queue is refused at once (:class:`QueueFull`, which the receivers turn into 503 + Retry-After /
gRPC UNAVAILABLE) rather than accepted and held in memory where a crash would lose it.

:func:`prepare` is the shared front half: records -> normalized rows, rejections with reasons
(they go to the ``quarantine`` table), ignored non-Claude spans counted, oversized attribute
values cut down.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from clauditor.ingest.lines import BUILD_DTYPES, safe_payload
from clauditor.ingest.normalize import SpanRecord, SpanRejected, one_row_per_call, record_row
from clauditor.pricing import PriceTable, load_price_table, price_calls
from clauditor.redact import ScrubLogRecords, scrub
from clauditor.store import Writer, WriteResult

__all__ = [
    "MAX_ATTRIBUTE_CHARS",
    "Prepared",
    "QueueFull",
    "WriteQueue",
    "prepare",
    "price_batch",
    "rows_frame",
]

_log = logging.getLogger("clauditor.ingest.writer")
_log.addFilter(ScrubLogRecords())  # database errors may quote the values they refused

MAX_ATTRIBUTE_CHARS = 64 * 1024  # longer string values are cut: a call's cost is not in them
MAX_MESSAGE_REASONS = 5  # distinct reasons named in a partial-success message
_STOP = object()


@dataclass
class Prepared:
    """One request's spans, ready for the writer.

    ``rows`` are normalized ``calls`` rows without costs (times as Unix microseconds);
    ``quarantine`` holds ``(origin, reason, payload)`` entries; ``rejected`` counts spans that
    will not be stored, ``ignored`` spans that are not Claude calls (accepted, not stored),
    ``truncated`` spans kept with an oversized attribute value cut down. A logs or metrics
    request also says how many ``log_records`` / ``metric_points`` it held (Claude Code's call
    events among the log records count as its spans).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[tuple[str, str, str]] = field(default_factory=list)
    spans: int = 0
    rejected: int = 0
    ignored: int = 0
    truncated: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    log_records: int = 0
    metric_points: int = 0

    def reject(self, origin: str, reason: str, payload: Any) -> None:
        """Count a rejected span and queue it for the quarantine table."""
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.quarantine.append((origin, reason, safe_payload(payload)))

    def error_message(self) -> str:
        """The partial-success message: how many spans were rejected and why (first reasons)."""
        if not self.rejected:
            return ""
        parts = [f"{reason} (x{n})" if n > 1 else reason for reason, n in self.reasons.items()]
        more = len(parts) - MAX_MESSAGE_REASONS
        text = "; ".join(parts[:MAX_MESSAGE_REASONS]) + (f"; and {more} more" if more > 0 else "")
        return f"{self.rejected} span(s) rejected: {text}"


def _clip_record(record: SpanRecord) -> list[tuple[str, int]]:
    """Scrub, then cut, string attribute values longer than :data:`MAX_ATTRIBUTE_CHARS` in
    place; the keys cut and their lengths as sent.

    Scrubbing comes first because a cut splits what the scrubber must see whole: a JSON text
    with an ``authorization`` field no longer parses once cut, and a token cut short is no
    longer recognised.
    """
    cut: list[tuple[str, int]] = []
    attributes = record.attributes
    for key, value in attributes.items():
        if type(value) is str and len(value) > MAX_ATTRIBUTE_CHARS:
            cut.append((key, len(value)))
    kept: list[tuple[str, int]] = []
    for key, length in cut:
        scrubbed = scrub(attributes[key])
        if len(scrubbed) > MAX_ATTRIBUTE_CHARS:
            scrubbed = scrubbed[:MAX_ATTRIBUTE_CHARS] + f"...[cut from {length:,} chars]"
            kept.append((key, length))
        attributes[key] = scrubbed
    return kept


def prepare(
    items: Iterable[SpanRecord | SpanRejected],
    origin: str,
    feature_attributes: Sequence[str],
) -> Prepared:
    """Normalize ``items`` (records, or rejections from a decoder) into a :class:`Prepared`.

    ``origin`` names the request for the quarantine table (``otlp-http 10.0.0.5:5123``); each
    rejected span gets ``origin span <span_id>``. A span with a string attribute value over
    :data:`MAX_ATTRIBUTE_CHARS` is KEPT (its tokens and cost are intact) with that value cut,
    and a quarantine entry records the cut.
    """
    out = Prepared()
    rows = out.rows
    features = tuple(feature_attributes)
    for item in items:
        out.spans += 1
        if type(item) is SpanRejected:
            out.reject(origin, item.reason, item.payload)
            continue
        record: SpanRecord = item  # type: ignore[assignment]
        cut = _clip_record(record)
        where = f"{origin} span {record.span_id!s:.32}"
        try:
            row = record_row(record, features)
        except SpanRejected as exc:
            out.reject(where, exc.reason, record)
            continue
        except RecursionError:
            out.reject(where, "attribute values nested too deeply", None)
            continue
        if row is None:
            out.ignored += 1
            continue
        rows.append(row)
        if cut:
            out.truncated += 1
            what = ", ".join(f"{key} ({n:,} chars)" for key, n in cut)
            out.quarantine.append(
                (
                    where,
                    f"kept, oversized attribute value cut to {MAX_ATTRIBUTE_CHARS:,} chars: {what}",
                    safe_payload(record),
                )
            )
    return out


def rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A ``calls`` frame (no costs) from normalized rows whose times are Unix microseconds."""
    columns = [
        pl.Series(name, [row[name] for row in rows], dtype=dtype, strict=False)
        for name, dtype in BUILD_DTYPES.items()
    ]
    return pl.DataFrame(columns).with_columns(
        pl.col("start_time").cast(pl.Datetime("us", "UTC")),
        pl.col("end_time").cast(pl.Datetime("us", "UTC")),
    )


def price_batch(rows: pl.DataFrame, prices: PriceTable) -> pl.DataFrame:
    """The front half of every write: ``rows`` (normalized ``calls`` rows, no costs) with one
    row per call (:func:`.normalize.one_row_per_call`: two instrumentations describing one
    call are billed once), priced. File ingest, the receiver and the exporter all hand this to
    :class:`clauditor.store.Writer`."""
    return price_calls(one_row_per_call(rows), prices)


class QueueFull(Exception):
    """The write queue holds its maximum of batches: the sender should retry later."""


@dataclass
class _Job:
    prepared: Prepared
    future: concurrent.futures.Future[None]


@dataclass
class WriterStats:
    """Counters since start; read them for /healthz and benchmarks."""

    batches_written: int = 0
    writes: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    write_failures: int = 0
    refused_full: int = 0
    sessions: int = 0  # times the file was opened for writing


class WriteQueue:
    """A bounded queue of batches and the one thread that writes them (see module docstring).

    ``submit`` returns a future that completes (``None``) once the batch is committed, or holds
    the exception when the write failed (the file stayed locked past ``write_timeout_s``, say);
    it raises :class:`QueueFull` at once when ``max_batches`` are already waiting. ``close``
    refuses new work, writes everything queued, and joins the thread. Spooled batches (written
    beside the database by busy in-process exporters) are drained when the thread starts.
    """

    def __init__(
        self,
        db: str | Path,
        *,
        prices: PriceTable | None = None,
        max_batches: int = 64,
        max_rows_per_write: int = 100_000,
        write_timeout_s: float = 30.0,
        max_hold_s: float = 1.0,
        linger_s: float = 0.05,
    ) -> None:
        self.db = Path(db)
        self.prices = prices or load_price_table()
        self._named_unpriced: set[str] = set()
        self.max_rows_per_write = max(1, max_rows_per_write)
        self.write_timeout_s = write_timeout_s
        self.max_hold_s = max_hold_s
        self.linger_s = max(0.0, linger_s)
        self.stats = WriterStats()
        # Held for a whole session: _session closes it (hold_s is the session's business).
        self._writer = Writer(self.db, timeout_s=write_timeout_s, hold_s=float("inf"))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_batches))
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="clauditor-writer", daemon=True)

    def start(self) -> WriteQueue:
        """Start the writer thread (once)."""
        if not self._thread.is_alive():
            self._thread.start()
        return self

    @property
    def depth(self) -> int:
        """Batches waiting (not counting the one being written)."""
        return self._queue.qsize()

    def submit(self, prepared: Prepared) -> concurrent.futures.Future[None]:
        """Queue ``prepared`` for writing; its future completes after the commit."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise QueueFull("the receiver is shutting down")
            try:
                self._queue.put_nowait(_Job(prepared, future))
            except queue.Full:
                self.stats.refused_full += 1
                raise QueueFull(
                    f"write queue full ({self._queue.maxsize} batches waiting)"
                ) from None
        return future

    def close(self, timeout: float | None = None) -> None:
        """Refuse new batches, write every queued one, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)  # FIFO: after every batch already queued
            self._thread.join(timeout)

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._writer.drain()  # batches an exporter spooled
        except Exception as exc:
            _log.warning("spool not drained: %s", exc)
        finally:
            self._writer.close()
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            try:
                stopping = self._session(item)
            except Exception:  # a bug must not kill the only writer and hang every request
                _log.exception("writer session failed")

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus every batch already waiting, up to ``max_rows_per_write`` rows;
        and whether the stop marker was met."""
        group = [first]
        rows = len(first.prepared.rows)
        while rows < self.max_rows_per_write:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is _STOP:
                return group, True
            group.append(more)
            rows += len(more.prepared.rows)
        return group, False

    def _session(self, first: _Job) -> bool:
        """Open the file, write ``first``'s group and, while more work keeps arriving (within
        ``linger_s`` of the last commit), the following groups, for at most ``max_hold_s`` so
        that readers get their turn; then close. Returns whether the stop marker was met.

        Each group's senders are answered as soon as its transaction has committed, before
        the file is closed: a sender that then opens the database itself waits at most
        ``linger_s`` (readers retry with backoff), and under load the file is not reopened
        and checkpointed for every batch.
        """
        group, stopping = self._collect(first)
        writer = self._writer
        try:
            writer.connection()
        except Exception as exc:
            self._settle([(job, exc) for job in group])
            return stopping
        self.stats.sessions += 1
        outcomes: list[tuple[_Job, Exception | None]] = []
        try:
            held_since = time.monotonic()
            while True:
                outcomes = self._write_group(group)
                if stopping:
                    return True
                self._settle(outcomes)
                outcomes = []
                left = self.max_hold_s - (time.monotonic() - held_since)
                if left <= 0:
                    return False
                try:
                    item = self._queue.get(timeout=min(self.linger_s, left))
                except queue.Empty:
                    return False
                if item is _STOP:
                    return True
                group, stopping = self._collect(item)
        finally:
            try:
                writer.close()
            except Exception as exc:  # committed rows are safe; only the close failed
                _log.warning("closing the database failed: %s", exc)
            self._settle(outcomes)

    def _write_group(self, group: list[_Job]) -> list[tuple[_Job, Exception | None]]:
        """Write ``group`` in one transaction; each job with its error (None: committed)."""
        try:
            self._write([job.prepared for job in group])
        except Exception as exc:
            if len(group) == 1:
                return [(group[0], exc)]
            # One bad batch must not sink the others: write them one by one.
            outcomes: list[tuple[_Job, Exception | None]] = []
            for job in group:
                try:
                    self._write([job.prepared])
                except Exception as single:
                    outcomes.append((job, single))
                else:
                    outcomes.append((job, None))
            return outcomes
        return [(job, None) for job in group]

    def _settle(self, outcomes: list[tuple[_Job, Exception | None]]) -> None:
        for job, exc in outcomes:
            if exc is not None:
                self.stats.write_failures += 1
                _log.warning("batch of %d rows not written: %s", len(job.prepared.rows), exc)
            if job.future.done():  # the waiting request went away (client disconnected)
                continue
            if exc is None:
                job.future.set_result(None)
            else:
                job.future.set_exception(exc)

    def _name_unpriced(self, frame: pl.DataFrame) -> None:
        """Log each model without a price once per writer, however many spans it has."""
        models = (
            frame.filter(pl.col("cost_usd").is_null())
            .select(pl.coalesce("response_model", "request_model").fill_null("(no model)"))
            .to_series()
            .unique()
            .to_list()
        )
        for model in sorted(set(models) - self._named_unpriced):
            self._named_unpriced.add(model)
            _log.warning(
                "no price for model %r: its calls are stored unpriced until a rate card exists "
                "(`clauditor prices check`, then `clauditor reprice`)",
                model,
            )

    def _write(self, batches: list[Prepared]) -> WriteResult:
        """One transaction: the rows of ``batches`` and their quarantine entries."""
        rows = [row for batch in batches for row in batch.rows]
        entries = [entry for batch in batches for entry in batch.quarantine]
        frame = price_batch(rows_frame(rows), self.prices) if rows else None
        if frame is not None:
            self._name_unpriced(frame)
        result = self._writer.write(frame, quarantine=entries)
        stats = self.stats
        stats.writes += 1
        stats.batches_written += len(batches)
        stats.inserted += result.inserted
        stats.duplicates += result.duplicates
        stats.quarantined += len(entries)
        return result
