"""``clauditor ingest``: OTLP files (JSON lines, plain or gzip; Collector protobuf) into the
``calls`` table.

Each line is one ``ExportTraceServiceRequest``, as the OpenTelemetry Collector's file exporter
writes it. A line that is not JSON, or not that shape, is rejected whole; a bad span inside a
good line is rejected alone; everything else is ingested. Rejections are counted, kept (the
first 100) in the summary with their ``path:line``, and stored in the ``quarantine`` table in
the same transaction as the batch they were met in.

Rows are written in batches of ``batch_size``, each priced and appended in one transaction, so
a crash leaves the database consistent and the run can simply be repeated: ``span_id`` dedupes.
One connection serves consecutive batches for up to :data:`WRITE_HOLD_S` (then the file is
checkpointed and left free for readers a moment), like the receiver's writer.
Gzip is recognised by its magic bytes, whatever the file is called; protobuf files (the
Collector's ``format: proto``, see ``.otlp_proto``) by not starting like JSON or gzip.

Big inputs are parsed and normalized by worker processes (``.parallel``) while this process
prices and writes; the in-process loop here is the reference the parallel engine reproduces
exactly (counts, rejection order, batch boundaries).
"""

from __future__ import annotations

import gc
import gzip
import os
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import polars as pl

from clauditor.config import Config
from clauditor.errors import IngestError
from clauditor.ingest import parallel as parallel_module
from clauditor.ingest.claude_code import DEFAULT_FEATURE_ATTRIBUTE
from clauditor.ingest.lines import BUILD_DTYPES, build_frame, read_line, read_span, safe_payload
from clauditor.ingest.normalize import SpanRejected
from clauditor.ingest.otlp_proto import is_proto_file, iter_proto_file_spans
from clauditor.ingest.parallel import (
    ChunkResult,
    available_workers,
    columns_frame,
    iter_chunks,
    iter_ranges,
    parse_chunk,
    parse_range,
    start_pool,
)
from clauditor.ingest.writer import price_batch
from clauditor.pricing import PriceTable
from clauditor.store import IngestedFile, QuarantineEntry, Writer

__all__ = ["INGEST_SUFFIXES", "IngestSummary", "Rejection", "ingest_paths"]

INGEST_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".pb", ".binpb")
ENGINES = ("auto", "parallel", "python")
# engine="auto" starts worker processes only for this much input: below it, their start-up
# (about a second the first time) costs more than they save.
PARALLEL_MIN_BYTES = 16 * 1024 * 1024
MAX_KEPT_REJECTIONS = 100
_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY_LINES = 2000
# The write connection is kept open across batches (opening and closing a DuckDB file, and the
# checkpoint that closing forces, cost more than writing a batch), but given up after the
# first batch that ends past this many seconds, so that readers (``clauditor query`` during a
# long ingest, which retry for 10 s) get their turn.
WRITE_HOLD_S = 3.0
# While the connection is held, DuckDB folds its write-ahead log into the file (a checkpoint)
# only past this much log, not after every batch (its default is 16 MB, less than one batch):
# checkpoints cost about as much as the inserts. Memory held until then grows with it (the
# 1 GB peak-RSS budget over 5M spans is what sets it).
CHECKPOINT_THRESHOLD = "64MB"
# DuckDB's own memory on that connection (its default is most of the machine's RAM): a held
# connection keeps the table's blocks and key index cached between batches, which DuckDB
# drops again past this. With the workers and this process's frames, the whole ingest of 5M
# spans then stays under 1 GB.
WRITE_MEMORY_LIMIT = "400MB"


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
    # Unpriced calls written per model id as recorded: each model is named once, not per span.
    unpriced_models: dict[str, int] = field(default_factory=dict)
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


# --- batches ---------------------------------------------------------------------------------

_BUILD_DTYPES = BUILD_DTYPES
_frame = build_frame
_safe_payload = safe_payload


