"""Keep secrets out of everything clauditor writes: the database, logs and reports.

Two rules, applied at every boundary where outside data is stored or shown:

* an attribute whose key names a secret (``authorization``, ``x-api-key``, ``*api_key*``, ...)
  is dropped, value and all;
* inside any string value, Anthropic API keys (``sk-ant-...``), bearer tokens and Slack webhook
  URLs are replaced by a fixed marker.
"""

from __future__ import annotations

import re
from typing import Any

from clauditor.semconv import SECRET_KEY_MARKERS

__all__ = ["REDACTED", "is_secret_key", "scrub", "scrub_attributes"]

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
    """``text`` with every API key, bearer token and webhook URL replaced by ``[REDACTED]``."""
    if "sk-ant-" not in text and "hooks.slack" not in text and "earer" not in text:
        return text  # the common case, without running the regex
    return _SECRET_VALUE.sub(REDACTED, text)


def scrub_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``attributes`` without secret keys and with secrets scrubbed from string values."""
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        if is_secret_key(key):
            continue
        if isinstance(value, str):
            value = scrub(value)
        elif isinstance(value, list):
            value = [scrub(v) if isinstance(v, str) else v for v in value]
        clean[key] = value
    return clean
