"""Keep secrets out of everything clauditor writes: the database, logs and reports.

Two rules, applied at every boundary where outside data is stored or shown:

* an attribute whose key names a secret (``authorization``, ``x-api-key``, ``*api_key*``, ...)
  is dropped, value and all;
* inside any string value, Anthropic API keys (``sk-ant-...``), bearer tokens and Slack webhook
  URLs are replaced by a fixed marker.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clauditor.semconv import SECRET_KEY_MARKERS

__all__ = ["REDACTED", "is_secret_key", "scrub", "scrub_attributes", "scrub_value"]

REDACTED = "[REDACTED]"

_SECRET_VALUE = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]+"  # Anthropic API and admin keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"  # bearer tokens in header dumps
    r"|https://hooks\.slack\.com/[^\s\"'<>]+"  # Slack incoming webhooks
)


def is_secret_key(key: str) -> bool:
    """Whether an attribute or header named ``key`` holds a secret."""
    lowered = key.lower()
    return any(marker in lowered for marker in SECRET_KEY_MARKERS)


def scrub(text: str) -> str:
    """``text`` with every API key, bearer token and webhook URL replaced by ``[REDACTED]``.

    Text that is a JSON object or array naming a secret field (say, request options with
    ``extra_headers``) is parsed and cleaned like an attribute tree, then written back.
    """
    if "sk-ant-" in text or "hooks.slack" in text or "earer" in text:
        text = _SECRET_VALUE.sub(REDACTED, text)
    if text[:1] in ("{", "[") and is_secret_key(text):
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        cleaned = scrub_value(parsed)
        if cleaned != parsed:
            return json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False)
    return text


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
