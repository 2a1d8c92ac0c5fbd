"""The catch-up: the span files apps wrote beside the database, into the database.

The default sink of ``clauditor.instrument()`` (``clauditor.instrumentation._span_file``) has
each app process append its spans to its own file in the span folder ``<db>.spans/``. Every
clauditor command that reads the database first calls :func:`catch_up` (from
``clauditor.cli._common.resolve_db``), and ``clauditor serve`` calls it every
:data:`SERVE_INTERVAL_S` itself: the new lines go to the database's one writer through file
ingest (:func:`clauditor.ingest.ingest_paths`, the only ingest entry point used here), which
dedupes by ``span_id``, so a catch-up cut short and repeated stores every span once.

Per file in the folder:

* only files named as the sink names them (``spans-<ns>-<pid>-<hex>.jsonl[.part]``), regular
  (not symlinks) and beginning with the sink's marker line are read. Anything else there is
  moved to ``rejected/``, logged, and recorded in the ``quarantine`` table, never merged;
* ``*.jsonl.part`` whose writer is alive (it holds the file's ``flock``): the whole lines past
  what an earlier catch-up took are ingested; the offset reached is kept in
  ``.catchup/<name>.offset``, written after the ingest committed;
* ``*.jsonl.part`` whose writer died (the lock is free): a torn last line (the process died
  mid-write) is cut off and logged with its size, and the file is sealed;
* ``*.jsonl`` (sealed): the rest of it is ingested, then the file is removed, or moved to
  ``ingested/`` and removed from there ``$CLAUDITOR_SPAN_RETENTION_HOURS`` hours after its
  ingest (kept files count toward the folder's bound, ``$CLAUDITOR_SPAN_FOLDER_MAX_MB``).

A Parquet folder given as the database (read-only) is left alone, as is a database whose span
folder does not exist. Two catch-ups of one folder take turns (a lock file in ``.catchup/``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clauditor.config import Config
from clauditor.span_files import MARKER_LINE, NAME, PART_SUFFIX, SEALED_SUFFIX, span_folder

try:
    import fcntl
except ImportError:  # pragma: no cover - no flock: every .part file counts as live
    fcntl = None  # type: ignore[assignment]

__all__ = ["ENV_RETENTION_HOURS", "SERVE_INTERVAL_S", "CatchUp", "catch_up", "span_folder"]

_log = logging.getLogger("clauditor.ingest.span_folder")

ENV_RETENTION_HOURS = "CLAUDITOR_SPAN_RETENTION_HOURS"
SERVE_INTERVAL_S = 2.0
LOCK_WAIT_S = 60.0  # another catch-up of the same folder is given this long to finish
_STALE_TMP_S = 60.0  # a sink's .tmp file older than this, unlocked, is a dead sink's

_STATE = ".catchup"
_KEPT = "ingested"
_REJECTED = "rejected"


@dataclass
class CatchUp:
    """What one catch-up did: files read, spans handed over, and what it set aside."""

    files: int = 0
    spans_read: int = 0
    calls_written: int = 0
    duplicates: int = 0
    rejected_files: list[str] = field(default_factory=list)
    torn_bytes: int = 0


@dataclass
class _Piece:
    stem: str
    path: Path  # the span file (its current name)
    start: int  # byte offset of the first line not yet ingested
    end: int  # byte offset just past the last whole line
    sealed: bool


def retention_hours() -> float:
    """``$CLAUDITOR_SPAN_RETENTION_HOURS``: how long ingested span files are kept (0: none)."""
    raw = os.environ.get(ENV_RETENTION_HOURS, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        _log.warning(
            "$%s=%r is not a number of hours; span files are not kept", ENV_RETENTION_HOURS, raw
        )
        return 0.0
    return value


def catch_up(
    db: str | Path, *, config: Config | None = None, engine: str = "auto"
) -> CatchUp | None:
    """Ingest what the apps wrote to the span folder of ``db`` since the last catch-up.

    Returns None when there is nothing to do (no span folder, or ``db`` is a Parquet folder).
    Raises what :func:`~clauditor.ingest.ingest_paths` raises when the database cannot be
    written (busy past its timeout, not a DuckDB file); the span files are then left as they
    were, for the next catch-up.
    """
    db = Path(db)
    folder = span_folder(db)
    if db.is_dir() or not folder.is_dir():
        return None
    state = folder / _STATE
    state.mkdir(exist_ok=True)
    with _folder_lock(state / "lock") as locked:
        if not locked:
            _log.warning("another catch-up of %s is still running; not waiting longer", folder)
            return None
        return _catch_up(db, folder, state, config or _config(), engine)


def _config() -> Config:
    """The default config (its prices and feature keys), else the built-in one, logged."""
    from clauditor.config import load_config
    from clauditor.errors import ClauditorError

    try:
        return load_config()
    except ClauditorError as exc:
        _log.warning("config not used for the span files (%s); built-in prices", exc)
        return Config()


@contextlib.contextmanager
def _folder_lock(path: Path) -> Iterator[bool]:
    """Hold the folder's catch-up lock; yields False when another catch-up kept it past
    :data:`LOCK_WAIT_S` (this one then does nothing)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is None:
            yield True
            return
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)