class _Batcher:
    """Collects rows and rejections; :meth:`flush` writes them through the one writer
    (:class:`clauditor.store.Writer`), in one transaction per batch."""

    OPTIMISTIC = True  # first batches unchecked (False: the benchmark's baseline)

    def __init__(self, db: Path, table: PriceTable, summary: IngestSummary, size: int) -> None:
        self.table = table
        self.summary = summary
        self.size = max(1, size)
        self.rows: list[tuple[Any, ...]] = []  # row tuples, ROW_COLUMNS order
        # Parallel engine: frames the workers built, in file order, each ready to write.
        self.parts: list[pl.DataFrame] = []
        self.part_rows = 0
        self.quarantine: list[QuarantineEntry] = []
        self.files_done: list[IngestedFile] = []
        self.writer = Writer(
            db,
            hold_s=WRITE_HOLD_S,
            optimistic=self.OPTIMISTIC,
            settings={
                "checkpoint_threshold": CHECKPOINT_THRESHOLD,
                "memory_limit": WRITE_MEMORY_LIMIT,
            },
        )

    def close(self) -> None:
        """Give up the write connection (the file is then checkpointed and free to readers)."""
        self.writer.close()

    def reject(self, origin: str, reason: str, payload: Any) -> None:
        self.reject_scrubbed(origin, reason, _safe_payload(payload))

    def reject_scrubbed(self, origin: str, reason: str, payload: str) -> None:
        """:meth:`reject` with the payload already made safe (by a worker)."""
        summary = self.summary
        summary.rejected += 1
        if len(summary.rejections) < MAX_KEPT_REJECTIONS:
            summary.rejections.append(Rejection(origin, reason))
        self.quarantine.append((origin, reason, payload))

    def add_part(self, frame: pl.DataFrame) -> None:
        """Queue a worker-built frame after everything pending (file order is kept)."""
        if self.rows:  # rows read in-process (a protobuf file) come first
            self.parts.append(_frame(self.rows))
            self.part_rows += len(self.rows)
            self.rows = []
        if frame.height:
            self.parts.append(frame)
            self.part_rows += frame.height

    def pending(self) -> int:
        """Rows waiting for the next write."""
        return len(self.rows) + self.part_rows

    def flush(self, *, force: bool = False) -> None:
        """Write the pending rows, in file order, with the pending side-table entries."""
        if not self.pending() and not (force and (self.quarantine or self.files_done)):
            return
        rows: pl.DataFrame | None
        if self.parts:
            self.add_part(_frame([]))  # takes any in-process rows along, in order
            rows = pl.concat(self.parts, how="vertical")
            self.parts, self.part_rows = [], 0
        else:
            rows = _frame(self.rows) if self.rows else None
            self.rows = []
        frame = price_batch(rows, self.table) if rows is not None and rows.height else None
        unpriced_ids: list[str] = []
        unpriced = None
        if frame is not None:
            unpriced = frame.filter(pl.col("cost_usd").is_null()).select(
                "span_id", pl.coalesce("response_model", "request_model").fill_null("(no model)")
            )
            unpriced_ids = unpriced["span_id"].unique().to_list()
        try:
            already = self.writer.stored(unpriced_ids)
        except BaseException:
            self.writer.close()
            raise
        result = self.writer.write(
            frame, quarantine=self.quarantine, files=self.files_done, release=force
        )
        summary = self.summary
        summary.calls_written += result.inserted
        summary.duplicates += result.duplicates
        summary.unpriced += len(set(unpriced_ids) - already)
        if unpriced is not None and unpriced.height:
            new = unpriced.filter(~pl.col("span_id").is_in(list(already)))
            for model, count in new.group_by(new.columns[1]).len().iter_rows():
                summary.unpriced_models[model] = summary.unpriced_models.get(model, 0) + count
        self.quarantine = []
        self.files_done = []

    def drain(self) -> None:
        """Write the batches busy exporters spooled beside the database (counted as written)."""
        try:
            drained = self.writer.drain()
        finally:
            self.writer.close()
        self.summary.calls_written += drained.inserted
        self.summary.duplicates += drained.duplicates


# --- the ingest loop -------------------------------------------------------------------------


def _lines(stream: IO[bytes], path: Path, batcher: _Batcher) -> Iterator[tuple[int, bytes]]:
    """Numbered lines; a gzip stream that breaks off is one rejection, not an exception."""
    number = 0
    try:
        for number, line in enumerate(stream, 1):  # noqa: B007  (used after the loop)
            yield number, line
    except (OSError, EOFError, zlib.error) as exc:
        batcher.reject(f"{path}:{number + 1}", f"cannot read further: {exc}", b"")


def _is_proto(path: Path) -> bool:
    try:
        return is_proto_file(path)
    except OSError:
        return False  # _open says what is wrong, in the words every other file gets


def _file_done(
    path: Path, stat: os.stat_result, batcher: _Batcher, spans_before: int, rejected_before: int
) -> None:
    summary = batcher.summary
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


def _ingest_proto_file(path: Path, batcher: _Batcher, feature_attributes: tuple[str, ...]) -> None:
    """A Collector protobuf file: each message counts as a line, each span as in a JSON line.

    A message that does not parse is rejected whole (``path:message N``) and, like a JSON line
    that does not parse, counts no spans.
    """
    summary = batcher.summary
    stat = path.stat()
    spans_before = summary.spans_read
    rejected_before = summary.rejected
    name = str(path)
    last = 0
    for number, item in iter_proto_file_spans(path):
        if number != last:
            summary.lines += 1
            last = number
        origin = f"{name}:message {number}"
        if isinstance(item, SpanRejected):
            batcher.reject(origin, item.reason, item.payload or b"")
        else:
            read_span(origin, item, batcher, feature_attributes)
        if batcher.pending() >= batcher.size or len(batcher.quarantine) >= batcher.size:
            batcher.flush()
    _file_done(path, stat, batcher, spans_before, rejected_before)


