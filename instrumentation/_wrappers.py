"""The wrappers clauditor puts on the anthropic SDK, and how they are put on and taken off.

Two modes, decided per call:

* **native** - the client makes its own call span (anthropic >= 1.17 with a tracer, the SDK's
  default): the wrappers step aside and :mod:`._native` enriches the SDK's span, so exactly one
  span carries the usage;
* **own** - the client makes none (0.x, or SDK spans turned off): the wrapper starts a span,
  SDK-level hooks tell it the HTTP status and the retries, and the response or stream ends it.

Message Batch results are always clauditor's: one span per result, as the app reads them.
Patches are made on the SDK classes (so every client, ``with_options`` copy and
``with_raw_response`` view made after ``instrument()`` is covered) and fully undone by
:func:`unpatch_all`.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from clauditor import semconv
from clauditor.instrumentation._attributes import (
    client_region,
    code_location,
    context_attributes,
    message_attributes,
)
from clauditor.instrumentation._call import ACTIVE_CALL, Call, start_call
from clauditor.instrumentation._capture import PENDING_CAPTURE, CallCapture, CapturePolicy
from clauditor.instrumentation._native import CALL_SITE
from clauditor.instrumentation._safety import report_failure
from clauditor.instrumentation._streams import (
    AsyncTracedStream,
    AsyncTracedStreamManager,
    TracedStream,
    TracedStreamManager,
)

__all__ = ["Runtime", "forget_native_verdicts", "patch_all", "unpatch_all"]

BATCH_RESULTS_SPAN = "anthropic.messages.batches.results"


@dataclass
class Runtime:
    """What the wrappers need: clauditor's tracer, metrics and content policy (None when off)."""

    tracer: Tracer
    metrics: Any = None
    capture: CapturePolicy | None = None


_runtime: Runtime | None = None
_patched: list[tuple[Any, str, Any]] = []
# The span pipelines (SDK providers' active processors) that have a NativeSpanEnricher.
ENRICHED_PIPELINES: list[Any] = []
_NATIVE_VERDICTS: dict[int, tuple[Any, bool]] = {}
_UNTRACED_CLIENTS: set[type] = set()  # client classes that cannot make spans (anthropic 0.x)


def _native(resource: Any) -> bool:
    """Whether the client's own call span will be made AND enriched by clauditor.

    True only for anthropic >= 1.17 with tracing on whose tracer feeds a provider that has a
    :class:`~._native.NativeSpanEnricher`; in every other case clauditor makes the span itself.
    The verdict is kept per tracer (clients share them) until the enriched pipelines change.
    """
    client = getattr(resource, "_client", None)
    cls = type(client)
    if cls in _UNTRACED_CLIENTS:
        return False
    tracer = getattr(client, "_tracer", None)
    if tracer is None:
        if not hasattr(cls, "_tracer"):  # 0.x clients have none: never native spans
            _UNTRACED_CLIENTS.add(cls)
        return False
    known = _NATIVE_VERDICTS.get(id(tracer))
    if known is not None and known[0] is tracer:
        return known[1]
    real = getattr(tracer, "_real_tracer", tracer)  # a ProxyTracer resolves once a provider is set
    if real is None and hasattr(tracer, "_tracer"):
        real = tracer._tracer
    pipeline = getattr(real, "span_processor", None)
    verdict = pipeline is not None and any(pipeline is p for p in ENRICHED_PIPELINES)
    if real is not None:  # an unresolved proxy may resolve later: ask again next time
        if len(_NATIVE_VERDICTS) > 256:
            _NATIVE_VERDICTS.clear()
        _NATIVE_VERDICTS[id(tracer)] = (tracer, verdict)  # the tracer itself guards id reuse
    return verdict


def forget_native_verdicts() -> None:
    """Drop the cached :func:`_native` verdicts (the enriched pipelines changed)."""
    _NATIVE_VERDICTS.clear()


