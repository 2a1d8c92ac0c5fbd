"""Payloads: Slack Block Kit for incoming webhooks, and a generic JSON document for the rest.

The Slack payload is a header (the title), a section with the summary, the key numbers as
section fields, what to look at next, and a context line naming the rule and incident, plus the
top-level ``text`` that notifications and old clients show. Slack rejects payloads past its
limits, so every piece is cut to fit (:data:`LIMITS`): a header of at most 150 characters,
section text of at most 3000, at most 10 fields of at most 2000 characters each per section,
at most 50 blocks. Text that came from telemetry (feature names, models) is escaped for mrkdwn,
so a feature named ``<!channel>`` cannot ping anybody. Every text is scrubbed
(:func:`clauditor.redact.scrub`) before it is cut.
"""

from __future__ import annotations

from typing import Any

from clauditor.alerts.message import AlertMessage, render_text
from clauditor.redact import scrub

__all__ = ["LIMITS", "mrkdwn_escape", "slack_payload", "webhook_payload"]

LIMITS = {
    "header_text": 150,
    "section_text": 3000,
    "fields_per_section": 10,
    "field_text": 2000,
    "blocks": 50,
    "context_elements": 10,
    "fallback_text": 3000,  # Slack allows far more; a notification never shows more than this
}
_EMOJI = {
    "start": ":rotating_light:",
    "escalate": ":fire:",
    "resolve": ":white_check_mark:",
    "digest": ":bar_chart:",
}
_ELLIPSIS = "…"


def mrkdwn_escape(text: str) -> str:
    """``text`` safe inside Slack mrkdwn: ``&``, ``<`` and ``>`` become entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """``text`` scrubbed, then shortened to ``limit`` characters, marked with an ellipsis when
    cut (scrubbed first: a secret cut in half is no longer recognised)."""
    text = scrub(text)
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def _cut_escaped(text: str, limit: int) -> str:
    """Scrub and escape, then cut without splitting an entity such as ``&amp;`` in half."""
    escaped = mrkdwn_escape(scrub(text))
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + _ELLIPSIS


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    """The Slack incoming-webhook payload (Block Kit plus ``text`` fallback) for ``message``."""
    header = f"{message.title}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(header, LIMITS["header_text"]),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": _mrkdwn(
                _cut(
                    f"{_EMOJI[message.transition]} " + mrkdwn_escape(message.summary),
                    LIMITS["section_text"],
                )
            ),
        },
    ]
    fields = [
        _mrkdwn(
            _cut(f"*{mrkdwn_escape(label)}*\n", 200)
            + _cut_escaped(value, LIMITS["field_text"] - 210)
        )
        for label, value in message.fields
    ]
    per = LIMITS["fields_per_section"]
    for i in range(0, len(fields), per):
        blocks.append({"type": "section", "fields": fields[i : i + per]})
    if message.next_steps:
        steps = "\n".join(f"• {mrkdwn_escape(step)}" for step in message.next_steps)
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(_cut("*What to look at next*\n" + steps, LIMITS["section_text"])),
            }
        )
    context = (
        f"rule `{mrkdwn_escape(message.rule)}` · {mrkdwn_escape(message.key)} · "
        f"since {message.started_at:%Y-%m-%d %H:%M} UTC · "
        f"as of {message.as_of:%Y-%m-%d %H:%M} UTC · clauditor"
    )
    blocks.append({"type": "context", "elements": [_mrkdwn(_cut(context, 3000))]})
    if len(blocks) > LIMITS["blocks"]:
        # Keep the header, the summary and the context; drop field sections past the limit.
        blocks = blocks[: LIMITS["blocks"] - 1] + [blocks[-1]]
    return {
        "text": _cut(render_text(message), LIMITS["fallback_text"]),
        "blocks": blocks,
    }


def webhook_payload(message: AlertMessage) -> dict[str, Any]:
    """The generic JSON document posted to ``$CLAUDITOR_WEBHOOK_URL``.

    Keys: ``source`` (``clauditor``), ``schema_version`` (1), ``rule``, ``key``, ``incident``,
    ``transition`` (start | escalate | resolve), ``level``, ``severity``, ``title``,
    ``summary``, ``started_at``, ``as_of`` (ISO 8601 UTC), ``fields`` (label -> value),
    ``next_steps`` (list), ``text`` (the plain-text rendering); and ``data``, the message's
    machine-readable figures, when it has any (the daily digest's dollars, say).
    """
    return {
        "source": "clauditor",
        "schema_version": 1,
        "rule": message.rule,
        "key": message.key,
        "incident": message.incident,
        "transition": message.transition,
        "level": message.level,
        "severity": message.severity,
        "title": message.title,
        "summary": message.summary,
        "started_at": message.started_at.isoformat(),
        "as_of": message.as_of.isoformat(),
        "fields": dict(message.fields),
        "next_steps": list(message.next_steps),
        "text": render_text(message),
        **({"data": message.extra} if message.extra else {}),
    }
