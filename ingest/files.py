"""``clauditor ingest``: OTLP/JSON-lines files (plain or gzip) into the ``calls`` table.

Each line is one ``ExportTraceServiceRequest``, as the OpenTelemetry Collector's file exporter
writes it. A line that is not JSON, or not that shape, is rejected whole; a bad span inside a
good line is rejected alone; everything else is ingested. Rejections are counted, kept (the
first 100) in the summary with their ``path:line``, and stored in the ``quarantine`` table in
the same transaction as the batch they were met in.

Rows are written in batches of ``batch_size``, each priced and appended in one transaction, so
a crash leaves the database consistent and the run can simply be repeated: ``span_id`` dedupes.
Gzip is recognised by its magic bytes, whatever the file is called.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import duckdb
import polars as pl

from clauditor.config import Config
from clauditor.errors import IngestError
from clauditor.pricing import PriceTable, load_price_table, price_calls
from clauditor.redact import is_secret_key, scrub
from clauditor.schema import CALLS_SCHEMA
from clauditor.semconv import SECRET_KEY_MARKERS
from clauditor.store import drain_spool, read_connection, write_calls

from .columnar import ChunkParser, columnar_supported
from .normalize import ROW_COLUMNS, SpanRecord, SpanRejected, _row
from .otlp_json import iter_otlp_json_spans

__all__ = ["INGEST_SUFFIXES", "IngestSummary", "Rejection", "ingest_paths"]

INGEST_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
MAX_KEPT_REJECTIONS = 100
MAX_PAYLOAD_CHARS = 2000
_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY_LINES = 2000
# Columnar engine: lines handed to DuckDB at a time (bounds memory; big enough to amortize).
CHUNK_BYTES = 32 * 1024 * 1024
CHUNK_LINES = 50_000


@dataclass
class Rejection:
    """One rejected line or span: ``origin`` is ``path:line``, ``reason`` says what is wrong."""

    origin: str
    reason: str


@dataclass
class IngestSummary:
    """What one ingest run did.

    ``spans_read`` counts every span met (rejected and ignored ones included); ``ignored`` are
    spans that are not Claude API calls (HTTP, app spans); ``rejected`` counts rejected spans
    plus rejected whole lines; ``unpriced`` are written rows whose model has no price.
    ``rejections`` keeps the first 100; all of them are in the ``quarantine`` table.
    """

    files: int = 0
    lines: int = 0
    spans_read: int = 0
    calls_written: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    unpriced: int = 0
    rejections: list[Rejection] = field(default_factory=list)


# --- finding and opening files -------------------------------------------------------------------


def _discover(paths: Sequence[str | Path]) -> list[Path]:
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.name.lower().endswith(INGEST_SUFFIXES)
                )
            )
        elif path.is_file():
            found.append(path)  # named explicitly: read whatever it is called
        elif path.exists():
            raise IngestError(f"{path}: not a regular file or folder")
        else:
            raise IngestError(f"{path}: no such file or folder")
    return found


def _open(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(line stream, underlying raw file): the raw file's position measures progress."""
    try:
        raw = open(path, "rb")  # noqa: SIM115  (closed by the caller)
    except OSError as exc:
        raise IngestError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        if raw.peek(2)[:2] != _GZIP_MAGIC:  # type: ignore[attr-defined]
            return raw, raw
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
        stream.peek(1)  # reads the header now: a broken one fails here, before any line
        return stream, raw  # type: ignore[return-value]
    except (OSError, EOFError, zlib.error) as exc:
        raw.close()
        raise IngestError(f"{path}: cannot read gzip data: {exc}") from None


# --- payloads for the quarantine ----------------------------------------------------------------