def _catch_up(db: Path, folder: Path, state: Path, config: Config, engine: str) -> CatchUp:
    from clauditor.ingest.files import ingest_paths

    done = CatchUp()
    for leftover in state.glob("*.tail.jsonl"):  # a catch-up that died before cleaning up
        leftover.unlink(missing_ok=True)
    pieces: list[_Piece] = []
    foreign: list[tuple[Path, str]] = []
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries)
    for name in names:
        path = folder / name
        if name in (_STATE, _KEPT, _REJECTED):
            continue
        if name.startswith(".") and name.endswith(".tmp"):
            _remove_stale_tmp(path)
            continue
        try:
            piece, reason = _piece(path, state, done)
        except FileNotFoundError:  # sealed or removed meanwhile: the next catch-up has it
            continue
        if piece is None and reason:
            foreign.append((path, reason))
        elif piece is not None:
            pieces.append(piece)
    if foreign:
        _reject(db, folder, foreign, done)
    todo = [p for p in pieces if p.end > p.start]
    if todo:
        inputs = [_input(p, state) for p in todo]
        summary = ingest_paths(inputs, db, config=config, engine=engine)
        done.files = len(todo)
        done.spans_read = summary.spans_read
        done.calls_written = summary.calls_written
        done.duplicates = summary.duplicates
        for p in todo:
            _offset_file(state, p.stem).write_text(str(p.end))
        for staged in state.glob("*.tail.jsonl"):
            staged.unlink(missing_ok=True)
    keep = retention_hours()
    for p in pieces:
        if p.sealed:
            _retire(folder, p.path, keep)
            _offset_file(state, p.stem).unlink(missing_ok=True)
    _prune(folder / _KEPT, keep)
    return done


def _offset_file(state: Path, stem: str) -> Path:
    return state / f"{stem}.offset"


def _piece(path: Path, state: Path, done: CatchUp) -> tuple[_Piece | None, str]:
    """The not-yet-ingested whole lines of span file ``path``; else None and why not."""
    name = path.name
    if path.is_symlink() or not path.is_file():
        return None, "not a regular file"
    if not NAME.fullmatch(name):
        return None, "not named as clauditor names span files"
    with open(path, "rb") as handle:
        if os.pread(handle.fileno(), len(MARKER_LINE), 0) != MARKER_LINE:
            return None, "no clauditor span-file marker (not a file clauditor's sink wrote)"
        stem = (
            name[: -len(PART_SUFFIX)] if name.endswith(PART_SUFFIX) else name[: -len(SEALED_SUFFIX)]
        )
        sealed = not name.endswith(PART_SUFFIX)
        if not sealed and fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # its writer is alive
            else:
                if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:
                    raise FileNotFoundError(path)  # the writer sealed it meanwhile
                path = _seal_orphan(path, handle.fileno(), done)
                sealed = True
        size = os.fstat(handle.fileno()).st_size
        start = _read_offset(state, stem)
        end = _last_newline(handle.fileno(), max(start, len(MARKER_LINE)), size)
    return _Piece(stem, path, start, end, sealed), ""


