"""Keep secrets out of everything clauditor writes: the database, logs, output and alerts.

One scrubber, :func:`scrub`, applied at every boundary where outside text is stored or shown.
Its rules:

* an attribute whose key names a secret (``authorization``, ``x-api-key``, ``*api_key*``, ...)
  is dropped, value and all; text that is a JSON object or array naming such a key is parsed
  and cleaned the same way (JSON-looking text that names one but does not parse has everything
  from the first secret name on withheld: its values cannot be located in broken text);
* inside any string, Anthropic API keys (``sk-ant-...``), bearer tokens and Slack webhook URLs
  are replaced by a fixed marker;
* secrets the process knows (the configured webhook URLs, :func:`add_known_secret_url`) are
  redacted in every spelling: the whole URL in any letter case, with or without its scheme,
  and any run of 8 or more characters of its secret part (see below), wherever it appears.

Order matters: a secret cut in half is no longer recognisable, so text is scrubbed BEFORE it is
cut, never after. :func:`clip` (scrub, then cut) and :func:`safe_payload` (a quarantine payload
from anything) are the only ways clauditor shortens outside text before storing or showing it.

The secret part of a known URL is its path after the first segment (``/services`` on Slack,
``/api`` elsewhere: the first segment names the service, and treating common words as secret
would blank them in every message) plus the query string; a path of one segment is secret
whole. Text is matched case-insensitively (ASCII), so a gateway echoing the path upper-cased
is caught; up to 7 characters of a secret may stay visible where text shows only that much.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

from clauditor.semconv import SECRET_KEY_MARKERS

__all__ = [
    "REDACTED",
    "ScrubLogRecords",
    "add_known_secret_url",
    "clip",
    "is_secret_key",
    "safe_payload",
    "scrub",
    "scrub_attributes",
    "scrub_value",
]

REDACTED = "[REDACTED]"
WITHHELD = "[REDACTED: rest withheld]"
RUN = 8  # a shared run of this many characters with a known secret is redacted

_SECRET_VALUE = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]+"  # Anthropic API and admin keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"  # bearer tokens in header dumps
    r"|https://hooks\.slack\.com/[^\s\"'<>]+"  # Slack incoming webhooks
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def is_secret_key(key: str) -> bool:
    """Whether an attribute or header named ``key`` holds a secret."""
    lowered = key.lower()
    return any(marker in lowered for marker in SECRET_KEY_MARKERS)


# --- known secrets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _KnownUrl:
    whole: str  # the URL from its host on, lower-cased (matched in any case)
    runs: frozenset[str]  # every RUN-character window of its secret part, lower-cased


_known: tuple[_KnownUrl, ...] = ()
_known_lock = threading.Lock()


def add_known_secret_url(url: str) -> None:
    """Treat ``url`` (a webhook URL, say) as a secret from now on, in this process: every
    :func:`scrub` redacts it in every spelling (see the module docstring)."""
    global _known
    parts = urllib.parse.urlsplit(url.strip())
    host = parts.netloc.rsplit("@", 1)[-1]
    segments = parts.path.split("/")
    # "/services/T/B/x".split("/") == ["", "services", "T", "B", "x"]
    secret = "/".join(segments[2:]) if len(segments) > 2 else parts.path.strip("/")
    if parts.query:
        secret += "?" + parts.query
    if not host and not secret:
        return
    rest = parts.path + ("?" + parts.query if parts.query else "")
    # The scheme is no secret: the URL from its host on is redacted, in any case.
    whole = (host + rest).translate(_ASCII_LOWER)
    lowered = secret.translate(_ASCII_LOWER)
    runs = frozenset(lowered[i : i + RUN] for i in range(len(lowered) - RUN + 1))
    entry = _KnownUrl(whole, runs)
    with _known_lock:
        if entry not in _known:
            _known = (*_known, entry)


def _scrub_known(text: str, known: tuple[_KnownUrl, ...]) -> str:
    if len(text) < RUN:
        return text
    lowered = text.translate(_ASCII_LOWER)  # same length as text: indexes line up
    spans: list[tuple[int, int]] = []
    for entry in known:
        at = lowered.find(entry.whole)
        while at >= 0:
            spans.append((at, at + len(entry.whole)))
            at = lowered.find(entry.whole, at + 1)
    if any(entry.runs for entry in known):
        runs = frozenset().union(*(entry.runs for entry in known))
        spans.extend((i, i + RUN) for i in _run_places(lowered, runs))
    if not spans:
        return text
    spans.sort()
    out, at = [], 0
    merged_start, merged_end = spans[0]
    for start, end in [*spans[1:], (len(text) + 1, len(text) + 1)]:
        if start <= merged_end:  # overlapping or touching: one redaction
            merged_end = max(merged_end, end)
            continue
        out += [text[at:merged_start], REDACTED]
        at = merged_end
        merged_start, merged_end = start, end
    out.append(text[at:])
    return "".join(out)


_LONG_TEXT = 65_536
_HASH_BASE = 1_000_003


def _run_places(lowered: str, runs: frozenset[str]) -> list[int]:
    """Every index of ``lowered`` where a RUN-character window is one of ``runs``."""
    last = len(lowered) - RUN + 1
    if len(lowered) < _LONG_TEXT:
        return [i for i in range(last) if lowered[i : i + RUN] in runs]
    # Long text (a multi-megabyte attribute): hash every window at once with numpy, then
    # compare the few windows whose hash matches. Imported here: instrumented apps never
    # register webhook URLs, so they never get this far.
    import numpy as np

    codes = np.frombuffer(lowered.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)

    def hashes(values: np.ndarray, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.uint64)
        for k in range(RUN):  # wraps around 2**64, the same way for text and runs
            out = out * np.uint64(_HASH_BASE) + values[k : k + count]
        return out

    def _row_hashes(columns: np.ndarray) -> np.ndarray:  # one hash per run (a column)
        out = np.zeros(columns.shape[1], dtype=np.uint64)
        for k in range(RUN):
            out = out * np.uint64(_HASH_BASE) + columns[k]
        return out

    table = np.array([[ord(c) for c in run] for run in runs], dtype=np.uint64).T
    wanted = np.sort(_row_hashes(table))
    found = hashes(codes, last)
    at = np.minimum(np.searchsorted(wanted, found), len(wanted) - 1)
    hits = np.flatnonzero(wanted[at] == found)
    return [int(i) for i in hits if lowered[i : i + RUN] in runs]


# --- the scrubber -----------------------------------------------------------------------------


def _withhold_from_secret_name(text: str) -> str:
    """``text`` up to the first secret-key name in it, the rest withheld."""
    lowered = text.lower()
    cut = min((i for m in SECRET_KEY_MARKERS if (i := lowered.find(m)) >= 0), default=-1)
    return text if cut < 0 else text[:cut] + WITHHELD


def scrub(text: str) -> str:
    """``text`` with every secret replaced by ``[REDACTED]`` (the rules of the module docstring).

    Text that is a JSON object or array naming a secret field (say, request options with
    ``extra_headers``) is parsed and cleaned like an attribute tree, then written back; when it
    does not parse (cut by the sender, say), everything from the first secret name on is
    withheld.
    """
    known = _known
    if known:
        text = _scrub_known(text, known)
    if "sk-ant-" in text or "hooks.slack" in text or "earer" in text:
        text = _SECRET_VALUE.sub(REDACTED, text)
    if text[:1] in ("{", "[") and is_secret_key(text):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return _withhold_from_secret_name(text)
        cleaned = scrub_value(parsed)
        if cleaned != parsed:
            return json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False)
    return text


def clip(text: str, limit: int) -> str:
    """``text`` scrubbed, then cut to at most ``limit`` characters (in that order: a cut must
    never split a secret past recognition)."""
    return scrub(text)[: max(0, limit)]


def scrub_value(value: Any) -> Any:
    """``value`` (a string, or lists and dicts nested to any depth) with secret-named keys
    dropped and secrets scrubbed from every string."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: scrub_value(v)
            for k, v in value.items()
            if not (isinstance(k, str) and is_secret_key(k))
        }
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def scrub_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``attributes`` without secret keys and with secrets scrubbed from string values."""
    return {k: scrub_value(v) for k, v in attributes.items() if not is_secret_key(k)}


# --- quarantine payloads ----------------------------------------------------------------------


def _payload_tree(value: Any, string_limit: int) -> Any:
    """``value`` with secret-named keys (plain or OTLP ``{"key": ...}`` pairs) dropped, secrets
    scrubbed from strings, and then each string cut to ``string_limit`` characters."""
    if isinstance(value, str):
        return clip(value, string_limit)
    if isinstance(value, dict):
        key = value.get("key")
        if isinstance(key, str) and is_secret_key(key):
            return None
        return {
            k: _payload_tree(v, string_limit)
            for k, v in value.items()
            if not (isinstance(k, str) and is_secret_key(k))
        }
    if isinstance(value, list | tuple):
        return [v for v in (_payload_tree(item, string_limit) for item in value) if v is not None]
    return value


def safe_payload(value: Any, limit: int) -> str:
    """A scrubbed text of at most ``limit`` characters of a rejected span or line, fit for the
    quarantine table.

    ``value`` is raw input (bytes or text, JSON or not), a parsed JSON value, or anything with
    an ``otlp_dict()`` method (a decoded span). Everything is scrubbed before anything is cut;
    each string inside a structure is cut to a tenth of ``limit`` so that the payload shows the
    whole shape. Raw text that is not JSON has everything from its first secret name on
    withheld (the values of secret fields cannot be located in broken text).
    """
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return _withhold_from_secret_name(scrub(value))[:limit]
    otlp_dict = getattr(value, "otlp_dict", None)
    if callable(otlp_dict):
        value = otlp_dict()
    try:
        text = json.dumps(
            _payload_tree(value, max(1, limit // 10)), separators=(",", ":"), default=str
        )
    except (ValueError, RecursionError):
        try:
            text = _withhold_from_secret_name(repr(value)[: limit * 4])
        except RecursionError:
            text = f"<{type(value).__name__} nested too deeply to show>"
    return clip(text, limit)


# --- logs -------------------------------------------------------------------------------------


class ScrubLogRecords(logging.Filter):
    """A logging filter that scrubs each record's message (arguments merged in) and exception
    text; add it to a logger whose records may quote outside text or known secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if scrub(str(exc)) != str(exc):
                # The traceback would quote the secret: keep the class name only.
                record.msg = f"{record.msg} ({type(exc).__name__}: {REDACTED})"
                record.args, record.exc_info, record.exc_text = None, None, None
        return True