def _pend(policy: CapturePolicy, kwargs: dict[str, Any]) -> Any:
    """Make this call's capture visible to the SDK-span enricher (native mode); a reset token."""
    try:
        capture = CallCapture.start(policy, kwargs)
    except Exception as exc:
        report_failure("capture", exc)
        capture = None
    return PENDING_CAPTURE.set(capture)


# --- wrapper factories -------------------------------------------------------------------------


def _sync_call(span_name: str, operation: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        rt = _runtime
        if rt is None:
            return original(self, *args, **kwargs)
        region = client_region(getattr(self, "_client", None))
        if _native(self):
            location = code_location(2)
            site = CALL_SITE.set(location if region is None else (location, region))
            try:
                if rt.capture is None or operation != "chat":
                    return original(self, *args, **kwargs)
                token = _pend(rt.capture, kwargs)
                try:
                    return original(self, *args, **kwargs)
                finally:
                    PENDING_CAPTURE.reset(token)
            finally:
                CALL_SITE.reset(site)
        call = start_call(
            rt.tracer, rt.metrics, span_name, operation, kwargs,
            stream=kwargs.get("stream") is True, capture=rt.capture,
        )  # fmt: skip
        if call is None:
            return original(self, *args, **kwargs)
        if region is not None:
            call.attrs[semconv.CLOUD_REGION] = region
        token = ACTIVE_CALL.set(call)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            ACTIVE_CALL.reset(token)
        call.returned(result)
        return result

    return traced


def _async_call(span_name: str, operation: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        rt = _runtime
        if rt is None:
            return await original(self, *args, **kwargs)
        region = client_region(getattr(self, "_client", None))
        if _native(self):
            location = code_location(2)
            site = CALL_SITE.set(location if region is None else (location, region))
            try:
                if rt.capture is None or operation != "chat":
                    return await original(self, *args, **kwargs)
                token = _pend(rt.capture, kwargs)
                try:
                    return await original(self, *args, **kwargs)
                finally:
                    PENDING_CAPTURE.reset(token)
            finally:
                CALL_SITE.reset(site)
        call = start_call(
            rt.tracer, rt.metrics, span_name, operation, kwargs,
            stream=kwargs.get("stream") is True, capture=rt.capture,
        )  # fmt: skip
        if call is None:
            return await original(self, *args, **kwargs)
        if region is not None:
            call.attrs[semconv.CLOUD_REGION] = region
        token = ACTIVE_CALL.set(call)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            ACTIVE_CALL.reset(token)
        call.returned(result)
        return result

    return traced


def _stream_method(original: Callable[..., Any], *, is_async: bool) -> Callable[..., Any]:
    manager_cls = AsyncTracedStreamManager if is_async else TracedStreamManager

    @functools.wraps(original)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)
        rt = _runtime
        if rt is None or _native(self):
            return manager

        region = client_region(getattr(self, "_client", None))

        def start() -> Call | None:
            call = start_call(
                rt.tracer, rt.metrics, semconv.ANTHROPIC_SPAN_MESSAGES_CREATE, "chat", kwargs,
                stream=True, capture=rt.capture,
            )  # fmt: skip
            if call is not None and region is not None:
                call.attrs[semconv.CLOUD_REGION] = region
            return call

        return manager_cls(manager, start)

    return traced


# --- SDK-level hooks (own mode only: they do nothing unless a clauditor call is active) -------


def _process_response_hook(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        call = ACTIVE_CALL.get()
        if call is None:
            return result
        try:
            call.on_http(kwargs.get("response"), kwargs.get("retries_taken"))
            if kwargs.get("stream") and hasattr(result, "__next__"):
                return TracedStream(result, call)
        except Exception as exc:
            report_failure("response hook", exc)
        return result

    return hooked


def _async_process_response_hook(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await original(self, *args, **kwargs)
        call = ACTIVE_CALL.get()
        if call is None:
            return result
        try:
            call.on_http(kwargs.get("response"), kwargs.get("retries_taken"))
            if kwargs.get("stream") and hasattr(result, "__anext__"):
                return AsyncTracedStream(result, call)
        except Exception as exc:
            report_failure("response hook", exc)
        return result

    return hooked


def _retry_hook(original: Callable[..., Any]) -> Callable[..., Any]:
    # Sync and async alike: it returns whatever the SDK's method returns (a coroutine for async).
    @functools.wraps(original)
    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = ACTIVE_CALL.get()
        if call is not None:
            taken = kwargs.get("retries_taken")
            if isinstance(taken, int):
                call.on_retry(taken)
        return original(self, *args, **kwargs)

    return hooked


# --- Message Batch results --------------------------------------------------------------------


def _batch_result_span(rt: Runtime, item: Any, batch_id: str, ctx: dict[str, Any]) -> None:
    result = getattr(item, "result", None)
    kind = getattr(result, "type", None)
    if kind not in ("succeeded", "errored"):
        return  # canceled and expired requests are not billed
    attrs: dict[str, Any] = {
        semconv.GEN_AI_PROVIDER_NAME: "anthropic",
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_REQUEST_STREAM: False,
        "anthropic.message.batch.id": batch_id,
        **ctx,
    }
    custom_id = getattr(item, "custom_id", None)
    if isinstance(custom_id, str):
        attrs["anthropic.message.batch.custom_id"] = custom_id
    now = time.time_ns()
    span = rt.tracer.start_span(BATCH_RESULTS_SPAN, kind=SpanKind.CLIENT, start_time=now)
    if kind == "succeeded":
        message = getattr(result, "message", None)
        attrs.update(message_attributes(message))
        model = attrs.get(semconv.GEN_AI_RESPONSE_MODEL)
        if model is not None:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = model
        attrs.setdefault(semconv.ANTHROPIC_RESPONSE_SERVICE_TIER, "batch")
        span.set_attributes(attrs)
        span.set_status(Status(StatusCode.OK))
    else:
        envelope = getattr(getattr(result, "error", None), "error", None)
        error_type = getattr(envelope, "type", None)
        attrs[semconv.ERROR_TYPE] = error_type if isinstance(error_type, str) else "batch_error"
        span.set_attributes(attrs)
        span.set_status(Status(StatusCode.ERROR, str(getattr(envelope, "message", ""))[:200]))
    span.end(end_time=now)


def _traced_results(rt: Runtime, results: Any, batch_id: str, ctx: dict[str, Any]) -> Any:
    for item in results:
        try:
            _batch_result_span(rt, item, batch_id, ctx)
        except Exception as exc:
            report_failure("batch result", exc)
        yield item


async def _async_traced_results(
    rt: Runtime, results: Any, batch_id: str, ctx: dict[str, Any]
) -> Any:
    async for item in results:
        try:
            _batch_result_span(rt, item, batch_id, ctx)
        except Exception as exc:
            report_failure("batch result", exc)
        yield item


def _results_method(original: Callable[..., Any], *, is_async: bool) -> Callable[..., Any]:
    def context(
        resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        batch_id = args[0] if args else kwargs.get("message_batch_id", "")
        ctx = context_attributes("batch")
        region = client_region(getattr(resource, "_client", None))
        if region is not None:
            ctx[semconv.CLOUD_REGION] = region
        return str(batch_id), ctx

    if is_async:

        @functools.wraps(original)
        async def async_traced(self: Any, *args: Any, **kwargs: Any) -> Any:
            results = await original(self, *args, **kwargs)
            rt = _runtime
            if rt is None:
                return results
            try:
                batch_id, ctx = context(self, args, kwargs)
            except Exception as exc:
                report_failure("batch results", exc)
                return results
            return _async_traced_results(rt, results, batch_id, ctx)

        return async_traced

    @functools.wraps(original)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        results = original(self, *args, **kwargs)
        rt = _runtime
        if rt is None:
            return results
        try:
            batch_id, ctx = context(self, args, kwargs)
        except Exception as exc:
            report_failure("batch results", exc)
            return results
        return _traced_results(rt, results, batch_id, ctx)

    return traced


# --- patching ---------------------------------------------------------------------------------


def _patch(
    module_name: str, class_name: str | None, method: str, factory: Callable[..., Any]
) -> None:
    # class_name None patches a module-level function of the module itself.
    try:
        module = importlib.import_module(module_name)
        cls = module if class_name is None else getattr(module, class_name)
        original = cls.__dict__[method]
    except (ImportError, AttributeError, KeyError):
        return  # this SDK generation has no such method
    if getattr(original, "__clauditor_wrapped__", False):
        return
    replacement = factory(original)
    replacement.__clauditor_wrapped__ = True
    setattr(cls, method, replacement)
    _patched.append((cls, method, original))


def _messages_modules() -> list[tuple[str, str, str]]:
    """(module, sync class, async class) of every Messages resource the installed SDK has."""
    found = []
    for module in (
        "anthropic.resources.messages.messages",
        "anthropic.resources.messages",
        "anthropic.resources.beta.messages.messages",
        "anthropic.resources.beta.messages",
    ):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append((module, "Messages", "AsyncMessages"))
    return found


def patch_all(runtime: Runtime) -> None:
    """Install every wrapper (idempotent) and make ``runtime`` the one they use."""
    global _runtime
    _runtime = runtime
    forget_native_verdicts()
    if _patched:
        return
    chat = semconv.ANTHROPIC_SPAN_MESSAGES_CREATE
    count = semconv.ANTHROPIC_SPAN_COUNT_TOKENS
    for module, sync_cls, async_cls in _messages_modules():
        for method in ("create", "parse"):
            _patch(module, sync_cls, method, functools.partial(_sync_call, chat, "chat"))
            _patch(module, async_cls, method, functools.partial(_async_call, chat, "chat"))
        _patch(
            module, sync_cls, "count_tokens", functools.partial(_sync_call, count, "count_tokens")
        )
        _patch(
            module, async_cls, "count_tokens", functools.partial(_async_call, count, "count_tokens")
        )
        _patch(module, sync_cls, "stream", functools.partial(_stream_method, is_async=False))
        _patch(module, async_cls, "stream", functools.partial(_stream_method, is_async=True))
    for module in (
        "anthropic.resources.messages.batches",
        "anthropic.resources.beta.messages.batches",
    ):
        _patch(module, "Batches", "results", functools.partial(_results_method, is_async=False))
        _patch(module, "AsyncBatches", "results", functools.partial(_results_method, is_async=True))
    # The SDK's own call spans (>= 1.17) learn captured content where the SDK records responses.
    from clauditor.instrumentation._native import record_response_hook, usage_extras_hook

    _patch("anthropic._tracing", None, "record_response", record_response_hook)  # 2.x
    _patch("anthropic.lib._tracing._api_call", None, "record_api_call", record_response_hook)  # 1.x
    # inference_geo and speed, where the SDK records a whole or streamed response on its span.
    for module in ("anthropic._tracing", "anthropic.lib._tracing._streaming"):  # 2.x
        _patch(module, None, "set_response_attributes", usage_extras_hook(0, 2, 1))
    for module in ("anthropic.lib._tracing._api_call", "anthropic.lib._tracing._streaming"):  # 1.x
        _patch(module, None, "set_response", usage_extras_hook(0, 1))
    base = "anthropic._base_client"
    _patch(base, "SyncAPIClient", "_process_response", _process_response_hook)
    _patch(base, "AsyncAPIClient", "_process_response", _async_process_response_hook)
    _patch(base, "SyncAPIClient", "_sleep_for_retry", _retry_hook)
    _patch(base, "AsyncAPIClient", "_sleep_for_retry", _retry_hook)


def unpatch_all() -> None:
    """Remove every wrapper, restoring the SDK's own methods."""
    global _runtime
    _runtime = None
    forget_native_verdicts()
    while _patched:
        cls, method, original = _patched.pop()
        setattr(cls, method, original)
