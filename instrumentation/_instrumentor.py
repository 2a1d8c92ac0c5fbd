"""``instrument()`` / ``uninstrument()`` and the zero-code ``AnthropicInstrumentor``.

``instrument()`` is the one-line setup: it finds or makes a tracer provider, adds a
sink (by default this process's span file in the folder beside the database, see
``._span_file``; OTLP when an endpoint is given or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set), and
installs the wrappers. ``AnthropicInstrumentor`` is
what ``opentelemetry-instrument`` loads through the ``opentelemetry_instrumentor`` entry point:
it installs the wrappers and the SDK-span enricher on the global provider and adds no sink (the
OTel configuration decides where spans go).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Collection
from pathlib import Path
from typing import Any

from opentelemetry import trace

# The module starts with a file-level `# type: ignore`, so mypy sees none of its names.
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from clauditor import semconv
from clauditor.instrumentation._capture import CapturePolicy, policy_from_environment
from clauditor.instrumentation._metrics import CallMetrics
from clauditor.instrumentation._native import NativeSpanEnricher
from clauditor.instrumentation._safety import report_failure
from clauditor.instrumentation._span_file import (
    MAX_EXPORT_BATCH,
    SCHEDULE_DELAY_MS,
    SpanFileExporter,
    span_folder,
)
from clauditor.instrumentation._wrappers import (
    ENRICHED_PIPELINES,
    Runtime,
    forget_native_verdicts,
    patch_all,
    unpatch_all,
)

__all__ = ["AnthropicInstrumentor", "Handle", "instrument", "uninstrument"]

log = logging.getLogger("clauditor.instrumentation")

DEFAULT_SERVICE = "unknown_service"
DEFAULT_DB = "clauditor.duckdb"  # as clauditor.store names it (not imported: it loads duckdb)
_METRICS_ENV = "OTEL_INSTRUMENTATION_CLAUDITOR_METRICS"  # "false" turns the metrics off


class AnthropicInstrumentor(BaseInstrumentor):
    """OpenTelemetry instrumentor for the anthropic SDK (sync and async clients, every generation).

    ``AnthropicInstrumentor().instrument(tracer_provider=..., meter_provider=...)`` installs the
    wrappers; ``uninstrument()`` removes every one of them. With no provider given, the global
    ones are used. The feature comes from ``clauditor.feature`` blocks or, failing that, from the
    ``clauditor.feature`` W3C baggage entry. ``capture_content=`` takes a content policy (see
    :class:`~._capture.CapturePolicy`); without it, ``$CLAUDITOR_CAPTURE_CONTENT`` or the config
    file's ``[capture]`` table decides, and content capture is off when neither says anything.
    """

    # Keyed weakly by provider: an id() could be reused by a later provider once one is freed.
    _enrichers: weakref.WeakKeyDictionary[Any, NativeSpanEnricher] = weakref.WeakKeyDictionary()

    def instrumentation_dependencies(self) -> Collection[str]:
        """The instrumented library, as ``opentelemetry-instrument`` checks it."""
        return ("anthropic >= 0.40",)

    def _instrument(self, **kwargs: Any) -> None:
        from clauditor import __version__

        tracer_provider = kwargs.get("tracer_provider")
        meter_provider = kwargs.get("meter_provider")
        metrics = None
        if kwargs.get("metrics", True) and os.environ.get(_METRICS_ENV, "").lower() != "false":
            try:
                metrics = CallMetrics(meter_provider)
            except Exception as exc:
                report_failure("metrics setup", exc)
        tracer = trace.get_tracer(
            semconv.CLAUDITOR_SCOPE, __version__, tracer_provider=tracer_provider
        )
        provider = tracer_provider or trace.get_tracer_provider()
        self._add_enricher(provider, metrics)
        policy = CapturePolicy.off()
        try:
            if kwargs.get("capture_content") is not None:
                policy = CapturePolicy.coerce(kwargs["capture_content"])
            else:
                policy = policy_from_environment()
        except Exception as exc:  # a bad config file leaves capture off, never stops the app
            report_failure("capture policy", exc)
        capture = policy if policy.enabled else None
        patch_all(Runtime(tracer=tracer, metrics=metrics, capture=capture))

    def _add_enricher(self, provider: Any, metrics: Any) -> None:
        pipeline = getattr(provider, "_active_span_processor", None)
        if pipeline is None or not hasattr(provider, "add_span_processor"):
            return  # not an SDK provider: the SDK's spans cannot be enriched, clauditor owns them
        if not _sdk_makes_spans():
            return  # anthropic 0.x: no SDK spans to enrich, and every span would pay the check
        enricher = self._enrichers.get(provider)
        if enricher is None:
            enricher = NativeSpanEnricher(metrics)
            provider.add_span_processor(enricher)
            self._enrichers[provider] = enricher
        enricher.enabled = True
        enricher.metrics = metrics
        if not any(pipeline is p for p in ENRICHED_PIPELINES):
            ENRICHED_PIPELINES.append(pipeline)
            forget_native_verdicts()

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch_all()
        # Span processors cannot be removed from a provider; switch ours off instead.
        for enricher in self._enrichers.values():
            enricher.enabled = False
        ENRICHED_PIPELINES.clear()
        forget_native_verdicts()


def _sdk_makes_spans() -> bool:
    """Whether the installed anthropic SDK can make its own call spans (>= 1.17)."""
    try:
        from anthropic._base_client import BaseClient
    except ImportError:
        return False
    return hasattr(BaseClient, "_tracer")


class Handle:
    """What ``instrument()`` returns: flush the sink now, or shut clauditor's part down."""

    def __init__(
        self,
        provider: Any,
        sink: SpanProcessor | None,
        *,
        owns_provider: bool,
        target: str,
        exporter: SpanExporter | None = None,
    ) -> None:
        self.provider = provider
        self.sink = sink
        self.exporter = exporter
        self.owns_provider = owns_provider
        self.target = target
        self.active = True

    def flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now (to the span file, the OTLP endpoint, or ``exporter``)."""
        if self.sink is None:
            return True
        try:
            return bool(self.sink.force_flush(timeout_millis))
        except Exception as exc:
            report_failure("flush", exc)
            return False

    def shutdown(self) -> None:
        """Remove the wrappers, flush and close the sink. Safe to call twice."""
        global _handle
        if not self.active:
            return
        self.active = False
        AnthropicInstrumentor().uninstrument()
        if self.sink is not None:
            try:
                self.sink.shutdown()
            except Exception as exc:
                report_failure("shutdown", exc)
        if _handle is self:
            _handle = None

    def _at_exit(self) -> None:
        if self.active:
            # An OTLP sink gives the exit flush a deadline (1 s): an endpoint that is down
            # must not hold the app's exit for the exporter's retries.
            exit_begins = getattr(self.exporter, "exit_begins", None)
            if callable(exit_begins):
                exit_begins()
            self.flush(5_000)

    def __repr__(self) -> str:
        return f"<clauditor.Handle {self.target} active={self.active}>"


_handle: Handle | None = None
_lock = threading.Lock()


def _sink_exporter(
    db: str | os.PathLike[str] | None, endpoint: str | None, service: str, environment: str | None
) -> tuple[SpanExporter, str]:
    endpoint = endpoint or os.environ.get(semconv.ENV_OTLP_ENDPOINT)
    if endpoint and db is None:
        from clauditor.instrumentation._otlp import BoundedOtlpExporter

        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        return BoundedOtlpExporter(url), f"otlp {url}"
    # The database's path decides the span folder; the app never opens the database.
    path = Path(db) if db is not None else Path(os.environ.get(semconv.ENV_DB) or DEFAULT_DB)
    folder = span_folder(path)
    exporter = SpanFileExporter(folder, service=service, environment=environment)
    return exporter, f"span files {folder}"


def instrument(
    service: str | None = None,
    environment: str | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    capture_content: bool | str | float | CapturePolicy | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    exporter: SpanExporter | None = None,
) -> Handle:
    """Trace every Claude call this process makes; returns a :class:`Handle`.

    Idempotent: a second call returns the first handle. When the app already has an SDK tracer
    provider (or passes ``tracer_provider``), clauditor adds to it; otherwise it makes one with
    resource ``service.name`` / ``deployment.environment.name`` and sets it globally. Spans go to
    ``exporter`` when given, else to ``endpoint`` / ``$OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP/HTTP),
    else to this process's span file in the span folder beside the database ``db`` (default
    ``$CLAUDITOR_DB`` or ``./clauditor.duckdb``; folder ``<db>.spans``), which the next clauditor
    command reading ``db`` ingests. The app never opens the database. Spans pass through a
    batching processor (exported every second for the span files) flushed at interpreter exit.

    ``capture_content`` records prompts and responses on the spans: ``"errors_only"`` (request
    and error body of failed calls), a sample rate such as ``0.05`` (request and response of that
    share of calls), ``True`` (every call) or a :class:`CapturePolicy`. ``None`` (the default)
    reads ``$CLAUDITOR_CAPTURE_CONTENT`` and then the config file's ``[capture]`` table; with
    neither, nothing of a prompt or response is recorded. API keys and auth headers never are.
    A value that is not a policy raises :class:`~clauditor.errors.ConfigError`.
    """
    global _handle
    policy = None if capture_content is None else CapturePolicy.coerce(capture_content)
    with _lock:
        if _handle is not None and _handle.active:
            return _handle
        service = service or os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE
        provider = tracer_provider
        owns = False
        if provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                provider = current
            else:
                attrs = {semconv.SERVICE_NAME: service}
                if environment:
                    attrs[semconv.DEPLOYMENT_ENVIRONMENT_NAME] = environment
                provider = TracerProvider(resource=Resource.create(attrs))
                trace.set_tracer_provider(provider)
                owns = True
        sink: SpanProcessor | None = None
        target = "none"
        try:
            if exporter is None:
                exporter, target = _sink_exporter(db, endpoint, service, environment)
            else:
                target = type(exporter).__name__
            if isinstance(exporter, SpanFileExporter):
                # What a killed app loses is what is queued here: at most about a second.
                sink = BatchSpanProcessor(
                    exporter,
                    schedule_delay_millis=SCHEDULE_DELAY_MS,
                    max_export_batch_size=MAX_EXPORT_BATCH,
                )
            else:
                sink = BatchSpanProcessor(exporter)
            provider.add_span_processor(sink)
        except Exception as exc:  # a broken sink must not stop the app from starting
            report_failure("sink setup", exc)
        try:
            AnthropicInstrumentor().instrument(
                tracer_provider=provider,
                meter_provider=meter_provider,
                capture_content=policy,
                skip_dep_check=True,
            )
        except Exception as exc:
            report_failure("instrument", exc)
        _handle = Handle(provider, sink, owns_provider=owns, target=target, exporter=exporter)
        atexit.register(_handle._at_exit)
        return _handle


def uninstrument() -> None:
    """Remove every wrapper clauditor installed and close its sink (flushing it first)."""
    if _handle is not None:
        _handle.shutdown()
    else:
        AnthropicInstrumentor().uninstrument()
