"""Prompt and response capture: off by default, opt-in with a policy, never a secret recorded.

A :class:`CapturePolicy` says which calls have their content recorded:

* ``off`` (the default): nothing of a prompt or a response is recorded;
* ``errors_only``: a failed call records its request (``gen_ai.input.messages``,
  ``gen_ai.system_instructions``) and the API's error body (``clauditor.error.body``);
* ``sample``: a random ``sample_rate`` share of calls records its request and its response
  (``gen_ai.output.messages``), and the error body when it fails.

Content goes on the call span as JSON strings in the OTel GenAI message schema (``role`` plus
``parts`` of ``text``, ``tool_call``, ``tool_call_response``, ``reasoning``, ``blob``/``uri``
without the bytes). Every string is scrubbed with :func:`clauditor.redact.scrub` (``sk-ant-``
keys, bearer tokens, webhook URLs) and every value under a secret-named key (``x-api-key``,
``authorization``, ...) is replaced before serialising; request headers are never read. Each
attribute is at most ``max_chars`` characters and always valid JSON: long strings are cut first,
then the oldest messages dropped, and ``clauditor.content.truncated`` says so.

The per-call cost with capture off is one ``is None`` test; with a sample rate it is one
``random()`` per call, and the serialising happens only for the calls that are recorded.

Where the SDK makes the call span itself (anthropic >= 1.17 with its spans on), the request is
put on that span when it starts and the response or error where the SDK records the result, so
``messages.create`` is covered, streamed or not, except that a streamed response's text is not
assembled there (clauditor does not see the events in that mode), and ``messages.stream()``
records nothing. On clauditor's own spans every path records everything the policy asks for.
"""

from __future__ import annotations

import contextvars
import json
import os
import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clauditor import semconv
from clauditor.config import CaptureConfig, find_config_file
from clauditor.errors import ConfigError
from clauditor.redact import REDACTED, is_secret_key, scrub

__all__ = ["PENDING_CAPTURE", "CallCapture", "CapturePolicy", "policy_from_environment"]

DEFAULT_MAX_CHARS = 16_384
_MIN_STRING = 16  # strings are never cut shorter than this before messages are dropped
_POLICIES = ("off", "errors_only", "sample")