def _read_offset(state: Path, stem: str) -> int:
    try:
        return int(_offset_file(state, stem).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _last_newline(fd: int, start: int, size: int) -> int:
    """Offset just past the last newline in ``[start, size)`` of the open file ``fd``, or
    ``start`` if there is none (``pread``: the descriptor's own position is left alone)."""
    position = size
    block = 64 * 1024
    while position > start:
        begin = max(start, position - block)
        data = os.pread(fd, position - begin, begin)
        found = data.rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        position = begin
    return start


def _seal_orphan(path: Path, fd: int, done: CatchUp) -> Path:
    """A dead writer's file: cut a torn last line off, then give the file its sealed name."""
    size = os.fstat(fd).st_size
    end = _last_newline(fd, 0, size)
    if end < size:
        torn = size - end
        done.torn_bytes += torn
        _log.warning(
            "span file %s ends in a torn line (%d bytes; its process died mid-write): "
            "cut off, every whole line is kept",
            path.name,
            torn,
        )
        os.truncate(path, end)
    sealed = path.with_name(path.name[: -len(PART_SUFFIX)] + SEALED_SUFFIX)
    os.replace(path, sealed)
    return sealed


def _input(piece: _Piece, state: Path) -> Path:
    """What to hand file ingest: the file itself when all of it is new and whole, else a copy
    of the new whole lines (a live file keeps growing; an ingested head is not read again)."""
    if piece.start == 0 and piece.sealed and piece.end == piece.path.stat().st_size:
        return piece.path
    staged = state / f"{piece.stem}.tail.jsonl"
    with open(piece.path, "rb") as source, open(staged, "wb") as target:
        source.seek(piece.start)
        left = piece.end - piece.start
        while left:
            data = source.read(min(left, 1024 * 1024))
            if not data:
                break
            target.write(data)
            left -= len(data)
    return staged


def _retire(folder: Path, path: Path, keep_hours: float) -> None:
    with contextlib.suppress(FileNotFoundError):
        if keep_hours > 0:
            kept = folder / _KEPT
            kept.mkdir(exist_ok=True)
            os.replace(path, kept / path.name)
            os.utime(kept / path.name)  # the retention counts from the ingest
        else:
            path.unlink()


def _prune(kept: Path, keep_hours: float) -> None:
    if not kept.is_dir():
        return
    cutoff = time.time() - keep_hours * 3600
    for file in kept.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if file.stat(follow_symlinks=False).st_mtime < cutoff:
                file.unlink()


def _remove_stale_tmp(path: Path) -> None:
    """A sink dies between creating its file and naming it: the ``.tmp`` holds no span."""
    with contextlib.suppress(OSError):
        if time.time() - path.stat(follow_symlinks=False).st_mtime < _STALE_TMP_S:
            return
        with open(path, "rb") as handle:
            if fcntl is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
            path.unlink()


def _reject(db: Path, folder: Path, files: list[tuple[Path, str]], done: CatchUp) -> None:
    """Move foreign files to ``rejected/`` and record each in ``quarantine``."""
    from clauditor.store import write_connection

    rejected = folder / _REJECTED
    rejected.mkdir(exist_ok=True)
    with write_connection(db) as con:
        for file, reason in files:
            target = rejected / file.name
            if target.exists() or target.is_symlink():
                target = rejected / f"{time.time_ns()}-{file.name}"
            con.execute(
                "INSERT INTO quarantine VALUES (now(), ?, ?, NULL)",
                [str(target), f"span folder file rejected: {reason}"],
            ).fetchall()
            with contextlib.suppress(FileNotFoundError):
                if file.is_dir() and not file.is_symlink():
                    shutil.move(str(file), str(target))
                else:
                    os.replace(file, target)
            done.rejected_files.append(file.name)
            _log.warning(
                "span folder file %s rejected (%s); moved to %s", file.name, reason, target
            )
