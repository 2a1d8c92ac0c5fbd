"""A small client for the two Admin API reports that make up Anthropic's bill.

It lives in ingest because, like the OTLP readers beside it, it brings records from outside into
the database (:mod:`clauditor.ingest.bill` stores what it fetches); analytics only read them.

What it follows (Anthropic's Admin API reference, read 2026-12):

* https://platform.claude.com/docs/en/api/admin/usage_report/retrieve_messages —
  ``GET /v1/organizations/usage_report/messages``: ``starting_at`` (required, RFC 3339),
  ``ending_at``, ``bucket_width`` (``1d`` | ``1h``; ``1m`` exists and is not used here),
  ``group_by[]``, ``limit`` (buckets per page: at most 31 for ``1d``, 168 for ``1h``), ``page``.
  Each bucket is ``{starting_at, ending_at, results: [...]}``; a result carries the grouped
  dimensions (``model``, ``api_key_id``, ``workspace_id``, ``service_tier``, ``context_window``,
  ``inference_geo``; null when not grouped) and ``uncached_input_tokens``,
  ``cache_read_input_tokens``, ``cache_creation.{ephemeral_5m_input_tokens,
  ephemeral_1h_input_tokens}``, ``output_tokens``, ``server_tool_use.web_search_requests``.
* https://platform.claude.com/docs/en/api/admin/cost_report/retrieve —
  ``GET /v1/organizations/cost_report``: ``1d`` buckets only, ``group_by[]`` of
  ``workspace_id`` and ``description``; each result has ``amount`` (a decimal string in the
  currency's lowest unit, cents for USD), ``currency``, and when grouped by description
  ``cost_type`` (``tokens``, ``web_search``, ``code_execution``, …), ``token_type``, ``model``,
  ``service_tier``, ``context_window``, ``inference_geo``.
* Both: headers ``x-api-key`` (an Admin key, ``sk-ant-admin…``) and ``anthropic-version:
  2023-06-01``; a page has ``data``, ``has_more`` and ``next_page``, passed back as ``page``.

The key is read from ``$ANTHROPIC_ADMIN_KEY`` and goes only into the ``x-api-key`` header: never
into a URL, an error message, a log line or the database. ``$ANTHROPIC_ADMIN_BASE_URL``
(default ``https://api.anthropic.com``) points it at a proxy or a test server.

Errors::

    ClauditorError
    └── AdminApiError        the API answered with an error, or could not be reached
        └── AdminKeyError    no key, or the key was rejected (401/403)

429 and 5xx answers (and failed connections) are retried up to ``max_attempts`` times, waiting
what ``retry-after`` says (at most 60 s) or else 1, 2, 4 … s.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from clauditor.errors import ClauditorError
from clauditor.semconv import ENV_ADMIN_BASE_URL, ENV_ADMIN_KEY

__all__ = [
    "COST_GROUPS",
    "DEFAULT_BASE_URL",
    "USAGE_GROUPS",
    "AdminApiError",
    "AdminClient",
    "AdminKeyError",
]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
USAGE_GROUPS = (
    "model",
    "api_key_id",
    "workspace_id",
    "service_tier",
    "context_window",
    "inference_geo",
)
COST_GROUPS = ("workspace_id", "description")
_PAGE_LIMIT = {"1d": 31, "1h": 168}
_RETRIED = {429, 500, 502, 503, 504, 529}
_MAX_RETRY_AFTER_S = 60.0


class AdminApiError(ClauditorError):
    """The Admin API answered with an error (``status``) or could not be reached (None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminKeyError(AdminApiError):
    """No Admin key is set, or the API rejected it (401 or 403)."""


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_text(response: httpx.Response) -> str:
    """The API's own ``error.message``, or the reason phrase (never the request's headers)."""
    try:
        body = response.json()
        message = body.get("error", {}).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else response.reason_phrase


class AdminClient:
    """Reads the usage and cost reports; use as a context manager (it holds a connection pool).

    ``key`` and ``base_url`` default to ``$ANTHROPIC_ADMIN_KEY`` and
    ``$ANTHROPIC_ADMIN_BASE_URL``. A missing key raises :class:`AdminKeyError` here, before any
    request.
    """

    def __init__(
        self,
        key: str | None = None,
        *,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        key = key if key is not None else os.environ.get(ENV_ADMIN_KEY, "")
        if not key.strip():
            raise AdminKeyError(
                f"set ${ENV_ADMIN_KEY} to an Admin API key (sk-ant-admin…, from the Console's "
                "Admin keys) to fetch the bill"
            )
        self.base_url = (base_url or os.environ.get(ENV_ADMIN_BASE_URL) or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.max_attempts = max(1, max_attempts)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-key": key.strip(), "anthropic-version": API_VERSION},
            timeout=timeout_s,
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def usage_buckets(
        self,
        starting_at: dt.datetime,
        ending_at: dt.datetime,
        *,
        bucket_width: str = "1d",
        group_by: Sequence[str] = USAGE_GROUPS,
    ) -> list[dict[str, Any]]:
        """Every bucket of the messages usage report in ``[starting_at, ending_at)``, all pages.

        ``group_by`` is passed as given: the API is the judge of what it groups by, and answers
        400 (:class:`AdminApiError` with its message) for a dimension it does not offer.
        """
        if bucket_width not in _PAGE_LIMIT:
            raise ValueError(
                f"bucket_width must be one of {sorted(_PAGE_LIMIT)}, not {bucket_width!r}"
            )
        params = [
            ("starting_at", _rfc3339(starting_at)),
            ("ending_at", _rfc3339(ending_at)),
            ("bucket_width", bucket_width),
            ("limit", str(_PAGE_LIMIT[bucket_width])),
            *(("group_by[]", g) for g in group_by),
        ]
        return list(self._pages(USAGE_PATH, params))

    def cost_buckets(
        self,
        starting_at: dt.datetime,
        ending_at: dt.datetime,
        *,
        group_by: Sequence[str] = COST_GROUPS,
    ) -> list[dict[str, Any]]:
        """Every daily bucket of the cost report in ``[starting_at, ending_at)``, all pages."""
        params = [
            ("starting_at", _rfc3339(starting_at)),
            ("ending_at", _rfc3339(ending_at)),
            ("bucket_width", "1d"),
            ("limit", "31"),
            *(("group_by[]", g) for g in group_by),
        ]
        return list(self._pages(COST_PATH, params))

    def _pages(self, path: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        page: str | None = None
        while True:
            body = self._get(path, params + ([("page", page)] if page else []))
            data = body.get("data")
            if not isinstance(data, list):
                raise AdminApiError(f"{path}: the answer has no data list")
            yield from data
            page = body.get("next_page")
            if not body.get("has_more") or not page:
                return

    def _get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        delay = 1.0
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = self._http.get(path, params=tuple(params))
            except httpx.TransportError as exc:
                if last:
                    raise AdminApiError(
                        f"cannot reach the Admin API at {self.base_url}: {type(exc).__name__}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if response.status_code in _RETRIED and not last:
                time.sleep(_retry_after(response, delay))
                delay = min(delay * 2, 30.0)
                continue
            if response.status_code in (401, 403):
                raise AdminKeyError(
                    f"the Admin API rejected the key in ${ENV_ADMIN_KEY} "
                    f"({response.status_code} {_error_text(response)}): it must be an Admin key "
                    "(sk-ant-admin…) of the organization",
                    response.status_code,
                )
            if response.status_code >= 400:
                raise AdminApiError(
                    f"{path} answered {response.status_code}"
                    + (" after retries" if response.status_code in _RETRIED else "")
                    + f": {_error_text(response)}",
                    response.status_code,
                )
            try:
                body = response.json()
            except ValueError:
                raise AdminApiError(f"{path} answered something that is not JSON") from None
            if not isinstance(body, dict):
                raise AdminApiError(f"{path} answered JSON that is not an object")
            return body
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(response: httpx.Response, fallback: float) -> float:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else fallback
    except ValueError:
        seconds = fallback
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)