def _scrub_tree(value: Any) -> Any:
    """``value`` with secret-named keys (plain or OTLP ``{"key": ...}`` pairs) dropped and
    secrets scrubbed from strings."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        key = value.get("key")
        if isinstance(key, str) and is_secret_key(key):
            return None
        return {
            k: _scrub_tree(v)
            for k, v in value.items()
            if not (isinstance(k, str) and is_secret_key(k))
        }
    if isinstance(value, list):
        return [v for v in (_scrub_tree(item) for item in value) if v is not None]
    return value


def _safe_payload(value: Any) -> str:
    """A scrubbed, truncated text of a rejected span or line, fit for the quarantine table."""
    if isinstance(value, bytes | str):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        try:
            value = json.loads(text)
        except ValueError:
            # Not JSON: scrub what can be recognised, and cut before any secret-named field,
            # whose value cannot be located reliably in broken text.
            text = scrub(text)
            lowered = text.lower()
            cut = min((i for m in SECRET_KEY_MARKERS if (i := lowered.find(m)) >= 0), default=-1)
            if cut >= 0:
                text = text[:cut] + "[REDACTED: rest withheld]"
            return text[:MAX_PAYLOAD_CHARS]
    if isinstance(value, SpanRecord):
        value = {
            "traceId": value.trace_id,
            "spanId": value.span_id,
            "parentSpanId": value.parent_span_id,
            "name": value.name,
            "startTimeUnixNano": value.start_ns,
            "endTimeUnixNano": value.end_ns,
            "status": {"code": value.status_code, "message": value.status_message},
            "scope": {"name": value.scope_name, "version": value.scope_version},
            "attributes": value.attributes,
            "resource": value.resource,
        }
    text = json.dumps(_scrub_tree(value), separators=(",", ":"), default=str)
    return scrub(text)[:MAX_PAYLOAD_CHARS]


# --- batches ---------------------------------------------------------------------------------

# Built with Int64 where the table has INTEGER (conform() casts down on write, overflow -> NULL)
# and with the times as Int64 microseconds, cast to Datetime once per batch.
_BUILD_DTYPES = {
    name: pl.Int64 if dtype == pl.Int32 or name in ("start_time", "end_time") else dtype
    for name, dtype in CALLS_SCHEMA.items()
    if name in ROW_COLUMNS
}


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A ``calls`` frame (no costs) from :func:`_row` dicts; times arrive as Unix microseconds."""
    return pl.DataFrame(rows, schema=_BUILD_DTYPES).with_columns(
        pl.col("start_time").cast(pl.Datetime("us", "UTC")),
        pl.col("end_time").cast(pl.Datetime("us", "UTC")),
    )


def _conform_fast(frame: pl.DataFrame) -> pl.DataFrame:
    """A SQL-made frame with the dtypes :func:`_frame` gives (plus the order keys)."""
    return frame.with_columns(
        [pl.col(n).cast(t) for n, t in _BUILD_DTYPES.items() if n not in ("start_time", "end_time")]
        + [
            pl.col("start_time").cast(pl.Int64).cast(pl.Datetime("us", "UTC")),
            pl.col("end_time").cast(pl.Int64).cast(pl.Datetime("us", "UTC")),
            pl.col("_g", "_ri", "_si", "_pi").cast(pl.Int64),
        ]
    )


