"""Span attributes from a call's context, request, response and error.

Token counts follow two meanings at once, so no reader has to do cache arithmetic:
``gen_ai.usage.input_tokens`` is INCLUSIVE (uncached + cache read + cache write, as the OTel
semconv says) and ``clauditor.usage.input_tokens`` is Anthropic's UNCACHED count.

Server tools: ``usage.server_tool_use`` gives the web search and web fetch counts (and a code
execution count where the API reports one); a response that ran code execution names its
container (``message.container``), whose id is recorded and, when usage has no code execution
count, the code execution tool uses of the response's content are counted instead. Streams
report the final, cumulative ``server_tool_use`` of ``message_delta``.

The cloud region of a Bedrock or Vertex client (:func:`client_region`) is recorded as
``cloud.region``: from the client's public ``aws_region`` / ``region``, else from the host it
sends requests to (:func:`clauditor.cloud.region_from_host`).

Every reader here tolerates a malformed body: a count that is not an int is left out rather
than guessed, and nothing here raises for odd input.
"""

from __future__ import annotations

import sys
from operator import itemgetter
from types import CodeType
from typing import Any

from clauditor import semconv
from clauditor.cloud import region_from_host
from clauditor.instrumentation._context import current_feature

__all__ = [
    "CODE_EXECUTION_TOOLS",
    "add_context_attributes",
    "add_message_attributes",
    "add_message_ids",
    "add_server_tool_attributes",
    "add_usage_attributes",
    "client_region",
    "code_location",
    "context_attributes",
    "error_attributes",
    "field_dict",
    "fields_of",
    "is_code_execution_use",
    "message_attributes",
    "request_attributes",
    "usage_attributes",
]

# Top-level packages whose frames are never "the app" when looking for the calling code.
_INTERNAL = frozenset(
    {
        "anthropic",
        "opentelemetry",
        "clauditor",
        "httpx",
        "httpx2",
        "httpcore",
        "wrapt",
        "contextlib",
        "asyncio",
        "functools",
        "threading",
        "concurrent",
        "importlib",
    }
)
_code_labels: dict[CodeType, str | None] = {}


def _label(code: CodeType, module: str | None) -> str | None:
    top = (module or "").partition(".")[0]
    if not module or top in _INTERNAL:
        return None
    return f"{module}:{code.co_qualname}"


def code_location(depth: int = 2) -> str | None:
    """``module:function`` of the first frame outside the SDK, OpenTelemetry and clauditor.

    Labels are cached per code object, so the walk costs a dict lookup per frame.
    """
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return None
    labels = _code_labels
    while frame is not None:
        code = frame.f_code
        try:
            label = labels[code]
        except KeyError:
            label = labels[code] = _label(code, frame.f_globals.get("__name__"))
        if label is not None:
            return label
        frame = frame.f_back  # type: ignore[assignment]
    return None


def context_attributes(operation: str) -> dict[str, Any]:
    """The attributes every call span starts with: operation, feature, user, tags, code location."""
    attrs: dict[str, Any] = {}
    add_context_attributes(attrs, operation, 4)
    return attrs


def add_context_attributes(
    attrs: dict[str, Any],
    operation: str,
    depth: int,
    location: str | None = None,
    context: Any = None,
) -> None:
    """Add operation, feature, user, tags and code location to ``attrs``.

    ``location`` is the code location when the caller already knows it; otherwise the search for
    the app's frame starts at ``depth``, counted as ``sys._getframe`` counts from
    :func:`code_location` (1 is this function, 2 its caller, ...). ``context`` is the current
    OpenTelemetry context when the caller holds it (saves looking it up for the baggage).
    """
    attrs[semconv.OPERATION] = operation
    ctx = current_feature(context)
    if ctx is not None:
        attrs.update(ctx.span_attributes)
    if location is None:
        location = code_location(depth)
    if location is not None:
        attrs[semconv.CODE_LOCATION] = location


