"""The feature context: which product feature (and end user) a Claude call serves.

``feature(name, user_id=None, **tags)`` is a context manager and a decorator (sync and async). It
stores a :class:`FeatureContext` in a :mod:`contextvars` variable, so it follows the code path
that set it: each thread and each asyncio task sees its own value, and a task created inside the
block inherits it. The innermost ``feature`` wins for the name; ``user_id`` and tags are
inherited from the enclosing one unless given again.

It also sets W3C baggage (``clauditor.feature``, ``clauditor.user_id``), so the feature crosses
service boundaries with any propagator that carries baggage, and so that an app instrumented
with no code change (``opentelemetry-instrument``) can still be tagged by its caller.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context

from clauditor import semconv
from clauditor.redact import scrub

__all__ = ["ACTIVE_FEATURE", "FeatureContext", "current_feature", "feature"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class FeatureContext:
    """The feature, user and free-form tags of the calls made inside a ``feature`` block."""

    name: str
    user_id: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    # The span attributes these stand for, made once per block rather than once per call.
    # Read-only: callers copy them into their own dict.
    span_attributes: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        attrs = {semconv.FEATURE: self.name}
        if self.user_id is not None:
            attrs[semconv.USER_ID] = self.user_id
        for key, value in self.tags:
            if key == "conversation_id":
                attrs[semconv.GEN_AI_CONVERSATION_ID] = value
            else:
                attrs[semconv.TAG_PREFIX + key] = scrub(value)
        object.__setattr__(self, "span_attributes", attrs)  # frozen: set once, here


ACTIVE_FEATURE: contextvars.ContextVar[FeatureContext | None] = contextvars.ContextVar(
    "clauditor_feature", default=None
)


def current_feature(context: otel_context.Context | None = None) -> FeatureContext | None:
    """The innermost feature context, else one built from W3C baggage, else ``None``.

    Baggage is read only when no ``feature`` block is active, so in-process tagging always wins
    over what an upstream service sent. ``context`` is the OpenTelemetry context to read the
    baggage from when the caller already holds the current one (default: the current one).
    """
    ctx = ACTIVE_FEATURE.get()
    if ctx is not None:
        return ctx
    if context is None:
        context = otel_context.get_current()
    if not context:  # an empty context carries no baggage: skip the baggage API's lookups
        return None
    name = baggage.get_baggage(semconv.BAGGAGE_FEATURE, context)
    if name is None:
        return None
    user = baggage.get_baggage(semconv.BAGGAGE_USER_ID, context)
    return FeatureContext(str(name), None if user is None else str(user))


class feature:  # noqa: N801 - a lower-case name, as users write it: `with clauditor.feature(...)`
    """Tag every Claude call made inside with a feature name, an optional user and tags.

    Use ``with feature("search", user_id="u-1"):`` or ``async with``, or decorate a function
    (sync or async) with ``@feature("search")``. Nested blocks: the innermost name wins and the
    user and tags of the outer block carry over unless given again. Tag values are turned into
    strings; a ``conversation_id`` tag becomes ``gen_ai.conversation.id`` on the spans.
    """

    __slots__ = ("_name", "_tags", "_tokens", "_user_id")

    def __init__(self, name: str, user_id: str | None = None, **tags: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("clauditor.feature() needs a non-empty feature name")
        self._name = name
        self._user_id = None if user_id is None else str(user_id)
        self._tags = tuple(sorted((str(k), str(v)) for k, v in tags.items()))
        # A stack, so that one `feature` object can be entered again while it is active.
        self._tokens: list[tuple[contextvars.Token[FeatureContext | None], object]] = []

    def _context(self) -> FeatureContext:
        outer = ACTIVE_FEATURE.get()
        user = self._user_id
        tags = self._tags
        if outer is not None:
            if user is None:
                user = outer.user_id
            if outer.tags:
                merged = dict(outer.tags)
                merged.update(self._tags)
                tags = tuple(sorted(merged.items()))
        return FeatureContext(self._name, user, tags)

    def __enter__(self) -> FeatureContext:
        ctx = self._context()
        token = ACTIVE_FEATURE.set(ctx)
        bag = baggage.set_baggage(semconv.BAGGAGE_FEATURE, ctx.name)
        if ctx.user_id is not None:
            bag = baggage.set_baggage(semconv.BAGGAGE_USER_ID, ctx.user_id, context=bag)
        self._tokens.append((token, otel_context.attach(bag)))
        return ctx

    def __exit__(self, *exc: object) -> None:
        token, bag_token = self._tokens.pop()
        otel_context.detach(bag_token)  # type: ignore[arg-type]
        ACTIVE_FEATURE.reset(token)

    async def __aenter__(self) -> FeatureContext:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` so that each of its calls runs inside this feature."""
        name, user, tags = self._name, self._user_id, dict(self._tags)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_tagged(*args: Any, **kwargs: Any) -> Any:
                with feature(name, user, **tags):
                    return await fn(*args, **kwargs)

            return async_tagged  # type: ignore[return-value]

        @functools.wraps(fn)
        def tagged(*args: Any, **kwargs: Any) -> Any:
            with feature(name, user, **tags):
                return fn(*args, **kwargs)

        return tagged  # type: ignore[return-value]