class _Batcher:
    """Collects rows and rejections; :meth:`flush` writes them in one transaction."""

    def __init__(self, db: Path, table: PriceTable, summary: IngestSummary, size: int) -> None:
        self.db = db
        self.table = table
        self.summary = summary
        self.size = max(1, size)
        self.rows: list[dict[str, Any]] = []
        # Columnar engine: SQL-made frames (with their file-order keys) and the file-order keys
        # of the rows in ``rows`` (which then come from the lines left to Python).
        self.frames: list[pl.DataFrame] = []
        self.frame_rows = 0
        self.row_keys: list[tuple[int, int]] = []
        self.quarantine: list[tuple[str, str, str]] = []
        self.files_done: list[tuple[str, int, int, int, int]] = []

    def reject(self, origin: str, reason: str, payload: Any) -> None:
        summary = self.summary
        summary.rejected += 1
        if len(summary.rejections) < MAX_KEPT_REJECTIONS:
            summary.rejections.append(Rejection(origin, reason))
        self.quarantine.append((origin, reason, _safe_payload(payload)))

    def _record_side_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.quarantine:
            q = pl.DataFrame(  # noqa: F841  (DuckDB reads the local by name)
                self.quarantine, schema=["origin", "reason", "payload"], orient="row"
            )
            # A re-run over the same bad input must not pile up copies of the same entries.
            con.execute(
                "INSERT INTO quarantine SELECT DISTINCT now(), origin, reason, payload FROM q "
                "WHERE NOT EXISTS (SELECT 1 FROM quarantine t "
                "WHERE t.origin = q.origin AND t.reason = q.reason)"
            ).fetchall()
        if self.files_done:
            f = pl.DataFrame(  # noqa: F841
                self.files_done,
                schema=["path", "size", "mtime_ns", "spans", "rejected"],
                orient="row",
            )
            con.execute(
                "INSERT OR REPLACE INTO ingested_files "
                "SELECT path, size, mtime_ns, now(), spans, rejected FROM f"
            ).fetchall()

    def _ordered(self, upto: int | None) -> pl.DataFrame:
        """The pending rows of lines up to ``upto`` (all when None), in file order."""
        order = ["_g", "_ri", "_si", "_pi"]
        parts = []
        if self.rows:
            keys = pl.DataFrame(self.row_keys, schema=["_g", "_pi"], orient="row")
            parts.append(
                pl.concat([_frame(self.rows), keys], how="horizontal").with_columns(
                    pl.lit(0, pl.Int64).alias("_ri"), pl.lit(0, pl.Int64).alias("_si")
                )
            )
            self.rows, self.row_keys = [], []
        if self.frames:
            frames = pl.concat(self.frames, how="vertical_relaxed")
            if upto is None:
                now, later = frames, frames.clear()
            else:
                now, later = frames.filter(pl.col("_g") <= upto), frames.filter(pl.col("_g") > upto)
            self.frames = [later] if later.height else []
            self.frame_rows = 0  # every line counted so far is <= upto: its rows go now
            parts.append(_conform_fast(now))
        if not parts:
            return _frame([])
        columns = [*_BUILD_DTYPES, *order]
        merged = pl.concat([p.select(columns) for p in parts], how="vertical_relaxed")
        return merged.sort(order).drop(order)

    def _existing(self, span_ids: list[str]) -> set[str]:
        """Which of ``span_ids`` are stored already (to count only new unpriced rows)."""
        if not span_ids or not self.db.exists():
            return set()
        ids = pl.DataFrame({"span_id": span_ids})  # noqa: F841
        with read_connection(self.db) as con:
            rows = con.execute("SELECT c.span_id FROM calls c JOIN ids USING (span_id)").fetchall()
        return {r[0] for r in rows}

    def pending(self) -> int:
        """Rows waiting for the next write."""
        return len(self.rows) + self.frame_rows

    def flush(self, *, force: bool = False, upto: int | None = None) -> None:
        """Write the pending rows; with ``upto`` (columnar engine), those of lines up to that
        line ordinal, in file order, keeping the rest of the SQL-made frames pending."""
        if not self.pending() and not (force and (self.quarantine or self.files_done)):
            return
        if self.frames or self.row_keys:
            rows = self._ordered(upto)
        else:
            rows = _frame(self.rows) if self.rows else None
            self.rows = []
        frame = price_calls(rows, self.table) if rows is not None and rows.height else None
        unpriced_ids: list[str] = []
        if frame is not None:
            unpriced_ids = frame.filter(pl.col("cost_usd").is_null())["span_id"].unique().to_list()
        already = self._existing(unpriced_ids)
        result = write_calls(
            self.db,
            frame if frame is not None else pl.DataFrame(schema=CALLS_SCHEMA),
            drain=False,
            before_commit=self._record_side_tables,
        )
        summary = self.summary
        summary.calls_written += result.inserted
        summary.duplicates += result.duplicates
        summary.unpriced += len(set(unpriced_ids) - already)
        self.quarantine = []
        self.files_done = []


# --- the ingest loop -------------------------------------------------------------------------


def _lines(stream: IO[bytes], path: Path, batcher: _Batcher) -> Iterator[tuple[int, bytes]]:
    """Numbered lines; a gzip stream that breaks off is one rejection, not an exception."""
    number = 0
    try:
        for number, line in enumerate(stream, 1):  # noqa: B007  (used after the loop)
            yield number, line
    except (OSError, EOFError, zlib.error) as exc:
        batcher.reject(f"{path}:{number + 1}", f"cannot read further: {exc}", b"")


