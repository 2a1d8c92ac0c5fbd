"""clauditor.ingest: spans from any source into the ``calls`` table.

* :func:`normalize` turns one :class:`SpanRecord` into one ``calls`` row (or ``None`` for a
  span that is not a Claude API call), raising :class:`SpanRejected` for a malformed span;
* :func:`iter_otlp_json_spans` reads the spans of one OTLP/JSON ``ExportTraceServiceRequest``;
* :func:`ingest_paths` ingests OTLP/JSON-lines files and folders, plain or gzip;
* :mod:`.claude_code` reads Claude Code's own log events (one call each) and counts metrics.
"""

from clauditor.ingest.conventions import CONVENTIONS, Convention
from clauditor.ingest.files import IngestSummary, Rejection, ingest_paths
from clauditor.ingest.normalize import SpanRecord, SpanRejected, normalize
from clauditor.ingest.otlp_json import flatten_attributes, iter_otlp_json_spans

__all__ = [
    "CONVENTIONS",
    "Convention",
    "IngestSummary",
    "Rejection",
    "SpanRecord",
    "SpanRejected",
    "flatten_attributes",
    "ingest_paths",
    "iter_otlp_json_spans",
    "normalize",
]
