"""The default sink of ``instrument()``: each app process appends its spans to its own file.

The files live in the *span folder* beside the database (``clauditor.duckdb.spans/`` for
``clauditor.duckdb``). Every clauditor command that reads the database first hands the new
files to the database's one writer (``clauditor.ingest.span_folder``), and a running
``clauditor serve`` does so itself. The app never opens the database, never waits for a lock
and never imports duckdb, polars or pyarrow: it encodes spans as JSON and appends them.

The files, as written here and read there:

* one line per export (one batch of the ``BatchSpanProcessor``), an OTLP/JSON
  ``ExportTraceServiceRequest`` exactly as the Collector's file exporter writes it, so file
  ingest reads the files unchanged;
* the first line is ``clauditor.span_files.MARKER_LINE``, a valid request with no spans
  whose resource carries ``clauditor.span_file``: the catch-up ingests only files named as
  the sink names them that begin with exactly that line; anything else in the folder is set
  aside, never merged.
  The marker tells clauditor's files from stray ones; it is no signature (whoever may write
  the folder may write the database beside it);
* a file being written is named ``*.jsonl.part`` and holds an exclusive ``flock`` of its writer
  for as long as the writer lives (the kernel drops it when the process dies, SIGKILL
  included), so the catch-up knows a live file from an orphan without trusting pids. The lock
  is taken before the file gets its name, so nobody ever sees an unlocked live file;
* each line goes out in one ``write()`` (looped only if the kernel writes it short), so a
  crash can tear at most the last line; the catch-up reads only up to the last newline and an
  orphan's torn tail is cut off and logged, never ingested and never in the way of what was
  whole;
* at :data:`ROTATE_BYTES` (or when the exporter shuts down) the file is renamed
  ``*.jsonl``: sealed, nothing more will be appended;
* the folder has a bound (:data:`DEFAULT_MAX_FOLDER_BYTES`, ``$CLAUDITOR_SPAN_FOLDER_MAX_MB``):
  while the files there take more than that (nobody has run a clauditor command for a long
  time), batches are dropped, counted in :attr:`SpanFileExporter.dropped` and logged once per
  episode at WARNING, rather than filling the disk.

What a crash costs: a line ``write()`` returned for is in the kernel and survives the process
(not a power cut: nothing is fsynced per batch). Spans still queued in the
``BatchSpanProcessor`` are lost with the process: :data:`SCHEDULE_DELAY_MS` (1 s) of them, or
at most one batch of :data:`MAX_EXPORT_BATCH` (512) spans, which the processor exports as soon
as that many are queued.

Spans that cannot be a Claude call (no ``gen_ai.*`` or ``llm.*`` attribute, not clauditor's
scope) are not written: the ingest would ignore them anyway.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from clauditor import semconv
from clauditor.span_files import MARKER_LINE, PART_SUFFIX, SEALED_SUFFIX, new_stem, span_folder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; live files are told by age
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MAX_FOLDER_BYTES",
    "MAX_EXPORT_BATCH",
    "ROTATE_BYTES",
    "SCHEDULE_DELAY_MS",
    "SpanFileExporter",
    "encode_line",
    "span_folder",
]

log = logging.getLogger("clauditor.instrumentation")

# What the batch processor in front of this exporter is given (instrument() passes them):
# what a killed app can lose is what it queued since the last export.
SCHEDULE_DELAY_MS = 1000
MAX_EXPORT_BATCH = 512

ROTATE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_FOLDER_BYTES = 1024 * 1024 * 1024
ENV_MAX_FOLDER_MB = "CLAUDITOR_SPAN_FOLDER_MAX_MB"
_RESCAN_S = 5.0  # how often the folder's size is measured again (between, it is added up)


def max_folder_bytes() -> int:
    """The folder bound: ``$CLAUDITOR_SPAN_FOLDER_MAX_MB`` megabytes, else 1 GB."""
    raw = os.environ.get(ENV_MAX_FOLDER_MB, "").strip()
    if raw:
        try:
            value = float(raw)
            if value > 0 and math.isfinite(value):
                return int(value * 1024 * 1024)
        except ValueError:
            pass
        log.warning("clauditor: $%s=%r is not a positive number; 1 GB used", ENV_MAX_FOLDER_MB, raw)
    return DEFAULT_MAX_FOLDER_BYTES


# --- OTLP/JSON encoding ----------------------------------------------------------------------


def _any_value(value: Any) -> dict[str, Any]:
    # bool before int: True is an int to Python, a boolValue to OTLP.
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "doubleValue": "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        }
    if isinstance(value, (tuple, list)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _key_values(attributes: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not attributes:
        return out
    append = out.append
    for key, value in attributes.items():
        kind = type(value)  # the common exact types first: this runs for every attribute
        if kind is str:
            append({"key": key, "value": {"stringValue": value}})
        elif kind is int:
            append({"key": key, "value": {"intValue": str(value)}})
        else:
            append({"key": key, "value": _any_value(value)})
    return out


# One encoder, made once (json.dumps with options builds a new one per call). ASCII output:
# non-ASCII text is escaped, still the same JSON, and file ingest's fastest path takes it.
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _may_be_a_call(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    if scope is not None and scope.name == semconv.CLAUDITOR_SCOPE:
        return True
    return any(k.startswith(("gen_ai.", "llm.")) for k in span.attributes or ())


def _span(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.context
    out: dict[str, Any] = {
        "traceId": format(ctx.trace_id, "032x") if ctx else "",
        "spanId": format(ctx.span_id, "016x") if ctx else "",
        "name": span.name,
        "kind": int(span.kind.value) + 1,  # OTLP numbers kinds from UNSPECIFIED = 0
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": _key_values(span.attributes),
        "status": {"code": int(span.status.status_code.value)},
    }
    if span.parent is not None:
        out["parentSpanId"] = format(span.parent.span_id, "016x")
    if span.status.description:
        out["status"]["message"] = span.status.description
    return out


def encode_line(
    spans: Sequence[ReadableSpan], *, service: str | None = None, environment: str | None = None
) -> bytes:
    """One ``ExportTraceServiceRequest`` line (OTLP/JSON, newline-terminated) for ``spans``.

    ``service`` / ``environment`` fill the resource only where the provider's resource lacks
    them (an app's own provider without ``service.name``).
    """
    by_resource: dict[int, tuple[dict[str, Any], dict[tuple[str, str | None], list[Any]]]] = {}
    for span in spans:
        resource = span.resource
        entry = by_resource.get(id(resource))
        if entry is None:
            attrs = dict(resource.attributes) if resource is not None else {}
            name = attrs.get(semconv.SERVICE_NAME, "unknown_service")
            if service and str(name).startswith("unknown_service"):
                attrs[semconv.SERVICE_NAME] = service
            if environment and semconv.DEPLOYMENT_ENVIRONMENT_NAME not in attrs:
                attrs[semconv.DEPLOYMENT_ENVIRONMENT_NAME] = environment
            entry = by_resource[id(resource)] = ({"attributes": _key_values(attrs)}, {})
        scope = span.instrumentation_scope
        key = (scope.name, scope.version) if scope is not None else ("", None)
        entry[1].setdefault(key, []).append(_span(span))
    request = {
        "resourceSpans": [
            {
                "resource": resource,
                "scopeSpans": [
                    {"scope": {"name": n, **({"version": v} if v else {})}, "spans": s}
                    for (n, v), s in scopes.items()
                ],
            }
            for resource, scopes in by_resource.values()
        ]
    }
    return _encode(request).encode() + b"\n"


# --- the exporter ----------------------------------------------------------------------------


class SpanFileExporter(SpanExporter):
    """Appends spans to this process's span file in ``folder`` (see the module docstring).

    Never raises and never waits on another process: a write that fails or a folder over its
    bound drops the batch, counts it in :attr:`dropped` and logs once per episode.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        service: str | None = None,
        environment: str | None = None,
        rotate_bytes: int = ROTATE_BYTES,
        max_bytes: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.service = service
        self.environment = environment
        self.rotate_bytes = rotate_bytes
        self.max_bytes = max_folder_bytes() if max_bytes is None else max_bytes
        self.written = 0  # spans appended
        self.dropped = 0  # spans dropped (folder over its bound, or a write that failed)
        self._dropping = False
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._path: Path | None = None
        self._size = 0
        self._folder_size = 0
        self._measured = 0.0
        self._shutdown = False

    @property
    def path(self) -> Path | None:
        """The file being written now (None before the first export and after shutdown)."""
        return self._path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append ``spans`` as one line; never raises."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            calls = [s for s in spans if _may_be_a_call(s)]
            if not calls:
                return SpanExportResult.SUCCESS
            line = encode_line(calls, service=self.service, environment=self.environment)
            with self._lock:
                if self._over_bound(len(line)):
                    self._drop(len(calls), "the span folder is over its bound")
                    return SpanExportResult.FAILURE
                self._append(line)
                self.written += len(calls)
            if self._dropping:
                self._dropping = False
                log.warning(
                    "clauditor: span files are being written again to %s (%d span(s) dropped "
                    "so far)",
                    self.folder,
                    self.dropped,
                )
            return SpanExportResult.SUCCESS
        except Exception as exc:
            with self._lock:
                self._close_file(seal=False)
            self._drop(len(spans), f"{type(exc).__name__}: {exc}")
            return SpanExportResult.FAILURE

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        if not self._dropping:
            self._dropping = True
            log.warning(
                "clauditor: %d span(s) dropped, not written to %s: %s (bound %d MB, "
                "$%s; run any clauditor command to ingest the folder). Further drops are "
                "counted, not logged, until a write succeeds",
                count,
                self.folder,
                reason,
                self.max_bytes // (1024 * 1024),
                ENV_MAX_FOLDER_MB,
            )

    def _over_bound(self, adding: int) -> bool:
        now = time.monotonic()
        if now - self._measured > _RESCAN_S:
            self._folder_size = _folder_bytes(self.folder)
            self._measured = now
            if self._path is not None and not self._path.exists():
                # Someone removed the live file (the catch-up never does): a new one, or
                # every line from now on would go to a file nobody can read.
                self._close_file(seal=False)
        return self._folder_size + adding > self.max_bytes

    def _append(self, line: bytes) -> None:
        if self._fd is not None and self._pid != os.getpid():
            # A forked child inherited the parent's file: it gets its own (closing the
            # inherited descriptor leaves the parent's lock and file alone).
            os.close(self._fd)
            self._fd, self._path = None, None
        if self._fd is None:
            self._open_file()
        assert self._fd is not None
        view = memoryview(line)
        while view:
            n = os.write(self._fd, view)
            if n <= 0:
                raise OSError(errno.EIO, "short write")
            view = view[n:]
        self._size += len(line)
        self._folder_size += len(line)
        if self._size >= self.rotate_bytes:
            self._close_file(seal=True)

    def _open_file(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        stem = new_stem(pid)
        tmp = self.folder / f".{stem}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: never waits
            os.write(fd, MARKER_LINE)
            path = self.folder / (stem + PART_SUFFIX)
            os.rename(tmp, path)  # named only once locked and marked
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fd, self._pid, self._path, self._size = fd, pid, path, len(MARKER_LINE)
        self._folder_size += len(MARKER_LINE)

    def _close_file(self, *, seal: bool) -> None:
        fd, path = self._fd, self._path
        self._fd, self._path = None, None
        if fd is None or path is None:
            return
        try:
            if seal and self._pid == os.getpid():
                os.rename(path, path.with_name(path.name[: -len(PART_SUFFIX)] + SEALED_SUFFIX))
        except OSError as exc:  # the catch-up seals orphans; nothing is lost
            log.debug("clauditor: could not seal span file %s: %s", path, exc)
        finally:
            os.close(fd)  # after the rename: the lock guards the name until it is sealed

    def shutdown(self) -> None:
        """Seal the current file and stop accepting spans (the processor flushes first)."""
        with self._lock:
            self._shutdown = True
            with contextlib.suppress(Exception):
                self._close_file(seal=True)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here: each export is written when it is made."""
        return True

    def __repr__(self) -> str:
        return f"<SpanFileExporter {self.folder}>"


def _folder_bytes(folder: Path) -> int:
    """What the files in ``folder`` and its subfolders (kept, rejected) take, in bytes."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
                elif entry.is_dir(follow_symlinks=False):
                    total += _folder_bytes(Path(entry.path))
    return total