def _python_line(
    name: str,
    number: int,
    line: bytes,
    batcher: _Batcher,
    feature_attributes: tuple[str, ...],
    order: int | None,
) -> bool:
    """One line the Python way: rows to ``batcher.rows``, rejections to the batcher.

    ``order`` (columnar engine) is the line's ordinal, recorded with each row for file order.
    Returns whether the line was a request (only then may the caller flush, as it always did).
    """
    summary = batcher.summary
    try:
        request = json.loads(line)
    except ValueError as exc:  # UnicodeDecodeError included
        batcher.reject(f"{name}:{number}", f"not valid JSON: {exc}", line)
        return False
    try:
        items = list(iter_otlp_json_spans(request))
    except SpanRejected as exc:
        batcher.reject(f"{name}:{number}", exc.reason, line)
        return False
    rows = batcher.rows
    for item in items:
        summary.spans_read += 1
        if type(item) is SpanRejected:
            batcher.reject(f"{name}:{number}", item.reason, item.payload)
            continue
        try:
            row = _row(item, feature_attributes)  # type: ignore[arg-type]
        except SpanRejected as exc:
            batcher.reject(f"{name}:{number}", exc.reason, item)
            continue
        if row is None:
            summary.ignored += 1
        else:
            rows.append(row)
            if order is not None:
                batcher.row_keys.append((order, len(batcher.row_keys)))
    return True


