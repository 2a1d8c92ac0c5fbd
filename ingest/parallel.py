"""The parallel file-ingest engine's moving parts: chunks of lines, worker processes, results.

Parsing and normalizing is pure Python and holds the GIL, so the speed-up comes from
processes: the parent reads each file as numbered chunks of lines (a few MB each) and hands
them to a pool of workers; each worker runs :func:`clauditor.ingest.lines.read_line` on every
line of its chunk and sends back the rows as plain column lists plus, per line, what the line
did (request or not, spans, ignored spans, rows, rejections) and the rejections themselves,
payloads already scrubbed. The parent takes the results in chunk order
and replays the per-line accounting, so its counts, rejection order and batch boundaries are
exactly those of the in-process loop; meanwhile the workers parse the next chunks. At most a
few chunks are in flight, which bounds memory whatever the input size.

Workers are forked (on platforms that can fork): they start in milliseconds, need no import
and never re-run the caller's ``__main__`` module (which ``spawn`` and ``forkserver`` do, so an
unguarded script would ingest again in every worker). Forking a process whose Polars or DuckDB
thread pools are running is safe only if the child never calls into them, so a worker touches
neither: it returns plain lists, and the parent builds the frame.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import polars as pl

from .lines import BUILD_DTYPES, read_line, safe_payload

__all__ = [
    "CHUNKS_IN_FLIGHT_PER_WORKER",
    "CHUNK_BYTES",
    "ChunkResult",
    "available_workers",
    "columns_frame",
    "iter_chunks",
    "parse_chunk",
    "start_pool",
]

CHUNK_BYTES = 4 * 1024 * 1024  # text per chunk: big enough to amortize, small enough to overlap
MAX_WORKERS = 8
# Chunks read ahead per worker. A batch write in the parent takes about half a second, during
# which each worker gets through several chunks: with fewer queued they would sit idle.
CHUNKS_IN_FLIGHT_PER_WORKER = 4


@dataclass
class _Counts:
    spans_read: int = 0
    ignored: int = 0


@dataclass
class _ChunkSink:
    """What :func:`read_line` fills in a worker (the batcher's interface, minus writing)."""

    summary: _Counts = field(default_factory=_Counts)
    rows: list[dict[str, Any]] = field(default_factory=list)
    row_keys: list[tuple[int, int]] = field(default_factory=list)
    rejections: list[tuple[str, str, str]] = field(default_factory=list)

    def reject(self, origin: str, reason: str, payload: Any) -> None:
        self.rejections.append((origin, reason, safe_payload(payload)))


@dataclass
class ChunkResult:
    """One chunk's outcome. ``lines`` has one entry per non-blank line, in order:
    ``(was a request, spans read, spans ignored, rows, rejections)``; ``columns`` (column name
    -> values, see :func:`columns_frame`) and ``rejections`` (``(origin, reason, scrubbed
    payload)``) hold those rows and rejections in line order."""

    columns: dict[str, list[Any]]
    lines: list[tuple[bool, int, int, int, int]]
    rejections: list[tuple[str, str, str]]


def _split(block: bytes) -> list[bytes]:
    """The lines of ``block`` exactly as iterating a file gives them (each keeps its ``\\n``)."""
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
) -> ChunkResult:
    """Read ``lines`` (numbered from ``first_number`` in the file ``name``) in this process;
    ``lines`` may also be a block of whole lines as one bytes object."""
    if isinstance(lines, bytes):
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
            request = read_line(name, first_number + offset, line, sink, feature_attributes)
            out.append(
                (
                    request,
                    counts.spans_read - spans,
                    counts.ignored - ignored,
                    len(sink.rows) - rows,
                    len(sink.rejections) - rejected,
                )
            )
        made = sink.rows
        columns = {column: [row[column] for row in made] for column in BUILD_DTYPES}
    finally:
        if was_enabled:
            gc.enable()
    return ChunkResult(columns, out, sink.rejections)


def columns_frame(columns: dict[str, list[Any]]) -> pl.DataFrame:
    """The frame :func:`clauditor.ingest.lines.build_frame` makes of the same rows."""
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


def start_pool(workers: int) -> ProcessPoolExecutor | None:
    """A started pool of ``workers`` processes, or None when processes cannot be started here
    (a daemonic process, a sandbox without semaphores): the caller then reads in-process."""
    try:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    except (OSError, ValueError, RuntimeError, AssertionError):
        return None
    try:
        pool.submit(_ready).result(timeout=60)
    except Exception:  # noqa: BLE001  (any failure to start means: do it in-process)
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    return pool


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