def request_attributes(kwargs: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """What the request of a Messages call says: model, max_tokens (only when set), stream."""
    attrs: dict[str, Any] = {
        semconv.GEN_AI_PROVIDER_NAME: "anthropic",
        semconv.GEN_AI_REQUEST_STREAM: stream,
    }
    model = kwargs.get("model")
    if isinstance(model, str):
        attrs[semconv.GEN_AI_REQUEST_MODEL] = model
    max_tokens = kwargs.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attrs[semconv.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    tier = kwargs.get("service_tier")
    if isinstance(tier, str):
        attrs[semconv.ANTHROPIC_REQUEST_SERVICE_TIER] = tier
    return attrs


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def field_dict(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``obj`` (a dict, a pydantic model, or any object) as a dict; do not mutate it.

    For an object that is neither, only ``names`` are read (with ``getattr``).
    """
    if type(obj) is dict:
        return obj
    try:
        fields = obj.__dict__
        extra = obj.__pydantic_extra__
    except AttributeError:  # not a pydantic model
        fields = extra = None
    if type(fields) is not dict:
        return {name: getattr(obj, name, None) for name in names}
    return {**fields, **extra} if extra else fields


def fields_of(obj: Any) -> Any:
    """A ``get(name)`` over the fields of ``obj``: a dict, a pydantic model, or any object.

    Pydantic models keep declared fields in ``__dict__`` and unknown ones (a newer API's fields on
    an older SDK) in ``__pydantic_extra__``; reading those dicts avoids ``getattr`` misses, each of
    which costs a raised AttributeError inside pydantic. Anything else is read with ``getattr``.
    """
    if type(obj) is dict:
        return obj.get
    try:
        fields = obj.__dict__
        extra = obj.__pydantic_extra__
    except AttributeError:  # not a pydantic model
        return lambda name: getattr(obj, name, None)
    if type(fields) is not dict:
        return lambda name: getattr(obj, name, None)
    return {**fields, **extra}.get if extra else fields.get


# Read once per call: a module constant is one lookup, semconv.X two.
_CACHE_READ = semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
_CACHE_WRITE = semconv.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS
_UNCACHED = semconv.INPUT_TOKENS_UNCACHED
_INCLUSIVE = semconv.GEN_AI_USAGE_INPUT_TOKENS
_OUTPUT = semconv.GEN_AI_USAGE_OUTPUT_TOKENS
_CACHE_5M = semconv.ANTHROPIC_CACHE_5M_INPUT_TOKENS
_CACHE_1H = semconv.ANTHROPIC_CACHE_1H_INPUT_TOKENS
_TIER = semconv.ANTHROPIC_RESPONSE_SERVICE_TIER
_GEO = semconv.INFERENCE_GEO
_SPEED = semconv.SPEED
_RESPONSE_ID = semconv.GEN_AI_RESPONSE_ID
_RESPONSE_MODEL = semconv.GEN_AI_RESPONSE_MODEL
_STOP_REASON = semconv.ANTHROPIC_STOP_REASON
_CODE_EXECUTION = semconv.CODE_EXECUTION_REQUESTS
_CONTAINER = semconv.CONTAINER_ID
_SERVER_TOOL_FIELDS = (
    ("web_search_requests", semconv.WEB_SEARCH_REQUESTS),
    ("web_fetch_requests", semconv.WEB_FETCH_REQUESTS),
    ("code_execution_requests", _CODE_EXECUTION),  # not in today's API; taken when present
)
# The server tools that run in the code execution container (ServerToolUseBlock.name).
CODE_EXECUTION_TOOLS = frozenset(
    {"code_execution", "bash_code_execution", "text_editor_code_execution"}
)


def is_code_execution_use(block: Any) -> bool:
    """Whether a content block (a model or a dict) is a server tool use of code execution."""
    if _get(block, "type") != "server_tool_use":
        return False
    name = _get(block, "name")
    return type(name) is str and name in CODE_EXECUTION_TOOLS


def add_server_tool_attributes(
    attrs: dict[str, Any],
    server_tool_use: Any,
    container: Any,
    content: Any = None,
    code_uses: int | None = None,
) -> None:
    """Add ``usage.server_tool_use``'s counts and the code execution ``container`` to ``attrs``.

    When there is a container and usage gave no code execution count, the count is
    ``code_uses`` when given (a stream counts its blocks as they start), else the code execution
    tool uses in ``content`` (a Message's content list). An empty or missing ``content`` leaves
    the count out: the anthropic 1.x SDK records a raw response's Message on its span without
    the content, and no count beats a wrong 0.
    """
    if server_tool_use is not None:
        get = fields_of(server_tool_use)
        for field, key in _SERVER_TOOL_FIELDS:
            value = get(field)
            if type(value) is int and value >= 0:
                attrs[key] = value
    if container is None:
        return
    container_id = _get(container, "id")
    if type(container_id) is str:
        attrs[_CONTAINER] = container_id
    if _CODE_EXECUTION not in attrs:
        if code_uses is None:
            if type(content) is not list or not content:
                return
            code_uses = sum(1 for block in content if is_code_execution_use(block))
        attrs[_CODE_EXECUTION] = code_uses


def add_usage_attributes(attrs: dict[str, Any], usage: Any, output: bool = True) -> None:
    """Add the token attributes of ``usage`` (a model or a dict) to ``attrs``; see above."""
    # Runs once per call (and per stream), so counts are checked inline: a count is a
    # non-negative int; bool (an int subclass) and anything else is left out.
    get = fields_of(usage)
    uncached = get("input_tokens")
    read = get("cache_read_input_tokens")
    write = get("cache_creation_input_tokens")
    if type(read) is not int or read < 0:
        read = None
    else:
        attrs[_CACHE_READ] = read
    if type(write) is not int or write < 0:
        write = None
    else:
        attrs[_CACHE_WRITE] = write
    if type(uncached) is int and uncached >= 0:
        attrs[_UNCACHED] = uncached
        attrs[_INCLUSIVE] = uncached + (read or 0) + (write or 0)
    split = get("cache_creation")
    if split is not None:
        split_get = fields_of(split)
        five = split_get("ephemeral_5m_input_tokens")
        hour = split_get("ephemeral_1h_input_tokens")
        if type(five) is int and five >= 0:
            attrs[_CACHE_5M] = five
        if type(hour) is int and hour >= 0:
            attrs[_CACHE_1H] = hour
    if output:
        out = get("output_tokens")
        if type(out) is int and out >= 0:
            attrs[_OUTPUT] = out
    value = get("service_tier")
    if type(value) is str:
        attrs[_TIER] = value
    value = get("inference_geo")
    if type(value) is str:
        attrs[_GEO] = value
    value = get("speed")
    if type(value) is str:
        attrs[_SPEED] = value
    tools = get("server_tool_use")
    if tools is not None:
        add_server_tool_attributes(attrs, tools, None)


def usage_attributes(usage: Any, *, output: bool = True) -> dict[str, Any]:
    """Token attributes from an Anthropic ``usage`` object (a model or a dict).

    ``output=False`` leaves out ``output_tokens`` (a stream's ``message_start`` placeholder).
    """
    attrs: dict[str, Any] = {}
    if usage is not None:
        add_usage_attributes(attrs, usage, output)
    return attrs


_MESSAGE_FIELDS = itemgetter("id", "model", "stop_reason", "usage", "_request_id")
_USAGE_FIELDS = itemgetter(
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
    "cache_creation",
    "service_tier",
)
_SPLIT_FIELDS = itemgetter("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def add_message_attributes(attrs: dict[str, Any], message: Any) -> Any:
    """Add a complete Message's id, model, stop reason and usage to ``attrs``.

    Returns the message's ``_request_id`` (the SDK sets it on parsed responses), or ``None``.
    """
    # This runs once per call, so the SDK's usual Message (pydantic models whose fields are all
    # declared, with the cache TTL split) is read in bulk from the models' field dicts; anything
    # else takes the general path, which gives the same attributes.
    try:
        fields = message.__dict__
        usage = fields["usage"]
        usage_fields = usage.__dict__
        response_id, model, stop, _, request_id = _MESSAGE_FIELDS(fields)
        uncached, read, write, out, split, tier = _USAGE_FIELDS(usage_fields)
        five, hour = _SPLIT_FIELDS(split.__dict__)
        if message.__pydantic_extra__ or usage.__pydantic_extra__ or split.__pydantic_extra__:
            raise KeyError("extra fields")  # merged by the general path
    except (AttributeError, KeyError, TypeError):
        return _add_any_message_attributes(attrs, message)
    if not (
        type(response_id) is str
        and type(model) is str
        and type(stop) is str
        and type(uncached) is int
        and type(read) is int
        and type(write) is int
        and type(out) is int
        and type(five) is int
        and type(hour) is int
        and uncached >= 0
        and read >= 0
        and write >= 0
        and out >= 0
        and five >= 0
        and hour >= 0
    ):
        return _add_any_message_attributes(attrs, message)  # a field missing or malformed
    # Every field valid (the usual case): written in the order the general path uses.
    attrs[_RESPONSE_ID] = response_id
    attrs[_RESPONSE_MODEL] = model
    attrs[_STOP_REASON] = stop
    attrs[_CACHE_READ] = read
    attrs[_CACHE_WRITE] = write
    attrs[_UNCACHED] = uncached
    attrs[_INCLUSIVE] = uncached + read + write
    attrs[_CACHE_5M] = five
    attrs[_CACHE_1H] = hour
    attrs[_OUTPUT] = out
    if type(tier) is str:
        attrs[_TIER] = tier
    get = usage_fields.get  # newer fields, absent from older SDKs' models
    geo = get("inference_geo")
    speed = get("speed")
    if geo is not None or speed is not None:
        if type(geo) is str:
            attrs[_GEO] = geo
        if type(speed) is str:
            attrs[_SPEED] = speed
    tools = get("server_tool_use")
    container = fields.get("container")
    if tools is not None or container is not None:
        add_server_tool_attributes(attrs, tools, container, fields.get("content"))
    return request_id


def _add_any_message_attributes(attrs: dict[str, Any], message: Any) -> Any:
    # add_message_attributes for any message: a dict, a model with extra fields, an object.
    get = fields_of(message)
    add_message_ids(attrs, get)
    usage = get("usage")
    if usage is not None:
        add_usage_attributes(attrs, usage, True)
    container = get("container")
    if container is not None:
        add_server_tool_attributes(attrs, None, container, get("content"))
    return get("_request_id")


def add_message_ids(attrs: dict[str, Any], get: Any) -> None:
    """Add a Message's id, model and stop reason to ``attrs``; ``get`` is its :func:`fields_of`."""
    value = get("id")
    if type(value) is str:
        attrs[_RESPONSE_ID] = value
    value = get("model")
    if type(value) is str:
        attrs[_RESPONSE_MODEL] = value
    value = get("stop_reason")
    if type(value) is str:
        attrs[_STOP_REASON] = value


def message_attributes(message: Any) -> dict[str, Any]:
    """Attributes of a complete Message: id, model, stop reason and usage."""
    attrs: dict[str, Any] = {}
    if message is not None:
        add_message_attributes(attrs, message)
    return attrs


# Client class -> the public attribute that holds its region ("" for clients that have none).
_REGION_FIELDS: dict[type, str] = {}
_REGION_MODULES = (("anthropic.lib.bedrock", "aws_region"), ("anthropic.lib.vertex", "region"))


def _region_field(cls: type) -> str:
    for klass in cls.__mro__:
        module = getattr(klass, "__module__", "") or ""
        for prefix, field in _REGION_MODULES:
            if module.startswith(prefix):
                return field
    return ""


def client_region(client: Any) -> str | None:
    """The cloud region an ``AnthropicBedrock`` / ``AnthropicVertex`` client (sync or async)
    sends its calls to; ``None`` for every other client.

    The client's own ``aws_region`` / ``region`` (Vertex's may be ``global``, ``us`` or
    ``eu``), else the region of its ``base_url`` host. A dict lookup for other clients.
    """
    cls = type(client)
    field = _REGION_FIELDS.get(cls)
    if field is None:
        field = _region_field(cls)
        if len(_REGION_FIELDS) < 256:
            _REGION_FIELDS[cls] = field
    if not field:
        return None
    try:
        value = getattr(client, field, None)
    except Exception:  # Vertex's base class raises when no region was ever set
        value = None
    if type(value) is str and value:
        return value
    try:
        host = client.base_url.host
    except Exception:
        return None
    return region_from_host(host) if type(host) is str else None


def error_attributes(exc: BaseException) -> dict[str, Any]:
    """``error.type`` and the HTTP status of a failed call, from the SDK's exception.

    API errors give the type in their envelope (``overloaded_error``, ...); timeouts give
    ``client_timeout_error`` and transport failures ``connection_error``, as the SDK's own spans do.
    """
    attrs: dict[str, Any] = {}
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = status
    kind = type(exc).__name__
    if kind == "APITimeoutError" or "Timeout" in kind:
        error_type = "client_timeout_error"
    elif kind == "APIConnectionError" or "Connect" in kind:
        error_type = "connection_error"
    else:
        error_type = None
        envelope = _get(getattr(exc, "body", None), "error")
        inner = _get(envelope, "type")
        if isinstance(inner, str):
            error_type = inner
        else:
            outer = _get(getattr(exc, "body", None), "type")
            if isinstance(outer, str) and outer != "error":
                error_type = outer
        if error_type is None:
            error_type = str(status) if isinstance(status, int) else kind
    attrs[semconv.ERROR_TYPE] = error_type
    return attrs