def _ingest_file(
    path: Path,
    batcher: _Batcher,
    feature_attributes: tuple[str, ...],
    on_progress: Callable[[int], None],
) -> None:
    summary = batcher.summary
    stat = path.stat()
    stream, raw = _open(path)
    spans_before = summary.spans_read
    rejected_before = summary.rejected
    name = str(path)
    try:
        for number, line in _lines(stream, path, batcher):
            if line.isspace():
                continue
            summary.lines += 1
            if _python_line(name, number, line, batcher, feature_attributes, None) and (
                len(batcher.rows) >= batcher.size or len(batcher.quarantine) >= batcher.size
            ):
                # Rejections count too: a file of nothing but bad lines must not pile up.
                batcher.flush()
            if number % _PROGRESS_EVERY_LINES == 0:
                on_progress(raw.tell())
    finally:
        stream.close()
        raw.close()
    batcher.files_done.append(
        (
            str(path.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            summary.spans_read - spans_before,
            summary.rejected - rejected_before,
        )
    )
    summary.files += 1


def _ingest_file_columnar(
    path: Path,
    batcher: _Batcher,
    parser: ChunkParser,
    feature_attributes: tuple[str, ...],
    on_progress: Callable[[int], None],
    ordinal: list[int],
) -> None:
    """:func:`_ingest_file` with the lines decided in SQL where SQL can (see ``.columnar``).

    Same counts, rows, rejections (in the same order) and batch boundaries as the Python path:
    lines are read in chunks, SQL normalizes the regular ones, Python the rest, and then the
    lines are walked in order to count and to flush exactly where the Python path would.
    ``ordinal`` holds the run-wide line counter (file order across files).
    """
    summary = batcher.summary
    stat = path.stat()
    stream, raw = _open(path)
    spans_before = summary.spans_read
    rejected_before = summary.rejected
    name = str(path)
    number = 0
    broken: str | None = None
    try:
        while True:
            chunk: list[tuple[int, int, bytes]] = []  # (ordinal, line number, line)
            size = 0
            try:
                for line in stream:
                    number += 1
                    if line.isspace():
                        continue
                    ordinal[0] += 1
                    chunk.append((ordinal[0], number, line))
                    size += len(line)
                    if size >= CHUNK_BYTES or len(chunk) >= CHUNK_LINES:
                        break
            except (OSError, EOFError, zlib.error) as exc:
                broken = f"cannot read further: {exc}"
            if chunk:
                _columnar_chunk(name, chunk, batcher, parser, feature_attributes)
                on_progress(raw.tell())
            if broken is not None:
                batcher.reject(f"{path}:{number + 1}", broken, b"")
                break
            if not chunk:
                break
    finally:
        stream.close()
        raw.close()
    batcher.files_done.append(
        (
            str(path.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            summary.spans_read - spans_before,
            summary.rejected - rejected_before,
        )
    )
    summary.files += 1


def _columnar_chunk(
    name: str,
    chunk: list[tuple[int, int, bytes]],
    batcher: _Batcher,
    parser: ChunkParser,
    feature_attributes: tuple[str, ...],
) -> None:
    summary = batcher.summary
    gs: list[int] = []
    texts: list[str] = []
    for g, _, line in chunk:
        if line.isascii():  # anything else is Python's (see .columnar)
            gs.append(g)
            texts.append(line.decode("ascii"))
    result = parser.parse(gs, texts) if gs else None
    sql_lines = set(gs) - result.python_lines if result is not None else set()
    if result is not None and result.rows.height:
        batcher.frames.append(result.rows)
    stats = result.stats if result is not None else {}
    size = batcher.size
    for g, number, line in chunk:
        summary.lines += 1
        if g in sql_lines:
            spans, rows = stats.get(g, (0, 0))
            summary.spans_read += spans
            summary.ignored += spans - rows
            batcher.frame_rows += rows
        elif not _python_line(name, number, line, batcher, feature_attributes, g):
            continue  # as in the Python path: no flush after a rejected line
        if batcher.pending() >= size or len(batcher.quarantine) >= size:
            batcher.flush(upto=g)


def ingest_paths(
    paths: Sequence[str | Path],
    db: str | Path,
    *,
    config: Config | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 50_000,
    engine: str = "python",
) -> IngestSummary:
    """Ingest every OTLP/JSON-lines file under ``paths`` into the database ``db``.

    ``paths`` are files (read whatever their name) or folders (searched recursively for
    ``*.json``, ``*.jsonl`` and their ``.gz`` forms). ``config`` supplies price overrides and
    the feature attribute keys. ``progress(bytes_done, bytes_total)`` is called now and then,
    in bytes of the files as stored (compressed for gzip).

    ``engine="python"`` (the default) does every line in Python; ``engine="columnar"`` parses
    and normalizes in DuckDB, handing unusual lines to the Python path (not yet faster: see
    benchmarks/ingest_throughput.py). Both store the same
    rows and report the same summary (``clauditor.ingest.columnar`` lists the one harmless
    difference).

    Re-running over the same input writes nothing new: every span counts as a duplicate.
    Raises :class:`~clauditor.errors.IngestError` only when an input cannot be read at all
    (missing, unreadable, a broken gzip header); bad lines and spans are rejected and counted.
    """
    if engine not in ("columnar", "python"):
        raise ValueError(f"engine must be 'columnar' or 'python', not {engine!r}")
    config = config or Config()
    db = Path(db)
    files = _discover(paths)
    sizes = [_size(p) for p in files]
    total = sum(sizes)
    summary = IngestSummary()
    batcher = _Batcher(db, load_price_table(config.prices), summary, batch_size)
    feature_attributes = tuple(config.feature_attributes)
    done_before = 0

    def report(position: int) -> None:
        if progress is not None:
            progress(min(done_before + position, total), total)

    # Parsing allocates millions of small containers that all live until their batch is
    # written; the cyclic collector would re-scan them over and over for nothing (none of them
    # forms a cycle). Paused for the run, restored whatever happens.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    parser = (
        ChunkParser(feature_attributes) if engine == "columnar" and columnar_supported() else None
    )
    ordinal = [0]
    try:
        for path, size in zip(files, sizes, strict=True):
            if parser is None:
                _ingest_file(path, batcher, feature_attributes, report)
            else:
                _ingest_file_columnar(path, batcher, parser, feature_attributes, report, ordinal)
            done_before += size
            report(0)
        batcher.flush(force=True)
    finally:
        if parser is not None:
            parser.close()
        if gc_was_enabled:
            gc.enable()
    drained = drain_spool(db)
    summary.calls_written += drained.inserted
    summary.duplicates += drained.duplicates
    return summary


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None