def _ingest_file(
    path: Path,
    batcher: _Batcher,
    feature_attributes: tuple[str, ...],
    on_progress: Callable[[int], None],
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> None:
    if _is_proto(path):
        _ingest_proto_file(path, batcher, feature_attributes)
        return
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
            if read_line(
                name,
                number,
                line,
                batcher,
                feature_attributes,
                claude_code_feature=claude_code_feature,
            ) and (len(batcher.rows) >= batcher.size or len(batcher.quarantine) >= batcher.size):
                # Rejections count too: a file of nothing but bad lines must not pile up.
                batcher.flush()
            if number % _PROGRESS_EVERY_LINES == 0:
                on_progress(raw.tell())
    finally:
        stream.close()
        raw.close()
    _file_done(path, stat, batcher, spans_before, rejected_before)


# --- the parallel engine (see .parallel) ------------------------------------------------------

# What the reader queues, in file order: a chunk in a worker, or something the parent does
# itself when it comes up (start a file, end it, ingest a protobuf file, raise an open error).
_Job = tuple[str, Any]


def _jobs(
    files: Sequence[Path],
    pool: ProcessPoolExecutor,
    feature_attributes: tuple[str, ...],
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> Generator[_Job, None, None]:
    """Read the files ahead of the parent, submitting every chunk to ``pool`` as it is read."""
    offset = 0
    for path in files:
        if _is_proto(path):
            yield "proto", path
            offset += path.stat().st_size
            continue
        try:
            stat = path.stat()
            stream, raw = _open(path)
        except (OSError, IngestError) as exc:
            yield "error", exc
            return
        yield "start", str(path)
        name = str(path)
        number = 1
        broken = None
        try:
            try:
                if stream is raw:
                    # A plain file: each worker reads its own byte range (whole lines), so
                    # the text never passes through this process or a pipe.
                    size = os.fstat(raw.fileno()).st_size
                    for start, end in iter_ranges(raw, size):
                        future = pool.submit(
                            parse_range,
                            name,
                            str(path),
                            start,
                            end,
                            feature_attributes,
                            claude_code_feature,
                        )
                        yield "chunk", (future, offset + end, True)
                else:
                    # gzip, line by line, so that a stream that breaks off gives the lines
                    # the in-process loop gives (see iter_chunks).
                    for first, count, lines in iter_chunks(stream):
                        future = pool.submit(
                            parse_chunk, name, first, lines, feature_attributes, claude_code_feature
                        )
                        yield "chunk", (future, offset + raw.tell(), False)
                        number = first + count
            except (OSError, EOFError, zlib.error) as exc:
                broken = (f"{path}:{number}", f"cannot read further: {exc}")
        finally:
            stream.close()
            raw.close()
        yield "end", (path, stat, broken)
        offset += stat.st_size


def _replay(result: ChunkResult, batcher: _Batcher, name: str, base: int) -> None:
    """Count a worker's chunk line by line and flush exactly where the in-process loop would.

    ``name`` is the file's name in rejections; ``base`` is added to the chunk's line numbers.
    """
    summary = batcher.summary
    size = batcher.size
    frame = columns_frame(result.columns)
    rejections = iter([(f"{name}:{base + n}", r, p) for n, r, p in result.rejections])
    taken = 0  # rows of this chunk already handed to the batcher
    done = 0  # rows of the lines replayed so far
    for request, spans, ignored, rows, rejected in result.lines:
        summary.lines += 1
        summary.spans_read += spans
        summary.ignored += ignored
        for _ in range(rejected):
            batcher.reject_scrubbed(*next(rejections))
        done += rows
        if request and (
            batcher.pending() + done - taken >= size or len(batcher.quarantine) >= size
        ):
            batcher.add_part(frame.slice(taken, done - taken))
            taken = done
            batcher.flush()
    if done > taken:
        batcher.add_part(frame.slice(taken, done - taken))


def _ingest_parallel(
    files: Sequence[Path],
    batcher: _Batcher,
    pool: ProcessPoolExecutor,
    feature_attributes: tuple[str, ...],
    report: Callable[[int], None],
    in_flight: int,
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> None:
    """Every file through the worker pool; the parent replays results in order and writes."""
    summary = batcher.summary
    queue: deque[_Job] = deque()
    chunks = 0
    before = (0, 0)
    name = ""
    base = 0  # lines of the current file before the next range chunk

    def settle(job: _Job) -> None:
        nonlocal before, name, base
        kind, value = job
        if kind == "chunk":
            future, position, relative = value
            try:
                result = future.result()
            except BrokenProcessPool:
                raise IngestError(
                    "an ingest worker process died (out of memory?); re-run the ingest, "
                    "or use engine='python'"
                ) from None
            except OSError as exc:  # a worker could not read its range of the file
                raise IngestError(f"{name}: cannot read: {exc}") from None
            if relative:  # a range chunk: numbered from 1 within itself
                _replay(result, batcher, name, base)
                base += result.newlines
            else:
                _replay(result, batcher, name, 0)
            report(position)
        elif kind == "start":
            before = (summary.spans_read, summary.rejected)
            name, base = value, 0
        elif kind == "end":
            path, stat, broken = value
            if broken is not None:
                batcher.reject(broken[0], broken[1], b"")
            _file_done(path, stat, batcher, *before)
        elif kind == "proto":
            _ingest_proto_file(value, batcher, feature_attributes)
        else:
            raise value

    jobs = _jobs(files, pool, feature_attributes, claude_code_feature)
    try:
        for job in jobs:
            queue.append(job)
            chunks += job[0] == "chunk"
            # Bounded read-ahead: the workers stay busy while the parent writes, and no more
            # than ``in_flight`` chunks (and their results) are held at once.
            while chunks >= in_flight or (queue and queue[0][0] != "chunk"):
                done = queue.popleft()
                chunks -= done[0] == "chunk"
                settle(done)
        while queue:
            settle(queue.popleft())
    finally:
        jobs.close()
        for kind, value in queue:
            if kind == "chunk":
                value[0].cancel()


def ingest_paths(
    paths: Sequence[str | Path],
    db: str | Path,
    *,
    config: Config | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 50_000,
    engine: str = "auto",
    workers: int | None = None,
) -> IngestSummary:
    """Ingest every OTLP file (JSON lines, plain or gzip, or Collector protobuf) under ``paths``
    into the database ``db``.

    ``paths`` are files (read whatever their name) or folders (searched recursively for
    ``*.json``, ``*.jsonl``, their ``.gz`` forms, ``*.pb`` and ``*.binpb``). ``config``
    supplies price overrides and the feature attribute keys. ``progress(bytes_done,
    bytes_total)`` is called now and then, in bytes of the files as stored (compressed for
    gzip). In a protobuf file each message counts as a line and rejections name
    ``path:message N``.

    Engines, all storing the same rows and reporting the same summary:

    * ``"parallel"`` parses and normalizes JSON lines in ``workers`` processes (default: one
      per CPU, at most 8) while this process prices and writes (see ``.parallel``); a script
      calling it must guard its top level with ``if __name__ == "__main__":``;
    * ``"python"`` does everything in this process;
    * ``"auto"`` (the default) is ``"parallel"`` for inputs of 16 MB or more when there are
      at least two CPUs, else ``"python"``.

    Re-running over the same input writes nothing new: every span counts as a duplicate.
    Raises :class:`~clauditor.errors.IngestError` only when an input cannot be read at all
    (missing, unreadable, a broken gzip header); bad lines and spans are rejected and counted.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    config = config or Config()
    db = Path(db)
    files = _discover(paths)
    sizes = [_size(p) for p in files]
    total = sum(sizes)
    summary = IngestSummary()
    batcher = _Batcher(db, config.price_table(), summary, batch_size)
    feature_attributes = tuple(config.feature_attributes)
    claude_code_feature = config.claude_code.feature_attribute
    done_before = 0

    def report(position: int) -> None:
        if progress is not None:
            progress(min(done_before + position, total), total)

    # Parsing allocates millions of small containers that all live until their batch is
    # written; the cyclic collector would re-scan them over and over for nothing (none of them
    # forms a cycle). Paused for the run, restored whatever happens.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    count = workers or available_workers()
    parallel = engine == "parallel" or (
        engine == "auto" and count >= 2 and total >= PARALLEL_MIN_BYTES
    )
    pool = start_pool(count) if parallel and files else None
    try:
        if pool is not None:
            in_flight = parallel_module.CHUNKS_IN_FLIGHT_PER_WORKER * count
            _ingest_parallel(
                files, batcher, pool, feature_attributes, report, in_flight, claude_code_feature
            )
            files = []
        for path, size in zip(files, sizes, strict=False):
            _ingest_file(path, batcher, feature_attributes, report, claude_code_feature)
            done_before += size
            report(0)
        batcher.flush(force=True)
    finally:
        batcher.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if gc_was_enabled:
            gc.enable()
    batcher.drain()
    return summary


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None
