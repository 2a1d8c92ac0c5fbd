"""The OTLP sink of ``instrument()``: OTel's OTLP/HTTP span exporter, bounded at exit and quiet.

Two things the bare exporter does that an instrumented app should not suffer when its
endpoint is down:

* at interpreter exit the last flush retries with backoff for up to the exporter's timeout
  (10 s), so the app takes that much longer to exit. :class:`BoundedOtlpExporter` gives the
  exit :data:`EXIT_DEADLINE_S` (1 s): when the deadline passes, the OTel exporter is shut down
  (its public ``shutdown()`` ends a retry wait at once) and every later export fails at once,
  so whatever is still unsent is dropped. An endpoint that accepts the connection and then
  never answers can still hold the one request in flight until the request's own timeout.
* each failed batch logs every retry (three warnings and an error). While clauditor exports,
  the OTel exporter's log records are held back; one WARNING on ``clauditor.instrumentation``
  says what failed, and nothing more is logged until an export succeeds again.

Only public APIs are used: the exporter's constructor, ``export``/``shutdown``, and a logging
filter on the exporter's loggers that drops records only in the thread of a clauditor export.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from clauditor.redact import clip

__all__ = ["EXIT_DEADLINE_S", "BoundedOtlpExporter"]

log = logging.getLogger("clauditor.instrumentation")

EXIT_DEADLINE_S = 1.0  # the most an unreachable endpoint may add to the app's exit
_REASON_CHARS = 300

# Where the OTel OTLP/HTTP exporter logs its retries and failures (the module moved between
# releases; a filter on a logger sees only that logger's own records).
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http",
)

_exporting = threading.local()  # .held: the records held back in this thread, while exporting


class _HoldBack(logging.Filter):
    """Keeps the exporter's records out of the logs while clauditor exports in this thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        held: list[str] | None = getattr(_exporting, "held", None)
        if held is None:
            return True
        held.append(record.getMessage())
        return False


_HOLD_BACK = _HoldBack()
for _name in _EXPORTER_LOGGERS:
    logging.getLogger(_name).addFilter(_HOLD_BACK)


class BoundedOtlpExporter(SpanExporter):
    """An OTLP/HTTP span exporter to ``endpoint`` (the full ``.../v1/traces`` URL) whose exit
    flush ends :data:`EXIT_DEADLINE_S` after :meth:`exit_begins`, and whose failures are
    logged once per outage (see the module docstring)."""

    def __init__(self, endpoint: str, *, exit_deadline_s: float = EXIT_DEADLINE_S) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.endpoint = endpoint
        self.exit_deadline_s = exit_deadline_s
        self._inner = OTLPSpanExporter(endpoint=endpoint)
        self._lock = threading.Lock()
        self._failing = False
        self._closed = False
        self._exit = threading.Event()
        self._stop = threading.Event()
        # Started now, not at exit: Python 3.12+ refuses to start threads at interpreter exit.
        self._watch = threading.Thread(
            target=self._watch_exit, name="clauditor-otlp-exit", daemon=True
        )
        self._watch.start()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export ``spans``; FAILURE (and one warning per outage) when they could not be."""
        if self._closed:
            self._failed(
                len(spans), [f"not sent: the {self.exit_deadline_s:g} s exit deadline passed"]
            )
            return SpanExportResult.FAILURE
        held: list[str] = []
        _exporting.held = held
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not reach the app
            held.append(f"{type(exc).__name__}: {exc}")
            result = SpanExportResult.FAILURE
        finally:
            _exporting.held = None
        if result is SpanExportResult.SUCCESS:
            with self._lock:
                recovered, self._failing = self._failing, False
            if recovered:
                log.info("clauditor: spans are reaching %s again", self.endpoint)
        else:
            self._failed(len(spans), held)
        return result

    def _failed(self, count: int, held: list[str]) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            reason = held[0] if held else "the exporter reported a failure"
            reason = reason.split(" encountered while exporting", 1)[0]  # not ", retrying"
            log.warning(
                "clauditor: %d span(s) not exported to %s: %s (further failures are not "
                "logged until an export succeeds)",
                count,
                clip(self.endpoint, 200),
                clip(reason, _REASON_CHARS),
            )

    def exit_begins(self) -> None:
        """The interpreter is exiting: exports end :attr:`exit_deadline_s` from now."""
        self._exit.set()

    def _watch_exit(self) -> None:
        self._exit.wait()
        if not self._stop.wait(self.exit_deadline_s):
            self._close()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._inner.shutdown()  # ends a retry wait in progress at once
        except Exception as exc:  # noqa: BLE001  (closing must never raise into the app)
            log.debug("clauditor: closing the OTLP exporter failed: %s", exc)

    def shutdown(self) -> None:
        """Shut the OTel exporter down (once)."""
        self._stop.set()
        self._exit.set()  # lets the watch thread end
        self._close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here: the batch processor in front holds the spans."""
        return True

    def __repr__(self) -> str:
        return f"<BoundedOtlpExporter {self.endpoint}>"
