"""Proxies that watch a stream the app reads, and end the call's span when the stream ends.

:class:`TracedStream` / :class:`AsyncTracedStream` stand in for the SDK's ``Stream`` /
``AsyncStream`` of raw events. They pass every event through unchanged (``isinstance`` checks
still see the SDK class) and tell the :class:`~._call.Call` about it. The span ends when the
stream is read to the end (ok), raises (error, e.g. an ``error`` event mid-stream), or is
closed or dropped early (``clauditor.stream.outcome = abandoned``).

The stream helpers (``messages.stream()``: ``text_stream``, ``get_final_message``, ...) read
the raw stream through these proxies, so they are covered too. :class:`TracedStreamManager`
starts the call when the app enters ``with client.messages.stream(...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clauditor.instrumentation._call import ACTIVE_CALL, Call

__all__ = [
    "AsyncTracedStream",
    "AsyncTracedStreamManager",
    "TracedStream",
    "TracedStreamManager",
]


class TracedStream:
    """A sync stream of raw events, observed."""

    __slots__ = ("__weakref__", "_call", "_wrapped")

    def __init__(self, wrapped: Any, call: Call) -> None:
        self._wrapped = wrapped
        self._call = call
        call.start_stream()

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # so that isinstance(proxy, anthropic.Stream) holds
        return type(self._wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        try:
            event = self._wrapped.__next__()
        except StopIteration:
            self._call.stream_ended()
            raise
        except BaseException as exc:
            self._call.fail(exc)
            raise
        call = self._call
        if not (call.skip_deltas and getattr(event, "type", None) == "content_block_delta"):
            call.event(event)
        return event

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the stream; a stream closed before its end is recorded as abandoned."""
        self._call.abandoned()
        self._wrapped.close()

    def __del__(self) -> None:
        call = getattr(self, "_call", None)
        if call is not None:
            call.abandoned()


class AsyncTracedStream:
    """An async stream of raw events, observed."""

    __slots__ = ("__weakref__", "_call", "_wrapped")

    def __init__(self, wrapped: Any, call: Call) -> None:
        self._wrapped = wrapped
        self._call = call
        call.start_stream()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def __aiter__(self) -> AsyncTracedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await self._wrapped.__anext__()
        except StopAsyncIteration:
            self._call.stream_ended()
            raise
        except BaseException as exc:
            self._call.fail(exc)
            raise
        call = self._call
        if not (call.skip_deltas and getattr(event, "type", None) == "content_block_delta"):
            call.event(event)
        return event

    async def __aenter__(self) -> AsyncTracedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the stream; a stream closed before its end is recorded as abandoned."""
        self._call.abandoned()
        await self._wrapped.close()

    def __del__(self) -> None:
        call = getattr(self, "_call", None)
        if call is not None:
            call.abandoned()


class TracedStreamManager:
    """Stands in for ``MessageStreamManager``: the call starts when the app enters it."""

    __slots__ = ("_manager", "_start")

    def __init__(self, manager: Any, start: Callable[[], Call | None]) -> None:
        self._manager = manager
        self._start = start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)

    def __enter__(self) -> Any:
        call = self._start()
        if call is None:
            return self._manager.__enter__()
        token = ACTIVE_CALL.set(call)
        try:
            return self._manager.__enter__()
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            ACTIVE_CALL.reset(token)

    def __exit__(self, *exc: Any) -> Any:
        return self._manager.__exit__(*exc)


class AsyncTracedStreamManager:
    """Stands in for ``AsyncMessageStreamManager``: the call starts on ``async with``."""

    __slots__ = ("_manager", "_start")

    def __init__(self, manager: Any, start: Callable[[], Call | None]) -> None:
        self._manager = manager
        self._start = start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)

    async def __aenter__(self) -> Any:
        call = self._start()
        if call is None:
            return await self._manager.__aenter__()
        token = ACTIVE_CALL.set(call)
        try:
            return await self._manager.__aenter__()
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            ACTIVE_CALL.reset(token)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._manager.__aexit__(*exc)