# The capture of the call being made in this thread / task when the SDK makes the span
# (anthropic >= 1.17): the wrapper sets it, the SDK-span enricher and response hook read it.
PENDING_CAPTURE: contextvars.ContextVar[CallCapture | None] = contextvars.ContextVar(
    "clauditor_pending_capture", default=None
)


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """Which calls have their prompts and responses recorded, and how much of them.

    Build one with :meth:`off`, :meth:`errors_only` or :meth:`sample`, or let
    :meth:`coerce` read what ``clauditor.instrument(capture_content=...)`` was given.
    ``max_chars`` bounds each recorded attribute (a JSON string).
    """

    mode: str = "off"
    sample_rate: float = 0.0
    max_chars: int = DEFAULT_MAX_CHARS

    def __post_init__(self) -> None:
        if self.mode not in _POLICIES:
            raise ConfigError(f"capture policy must be one of {_POLICIES}, got {self.mode!r}")
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ConfigError(f"capture sample_rate must be a number in [0, 1], got {rate!r}")
        if not isinstance(self.max_chars, int) or self.max_chars < 256:
            raise ConfigError(f"capture max_chars must be an int >= 256, got {self.max_chars!r}")

    @classmethod
    def off(cls) -> CapturePolicy:
        """Record no content (the default)."""
        return cls()

    @classmethod
    def errors_only(cls, *, max_chars: int = DEFAULT_MAX_CHARS) -> CapturePolicy:
        """Record the request and the error body of failed calls only."""
        return cls("errors_only", 0.0, max_chars)

    @classmethod
    def sample(cls, rate: float, *, max_chars: int = DEFAULT_MAX_CHARS) -> CapturePolicy:
        """Record request and response of a random ``rate`` share of calls (1.0: every call)."""
        return cls("sample", float(rate), max_chars)

    @classmethod
    def from_config(cls, config: CaptureConfig) -> CapturePolicy:
        """The policy a ``[capture]`` table (:class:`clauditor.config.CaptureConfig`) states."""
        if config.policy == "sample":
            return cls.sample(config.sample_rate)
        return cls(config.policy)

    @classmethod
    def coerce(cls, value: Any) -> CapturePolicy:
        """Read a ``capture_content`` value.

        ``False``/``None``/``"off"`` -> off; ``True``/``"all"`` -> every call; ``"errors_only"``;
        a number in [0, 1] (or its string) -> that sample rate; a :class:`CapturePolicy` or a
        :class:`~clauditor.config.CaptureConfig` as they are. Anything else raises
        :class:`~clauditor.errors.ConfigError`.
        """
        if isinstance(value, CapturePolicy):
            return value
        if isinstance(value, CaptureConfig):
            return cls.from_config(value)
        if value is None or value is False:
            return cls.off()
        if value is True:
            return cls.sample(1.0)
        if isinstance(value, int | float):
            return cls.off() if value == 0 else cls.sample(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("", "off", "false", "none", "0"):
                return cls.off()
            if text in ("all", "true", "on"):
                return cls.sample(1.0)
            if text in ("errors_only", "errors"):
                return cls.errors_only()
            try:
                return cls.coerce(float(text))
            except ValueError:
                pass
        raise ConfigError(
            "capture_content must be False, True, 'errors_only', a sample rate in [0, 1] or a "
            f"CapturePolicy, got {value!r}"
        )

    @property
    def enabled(self) -> bool:
        """Whether any call can have content recorded."""
        return self.mode == "errors_only" or (self.mode == "sample" and self.sample_rate > 0)


def policy_from_environment() -> CapturePolicy:
    """The policy when ``instrument()`` is given none: ``$CLAUDITOR_CAPTURE_CONTENT``, else the
    ``[capture]`` table of the config file (see :mod:`clauditor.config` for the lookup), else off.

    Reads only that table, so the price table (and Polars) is not loaded into the app.
    """
    env = os.environ.get(semconv.ENV_CAPTURE_CONTENT)
    if env:
        return CapturePolicy.coerce(env)
    path, is_pyproject = find_config_file()
    if path is None:
        return CapturePolicy.off()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the [capture] table: {exc}") from None
    if is_pyproject:
        data = data.get("tool", {}).get("clauditor", {})
    table = data.get("capture")
    if table is None:
        return CapturePolicy.off()
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: [capture] must be a table")
    try:
        return CapturePolicy.from_config(
            CaptureConfig(
                policy=str(table.get("policy", "off")),
                sample_rate=table.get("sample_rate", 0.0),
            )
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- the GenAI message schema ------------------------------------------------------------------


def _plain(block: Any) -> Any:
    """A content block as plain data (SDK models are dumped; dicts and strings pass)."""
    dump = getattr(block, "model_dump", None)
    if dump is not None:
        return dump(exclude_none=True)
    return block


def _media_part(block: Mapping[str, Any], kind: str) -> dict[str, Any]:
    # The bytes of images and documents are never recorded: only what they are.
    source = block.get("source")
    source = source if isinstance(source, Mapping) else {}
    part: dict[str, Any] = {"type": "blob", "modality": kind}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        part = {"type": "uri", "modality": kind, "uri": source["url"]}
    if isinstance(source.get("media_type"), str):
        part["mime_type"] = source["media_type"]
    return part


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if content is None:
        return []
    if isinstance(content, Mapping) or not hasattr(content, "__iter__"):
        content = [content]
    parts: list[dict[str, Any]] = []
    for raw in content:
        block = _plain(raw)
        if isinstance(block, str):
            parts.append({"type": "text", "content": block})
            continue
        if not isinstance(block, Mapping):
            parts.append({"type": type(block).__name__})
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text", "")})
        elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
            parts.append(
                {
                    "type": "tool_call",
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "arguments": block.get("input"),
                }
            )
        elif isinstance(kind, str) and kind.endswith("tool_result"):
            inner = block.get("content")
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": block.get("tool_use_id"),
                    "response": inner if isinstance(inner, str) else _parts(inner),
                }
            )
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": block.get("thinking", "")})
        elif kind in ("image", "document"):
            parts.append(_media_part(block, kind))
        else:  # redacted_thinking, search results, ...: what it is, not what it holds
            parts.append({"type": str(kind or "unknown")})
    return parts


def _messages(messages: Any) -> list[dict[str, Any]]:
    out = []
    for raw in messages or ():
        message = _plain(raw)
        if isinstance(message, Mapping):
            out.append(
                {"role": message.get("role", "user"), "parts": _parts(message.get("content"))}
            )
    return out


