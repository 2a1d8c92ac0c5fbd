"""The in-process DuckDB span exporter: a sink an app may pass as ``instrument(exporter=...)``.

Not the default any more: it loads duckdb and polars into the app (the default sink appends to
a span file instead, ``clauditor.instrumentation._span_file``).

An OpenTelemetry ``SpanExporter`` that turns each finished Claude call span into a ``calls`` row
(through :func:`clauditor.ingest.normalize.normalize`, the same code every other source goes
through), prices the batch and appends it with one short-lived write. Run it behind a
``BatchSpanProcessor``: exports happen on the SDK's worker thread, never in the app's call path.

It never blocks or breaks the app:

* a database held by another process past ``timeout_s`` (0.5 s) gets the batch spooled beside it
  (:class:`clauditor.store.Writer` with ``spool_on_busy``); the next write drains the spool;
* anything else that fails is counted (:attr:`DuckDBSpanExporter.failures`), logged once at
  WARNING and reported as ``FAILURE`` to the processor - never raised;
* malformed spans are counted in :attr:`DuckDBSpanExporter.rejected` and skipped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from clauditor import semconv
from clauditor.ingest.normalize import SpanRecord, SpanRejected, normalize
from clauditor.redact import clip

__all__ = ["DuckDBSpanExporter", "span_record"]

log = logging.getLogger("clauditor.ingest.exporter")

DEFAULT_TIMEOUT_S = 0.5


def _plain(value: Any) -> Any:
    # OTel attribute values are str/bool/int/float or tuples of those; JSON wants lists.
    return list(value) if isinstance(value, tuple) else value


def span_record(
    span: ReadableSpan, *, service: str | None = None, environment: str | None = None
) -> SpanRecord:
    """The :class:`SpanRecord` of a finished SDK span (hex ids, nanosecond times).

    ``service`` / ``environment`` fill the resource only where the provider's resource lacks
    them (an app's own provider without ``service.name``).
    """
    ctx = span.context
    parent = span.parent
    resource = {
        k: _plain(v) for k, v in (span.resource.attributes if span.resource else {}).items()
    }
    if service and resource.get(semconv.SERVICE_NAME, "unknown_service").startswith(
        "unknown_service"
    ):
        resource[semconv.SERVICE_NAME] = service
    if environment and semconv.DEPLOYMENT_ENVIRONMENT_NAME not in resource:
        resource[semconv.DEPLOYMENT_ENVIRONMENT_NAME] = environment
    scope = span.instrumentation_scope
    return SpanRecord(
        trace_id=format(ctx.trace_id, "032x") if ctx else "",
        span_id=format(ctx.span_id, "016x") if ctx else "",
        parent_span_id=format(parent.span_id, "016x") if parent else None,
        name=span.name,
        kind=int(span.kind.value) + 1,  # OTLP numbers kinds from UNSPECIFIED = 0
        start_ns=int(span.start_time or 0),
        end_ns=int(span.end_time or 0),
        status_code=int(span.status.status_code.value),
        status_message=span.status.description,
        attributes={k: _plain(v) for k, v in (span.attributes or {}).items()},
        resource=resource,
        scope_name=scope.name if scope else "",
        scope_version=scope.version if scope else None,
    )


class DuckDBSpanExporter(SpanExporter):
    """Writes Claude call spans to the ``calls`` table of the DuckDB file at ``path``.

    Non-Claude spans in the same pipeline are ignored. ``timeout_s`` bounds how long one export
    waits for a busy file before spooling the batch.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        service: str | None = None,
        environment: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        feature_attributes: Sequence[str] = (semconv.FEATURE,),
    ) -> None:
        self.path = Path(path)
        self.service = service
        self.environment = environment
        self.timeout_s = timeout_s
        self.feature_attributes = tuple(feature_attributes)
        self.written = 0
        self.spooled = 0
        self.rejected = 0
        self.failures = 0
        self._warned = False
        self._lock = threading.Lock()
        self._shutdown = False
        self._prices: Any = None
        self._writer: Any = None  # clauditor.store.Writer, made at the first write

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Normalize, price and append ``spans``; never raises."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            rows = self._rows(spans)
            if not rows:
                return SpanExportResult.SUCCESS
            self._write(rows)
            return SpanExportResult.SUCCESS
        except Exception as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                log.warning(
                    "clauditor could not write %d span(s) to %s (%s: %s); the app is unaffected",
                    len(spans),
                    self.path,
                    type(exc).__name__,
                    clip(str(exc), 300),  # a database error may quote the value it refused
                )
            return SpanExportResult.FAILURE

    def _rows(self, spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
        rows = []
        for span in spans:
            try:
                record = span_record(span, service=self.service, environment=self.environment)
                row = normalize(record, feature_attributes=self.feature_attributes)
            except SpanRejected:
                self.rejected += 1
                continue
            if row is not None:
                rows.append(row)
        return rows

    def _write(self, rows: list[dict[str, Any]]) -> None:
        # Heavy imports on the worker thread, at the first batch, not at app start.
        from clauditor.ingest.writer import price_batch
        from clauditor.schema import frame_from_rows
        from clauditor.store import Writer

        frame = price_batch(frame_from_rows(rows), self._price_table())
        with self._lock:  # one writer per process: force_flush may race the worker thread
            if self._writer is None:
                # One connection per export (hold_s=0): the app's own readers get the file.
                self._writer = Writer(self.path, timeout_s=self.timeout_s, spool_on_busy=True)
            result = self._writer.write(frame)
        self.spooled += result.spooled
        self.written += result.inserted

    def _price_table(self) -> Any:
        """The app's configured prices (config file, price files, overrides), read once.

        A config that does not load must not stop telemetry: the built-in table is used and
        the problem logged once.
        """
        if self._prices is None:
            from clauditor.config import load_config
            from clauditor.errors import ClauditorError
            from clauditor.pricing import load_price_table

            try:
                self._prices = load_config().price_table()
            except ClauditorError as exc:
                log.warning("clauditor: config not used for prices (%s); built-in prices", exc)
                self._prices = load_price_table()
        return self._prices

    def shutdown(self) -> None:
        """Stop accepting spans (the processor flushes before calling this)."""
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here; the processor holds the queue."""
        return True
