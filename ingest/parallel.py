"""The parallel file-ingest engine's moving parts: chunks of lines, worker processes, results.

Parsing and normalizing is pure Python and holds the GIL, so the speed-up comes from
processes: the parent cuts each file into numbered chunks of whole lines (a few MB each) and
hands them to a pool of workers. A plain file is cut into byte ranges that each worker reads
itself (:func:`parse_range`), so the text never passes through the parent or a pipe; a gzip
stream is read by the parent, line by line, as the in-process loop reads it
(:func:`parse_chunk`). Each worker runs :func:`clauditor.ingest.lines.read_line` on every line
of its chunk and sends back the rows as one Arrow IPC stream plus, per line, what the line did
(request or not, spans, ignored spans, rows, rejections) and the rejections themselves,
payloads already scrubbed. The parent takes the results in chunk order and replays the
per-line accounting, so its counts, rejection order and batch boundaries are exactly those of
the in-process loop; meanwhile the workers parse the next chunks. At most a few chunks are in
flight, which bounds memory whatever the input size.

Workers are forked (on platforms that can fork): they start in milliseconds, need no import
and never re-run the caller's ``__main__`` module (which ``spawn`` and ``forkserver`` do, so an
unguarded script would ingest again in every worker). Forking a process whose Polars or DuckDB
thread pools are running is safe only if the child never calls into them, so a worker touches
neither: it builds its Arrow arrays with pyarrow, which converts in the calling thread, and the
parent makes the frame.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import polars as pl
import pyarrow as pa

from clauditor.ingest.claude_code import DEFAULT_FEATURE_ATTRIBUTE
from clauditor.ingest.lines import BUILD_DTYPES, read_line, safe_payload

__all__ = [
    "CHUNKS_IN_FLIGHT_PER_WORKER",
    "CHUNK_BYTES",
    "ChunkResult",
    "available_workers",
    "columns_frame",
    "iter_chunks",
    "iter_ranges",
    "parse_chunk",
    "parse_range",
    "start_pool",
]

CHUNK_BYTES = 4 * 1024 * 1024  # text per chunk: big enough to amortize, small enough to overlap
MAX_WORKERS = 8
_WINDOW = 64 * 1024  # read at a time while looking for a chunk's last line end
# Chunks read ahead per worker. A batch write in the parent takes a second or so, during which
# each worker gets through several chunks: with fewer queued they would sit idle. A chunk in
# flight costs its result (about a quarter of its text, as Arrow) once done.
CHUNKS_IN_FLIGHT_PER_WORKER = 8


@dataclass
class _Counts:
    spans_read: int = 0
    ignored: int = 0


@dataclass
class _ChunkSink:
    """What :func:`read_line` fills in a worker (the batcher's interface, minus writing)."""

    summary: _Counts = field(default_factory=_Counts)
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # ROW_COLUMNS order
    rejections: list[tuple[int, str, str]] = field(default_factory=list)
    number: int = 0  # of the line being read: every origin read_line gives is "name:number"

    def reject(self, origin: str, reason: str, payload: Any) -> None:
        self.rejections.append((self.number, reason, safe_payload(payload)))


@dataclass
class ChunkResult:
    """One chunk's outcome. ``lines`` has one entry per non-blank line, in order:
    ``(was a request, spans read, spans ignored, rows, rejections)``; ``columns`` (an Arrow IPC
    stream, or column name -> values; see :func:`columns_frame`) and ``rejections`` (``(line
    number, reason, scrubbed payload)``) hold those rows and rejections in line order.

    Line numbers count from the chunk's first line as ``first_number`` said; a chunk read by
    :func:`parse_range` does not know where it starts in its file, so its numbers count from 1
    and the reader adds the lines of the chunks before it. ``newlines`` is the chunk's count of
    line ends (what the next chunk's first number follows from).
    """

    columns: bytes | dict[str, list[Any]]
    lines: list[tuple[bool, int, int, int, int]]
    rejections: list[tuple[int, str, str]]
    newlines: int = 0


def _split(block: bytes) -> list[bytes]:
    """The lines of ``block`` exactly as iterating a file gives them (each keeps its ``\\n``)."""
    if b"\r" not in block:  # then splitlines cuts where a file's lines end, and copies once
        return block.splitlines(keepends=True)
    pieces = block.split(b"\n")
    last = pieces.pop()
    lines = [piece + b"\n" for piece in pieces]
    if last:
        lines.append(last)
    return lines


def parse_chunk(
    name: str,
    first_number: int,
    lines: list[bytes] | bytes,
    feature_attributes: tuple[str, ...],
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> ChunkResult:
    """Read ``lines`` (numbered from ``first_number`` in the file ``name``) in this process;
    ``lines`` may also be a block of whole lines as one bytes object."""
    newlines = 0
    if isinstance(lines, bytes):
        newlines = lines.count(b"\n")
        lines = _split(lines)
    sink = _ChunkSink()
    counts = sink.summary
    out: list[tuple[bool, int, int, int, int]] = []
    was_enabled = gc.isenabled()
    gc.disable()  # as in the parent: millions of acyclic containers, nothing to collect
    try:
        for offset, line in enumerate(lines):
            if line.isspace():
                continue
            spans, ignored = counts.spans_read, counts.ignored
            rows, rejected = len(sink.rows), len(sink.rejections)
            sink.number = first_number + offset
            request = read_line(
                name,
                sink.number,
                line,
                sink,
                feature_attributes,
                claude_code_feature=claude_code_feature,
            )
            out.append(
                (
                    request,
                    counts.spans_read - spans,
                    counts.ignored - ignored,
                    len(sink.rows) - rows,
                    len(sink.rejections) - rejected,
                )
            )
        columns = _encode_rows(sink.rows)
    finally:
        if was_enabled:
            gc.enable()
    return ChunkResult(columns, out, sink.rejections, newlines)


def parse_range(
    name: str,
    path: str,
    start: int,
    end: int,
    feature_attributes: tuple[str, ...],
    claude_code_feature: str = DEFAULT_FEATURE_ATTRIBUTE,
) -> ChunkResult:
    """:func:`parse_chunk` of the bytes ``[start, end)`` of the plain file ``path`` (whole
    lines), read here rather than sent through a pipe; line numbers count from 1."""
    with open(path, "rb") as handle:
        handle.seek(start)
        block = handle.read(end - start)
    if len(block) != end - start:
        raise OSError(f"{name}: changed while being read (expected {end - start} bytes)")
    return parse_chunk(name, 1, block, feature_attributes, claude_code_feature)


_ARROW_TYPES: dict[Any, pa.DataType] = {
    pl.String: pa.string(),
    pl.Int64: pa.int64(),
    pl.Float64: pa.float64(),
    pl.Boolean: pa.bool_(),
}
_ARROW_SCHEMA = pa.schema(
    [
        (name, pa.timestamp("us", tz="UTC"))  # the rows hold Unix microseconds
        if name in ("start_time", "end_time")
        else (name, _ARROW_TYPES[dtype])
        for name, dtype in BUILD_DTYPES.items()
    ]
)


def _encode_rows(rows: list[tuple[Any, ...]]) -> bytes | dict[str, list[Any]]:
    """The rows as one Arrow IPC stream: a few copies of contiguous memory for the parent to
    load, instead of millions of Python objects to unpickle and convert.

    pyarrow converts the lists in this thread, touching no thread pool, so it is safe in a
    forked worker (Polars and DuckDB are not). A value Arrow will not take (an integer beyond
    64 bits in a number column) sends the plain lists instead, which the parent builds as the
    in-process engine builds them, failing or not exactly as it does.
    """
    transposed = zip(*rows, strict=True) if rows else ([] for _ in BUILD_DTYPES)
    columns = {
        column: list(values) for column, values in zip(BUILD_DTYPES, transposed, strict=True)
    }
    try:
        batch = pa.record_batch(
            [pa.array(columns[field.name], field.type) for field in _ARROW_SCHEMA],
            schema=_ARROW_SCHEMA,
        )
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return columns
    out = pa.BufferOutputStream()
    with pa.ipc.new_stream(out, _ARROW_SCHEMA) as writer:
        writer.write_batch(batch)
    return out.getvalue().to_pybytes()


def columns_frame(columns: bytes | dict[str, list[Any]]) -> pl.DataFrame:
    """The frame :func:`clauditor.ingest.lines.build_frame` makes of the same rows (given as
    :func:`_encode_rows` sends them)."""
    if isinstance(columns, bytes):
        frame = pl.from_arrow(pa.ipc.open_stream(columns).read_all())
        assert isinstance(frame, pl.DataFrame)
        return frame
    # Series by Series: a lazy with_columns() costs milliseconds per call, a lot per chunk.
    return pl.DataFrame(
        [
            pl.Series(name, values, dtype=dtype).cast(_UTC_MICROS)
            if name in ("start_time", "end_time")
            else pl.Series(name, values, dtype=dtype)
            for name, dtype in BUILD_DTYPES.items()
            for values in [columns[name]]
        ]
    )


_UTC_MICROS = pl.Datetime("us", "UTC")


def _ready() -> int:
    return os.getpid()


def available_workers() -> int:
    """How many worker processes are worth starting here (the CPUs this process may use)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 1.0  # how often a worker checks that its parent is still there


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the process that started the pool dies, even
    by ``kill -9`` (which gives the pool no chance to stop its workers).

    On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Everywhere, a daemon
    thread also compares ``os.getppid()`` with the parent's pid every :data:`PARENT_POLL_S`
    (an orphan is re-parented, so the pid changes) and exits when they differ. A worker holds
    nothing worth saving: the parent alone writes.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="clauditor-parent-watch", daemon=True).start()


def start_pool(workers: int) -> ProcessPoolExecutor | None:
    """A started pool of ``workers`` processes, or None when processes cannot be started here
    (a daemonic process, a sandbox without semaphores): the caller then reads in-process.

    The workers end when this process dies, however it dies (:func:`_die_with_parent`). On
    Linux the kernel's signal is tied to the thread that started them: call this from a
    thread that outlives the pool (the ingest call's own thread does).
    """
    try:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        )
    except (OSError, ValueError, RuntimeError, AssertionError):
        return None
    try:
        pool.submit(_ready).result(timeout=60)
    except Exception:  # noqa: BLE001  (any failure to start means: do it in-process)
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    return pool


def iter_ranges(raw: IO[bytes], size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` byte ranges of whole lines of about :data:`CHUNK_BYTES` covering the
    first ``size`` bytes of the plain file ``raw`` (seekable); only the line at each boundary
    is read, so the caller never holds the file's text."""
    start = 0
    while start < size:
        # A chunk ends at the first line end at or after its size (or at the end of the file).
        end = start + CHUNK_BYTES - 1
        raw.seek(end)
        while end < size:
            window = raw.read(_WINDOW)
            found = window.find(b"\n")
            if found >= 0:
                end += found
                break
            if not window:
                end = size
                break
            end += len(window)
        end = min(end + 1, size)
        yield start, end
        start = end


def iter_chunks(
    stream: IO[bytes], *, blocks: bool = False
) -> Iterator[tuple[int, int, list[bytes] | bytes]]:
    """``(first line's number, line count, lines)`` chunks of about :data:`CHUNK_BYTES`.

    By default lines are read exactly as the in-process loop reads them (iterating the
    stream), so a gzip stream that breaks off yields the same lines before its error, which
    propagates after the last full chunk has been yielded. With ``blocks`` (for plain files,
    where iterating lines of tens of KB through an 8 KB buffer costs as much as parsing them)
    each chunk is one bytes object of whole lines.
    """
    number = 1
    if blocks:
        while True:
            block = stream.read(CHUNK_BYTES)
            if not block:
                return
            if not block.endswith(b"\n"):
                block += stream.readline()  # complete the last line
            count = block.count(b"\n")
            yield number, count, block
            number += count
    chunk: list[bytes] = []
    size = 0
    try:
        for line in stream:
            chunk.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield number, len(chunk), chunk
                number += len(chunk)
                chunk, size = [], 0
    except (OSError, EOFError, zlib.error):
        if chunk:
            yield number, len(chunk), chunk
        raise
    if chunk:
        yield number, len(chunk), chunk
