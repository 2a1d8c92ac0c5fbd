"""The span folder's names and marker, shared by the sink that writes span files (in the app,
``clauditor.instrumentation._span_file``) and the catch-up that ingests them
(``clauditor.ingest.span_folder``). Standard library only: the app imports it."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

__all__ = ["MARKER_LINE", "NAME", "PART_SUFFIX", "SEALED_SUFFIX", "new_stem", "span_folder"]

# The first line of every span file: a valid OTLP/JSON request with no spans (file ingest reads
# it as such), whose resource attribute says the file is clauditor's sink's.
MARKER_LINE = (
    b'{"resourceSpans":[{"resource":{"attributes":[{"key":"clauditor.span_file",'
    b'"value":{"stringValue":"1"}}]},"scopeSpans":[]}]}\n'
)
PART_SUFFIX = ".jsonl.part"  # being written; its writer holds an flock on it
SEALED_SUFFIX = ".jsonl"  # complete: nothing more is appended
NAME = re.compile(r"spans-\d{20}-\d+-[0-9a-f]{8}(?:\.jsonl|\.jsonl\.part)")


def span_folder(db: str | os.PathLike[str]) -> Path:
    """The span folder of the database ``db``: beside it, named after it plus ``.spans``."""
    path = Path(db)
    return path.with_name(path.name + ".spans")


def new_stem(pid: int) -> str:
    """A new span file's name without suffix: creation time, pid, a random part."""
    return f"spans-{time.time_ns():020d}-{pid}-{uuid.uuid4().hex[:8]}"
