"""Delivery: POST alert messages to a Slack incoming webhook and/or a generic JSON webhook.

Destinations come only from the environment (``$CLAUDITOR_SLACK_WEBHOOK_URL``,
``$CLAUDITOR_WEBHOOK_URL``); :func:`sinks_from_env` builds one :class:`WebhookSink` per variable
set. The URL is a secret (whoever holds a Slack webhook URL can post to the channel): it is
never printed, logged, stored or put into an exception message. Each sink's URL is made a known
secret of :mod:`clauditor.redact`, so the one scrubber redacts it in any spelling (any case,
with or without scheme, or just 8+ characters of its secret path, as a gateway's
``404 Cannot POST /services/...`` quotes it) wherever clauditor stores or shows text: answers
quoted in errors, ``alerts.last_error``, the messages, and the logs (httpx logs every request
URL at INFO level; a filter scrubs that logger's and ``clauditor.alerts``' records).

Each POST is retried on connection errors, timeouts, HTTP 429 and 5xx, with exponential backoff;
a ``Retry-After`` header (seconds or an HTTP date) on 429 or 5xx replaces the backoff delay.
Other 4xx answers (Slack's ``invalid_payload``, ``no_service``) are not retried: they will not
get better. When every attempt fails the sink raises :class:`~clauditor.errors.DeliveryError`;
:mod:`clauditor.alerts.evaluate` records that and retries on the next run. The ``sleep``
and ``now`` callables are injectable so that tests do not wait.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from clauditor.alerts.message import AlertMessage
from clauditor.alerts.slack import slack_payload, webhook_payload
from clauditor.errors import DeliveryError
from clauditor.redact import REDACTED, ScrubLogRecords, add_known_secret_url, clip
from clauditor.semconv import ENV_SLACK_WEBHOOK_URL, ENV_WEBHOOK_URL

__all__ = [
    "RetryPolicy",
    "Sink",
    "WebhookSink",
    "parse_retry_after",
    "sinks_from_env",
]

log = logging.getLogger("clauditor.alerts")


class Sink(Protocol):
    """Where messages go. ``send`` returns on success and raises DeliveryError otherwise."""

    name: str

    def send(self, message: AlertMessage) -> None:
        """Deliver ``message`` or raise :class:`DeliveryError` (without the secret URL)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one run tries: attempts, backoff, the longest Retry-After it will wait out,
    and the per-request timeout (seconds). A longer Retry-After ends this run's attempts: the
    message stays failed and the next run retries it."""

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    timeout: float = 10.0


# --- keeping the URLs out of logs --------------------------------------------------------------

# httpx logs request URLs, and the ``clauditor.alerts`` records quote webhook answers: both are
# scrubbed (with the configured URLs known to the scrubber) before any handler sees them.
_FILTER = ScrubLogRecords()
logging.getLogger("httpx").addFilter(_FILTER)
log.addFilter(_FILTER)


def _register_secret(url: str) -> None:
    add_known_secret_url(url)
    with contextlib.suppress(httpx.InvalidURL):
        add_known_secret_url(str(httpx.URL(url)))  # the spelling httpx prints, normalized


# --- Retry-After ------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    None when the header is absent or unreadable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


# --- the sink ----------------------------------------------------------------------------------


class WebhookSink:
    """POSTs each message as JSON to one webhook URL, with retries (see the module docstring).

    ``kind`` is ``slack`` (Block Kit payload) or ``webhook`` (the generic document of
    :func:`clauditor.alerts.slack.webhook_payload`). ``sleep`` and ``now`` are injectable for
    tests; ``transport`` lets tests swap the network for an in-process httpx transport.
    """

    def __init__(
        self,
        kind: str,
        url: str,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if kind not in ("slack", "webhook"):
            raise ValueError(f"kind must be 'slack' or 'webhook', got {kind!r}")
        if not url.startswith(("http://", "https://")):
            # Say which variable is wrong, never what it holds.
            raise DeliveryError(f"the {kind} webhook URL must start with https:// (or http://)")
        self.name = kind
        self._url = url
        self._render: Callable[[AlertMessage], dict[str, Any]] = (
            slack_payload if kind == "slack" else webhook_payload
        )
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._transport = transport
        _register_secret(url)

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r}, url={REDACTED!r})"

    def send(self, message: AlertMessage) -> None:
        """POST ``message``; raises :class:`DeliveryError` when every attempt failed."""
        payload = self._render(message)
        policy = self.policy
        last = "no attempt made"
        with httpx.Client(timeout=policy.timeout, transport=self._transport) as client:
            for attempt in range(1, policy.max_attempts + 1):
                wait: float | None = None
                try:
                    response = client.post(self._url, json=payload)
                except httpx.TimeoutException:
                    last = f"{self.name} webhook timed out after {policy.timeout:g}s"
                except httpx.HTTPError as exc:
                    # The exception text may quote the URL: keep only its class name.
                    last = f"{self.name} webhook request failed ({type(exc).__name__})"
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        log.info(
                            "alert %s %s/%s delivered to %s (attempt %d)",
                            message.transition,
                            message.rule,
                            message.key,
                            self.name,
                            attempt,
                        )
                        return
                    # Scrubbed whole, then cut: a gateway may echo the secret path back.
                    body = clip(response.text, 200).strip()
                    last = f"{self.name} webhook answered HTTP {status}" + (
                        f": {body}" if body else ""
                    )
                    if status != 429 and status < 500:
                        raise DeliveryError(last)  # a 4xx will not get better by retrying
                    wait = parse_retry_after(response.headers.get("retry-after"), self._now())
                    if wait is not None and wait > policy.max_retry_after:
                        raise DeliveryError(
                            f"{last}; asked to retry after {wait:.0f}s, left for the next run"
                        )
                if attempt == policy.max_attempts:
                    break
                if wait is None:
                    wait = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
                log.warning("%s; retrying in %.1fs", last, wait)
                self._sleep(wait)
        raise DeliveryError(f"{last} (after {policy.max_attempts} attempts)")


def sinks_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[WebhookSink]:
    """One sink per destination configured in the environment (possibly none).

    ``$CLAUDITOR_SLACK_WEBHOOK_URL`` gives a Slack sink, ``$CLAUDITOR_WEBHOOK_URL`` a generic
    JSON one; empty variables are ignored.
    """
    env = os.environ if environ is None else environ
    sinks = []
    for kind, var in (("slack", ENV_SLACK_WEBHOOK_URL), ("webhook", ENV_WEBHOOK_URL)):
        url = (env.get(var) or "").strip()
        if url:
            try:
                sinks.append(WebhookSink(kind, url, policy=policy, sleep=sleep))
            except DeliveryError as exc:
                raise DeliveryError(f"${var}: {exc}") from None
    return sinks