def _clean(value: Any) -> Any:
    """``value`` with secrets scrubbed from strings and secret-named keys' values replaced."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_key(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _cut(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        if len(value) <= cap:
            return value
        return value[:cap] + f"...[{len(value) - cap} more chars]"
    if isinstance(value, dict):
        return {k: _cut(v, cap) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, cap) for v in value]
    return value


def bounded_json(value: Any, limit: int) -> tuple[str, bool]:
    """``value`` as JSON of at most ``limit`` characters, and whether it had to be shortened.

    Strings are cut (halving their allowance) until it fits; then, for a list, the oldest items
    are dropped. The result is always valid JSON.
    """
    text = _dumps(value)
    if len(text) <= limit:
        return text, False
    cap = limit // 2
    while cap >= _MIN_STRING:
        text = _dumps(_cut(value, cap))
        if len(text) <= limit:
            return text, True
        cap //= 2
    if isinstance(value, list):
        items = _cut(value, _MIN_STRING)
        while items:
            items = items[1:]
            text = _dumps(items)
            if len(text) <= limit:
                return text, True
    return "[]" if isinstance(value, list) else "{}", True


# --- one call's capture ------------------------------------------------------------------------


class CallCapture:
    """What one call will record: everything (``full``) or, if it fails, its request and error.

    Made by :meth:`start` only for calls the policy may record; the app's ``kwargs`` are kept by
    reference (not copied) until the call ends.
    """

    __slots__ = ("_blocks", "full", "kwargs", "max_chars", "span")

    def __init__(self, full: bool, kwargs: Mapping[str, Any], max_chars: int) -> None:
        self.full = full
        self.kwargs = kwargs
        self.max_chars = max_chars
        self.span: Any = None  # the SDK's span, when the SDK makes it
        self._blocks: dict[int, dict[str, Any]] = {}

    @staticmethod
    def start(policy: CapturePolicy, kwargs: Mapping[str, Any]) -> CallCapture | None:
        """The capture of a call with these request ``kwargs``, or ``None`` (record nothing)."""
        if policy.mode == "errors_only":
            return CallCapture(False, kwargs, policy.max_chars)
        if policy.mode == "sample" and random.random() < policy.sample_rate:
            return CallCapture(True, kwargs, policy.max_chars)
        return None

    def _put(self, attrs: dict[str, Any], key: str, value: Any) -> None:
        text, cut = bounded_json(_clean(value), self.max_chars)
        attrs[key] = text
        if cut:
            attrs[semconv.CONTENT_TRUNCATED] = True

    def input_attributes(self) -> dict[str, Any]:
        """``gen_ai.input.messages`` and ``gen_ai.system_instructions`` of the request."""
        attrs: dict[str, Any] = {}
        kwargs = self.kwargs
        self._put(attrs, semconv.GEN_AI_INPUT_MESSAGES, _messages(kwargs.get("messages")))
        system = kwargs.get("system")
        if system:
            self._put(attrs, semconv.GEN_AI_SYSTEM_INSTRUCTIONS, _parts(system))
        return attrs

    def output_attributes(self, message: Any) -> dict[str, Any]:
        """``gen_ai.output.messages`` of a complete Message (a model or its decoded JSON)."""
        attrs: dict[str, Any] = {}
        if not self.full:
            return attrs
        data = _plain(message)
        if not isinstance(data, Mapping):
            return attrs
        output = {
            "role": data.get("role", "assistant"),
            "parts": _parts(data.get("content")),
            "finish_reason": data.get("stop_reason") or "",
        }
        self._put(attrs, semconv.GEN_AI_OUTPUT_MESSAGES, [output])
        return attrs

    def error_attributes(self, exc: BaseException) -> dict[str, Any]:
        """The request and the error body of a failed call (also under ``errors_only``)."""
        attrs = {} if self.full else self.input_attributes()
        body = getattr(exc, "body", None)
        if body is None:
            body = {"type": type(exc).__name__, "message": str(exc)}
        self._put(attrs, semconv.ERROR_BODY, body)
        return attrs

    # --- streams: the response is put together from its events -----------------------------

    def event(self, event: Any) -> None:
        """One stream event (called only for ``full`` captures)."""
        kind = getattr(event, "type", None)
        index = getattr(event, "index", None)
        if not isinstance(index, int):
            return
        if kind == "content_block_start":
            block = _plain(getattr(event, "content_block", None))
            if isinstance(block, Mapping):
                self._blocks[index] = {**block, "_json": ""}
        elif kind == "content_block_delta":
            block = self._blocks.setdefault(index, {"type": "text", "text": "", "_json": ""})
            delta: Any = getattr(event, "delta", None)  # each branch reads its delta type's field
            dtype = getattr(delta, "type", None)
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + delta.text
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.thinking
            elif dtype == "input_json_delta":
                block["_json"] += delta.partial_json

    def stream_output_attributes(self, stop_reason: Any) -> dict[str, Any]:
        """``gen_ai.output.messages`` from the blocks the stream delivered."""
        content = []
        for _, block in sorted(self._blocks.items()):
            block = dict(block)
            partial = block.pop("_json", "")
            if partial:
                try:
                    block["input"] = json.loads(partial)
                except ValueError:
                    block["input"] = partial
            content.append(block)
        message = {"role": "assistant", "content": content, "stop_reason": stop_reason}
        return self.output_attributes(message)
