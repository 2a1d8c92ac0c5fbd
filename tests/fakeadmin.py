"""A local stand-in for Anthropic's Admin API usage and cost reports, on 127.0.0.1.

It speaks the documented shapes of ``GET /v1/organizations/usage_report/messages`` and
``GET /v1/organizations/cost_report``: daily buckets of ``[starting_at, ending_at)``, results
aggregated over the ``group_by[]`` dimensions asked (the others null), ``limit`` buckets a page
and ``next_page`` tokens while ``has_more``. It refuses what the real API refuses: a wrong or
missing ``x-api-key`` (401), no ``anthropic-version``, a ``group_by`` the endpoint does not
offer, a bad ``bucket_width`` or ``limit``, no ``starting_at`` (400).

Tests put the bill in ``server.usage`` (rows with ``day`` and the usage report's fields, the
nested ones flat: ``cache_creation_5m``, ``cache_creation_1h``, ``web_search_requests``) and
``server.costs`` (rows with ``day``, ``amount_cents`` and the cost report's fields), script
failures in ``server.script`` (``(status, headers)`` answered one per request before the real
answer) and read every request back from ``server.requests``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ADMIN_KEY = "sk-ant-test-admin-fake-1"
USAGE_GROUPS = {
    "account_id",
    "api_key_id",
    "context_window",
    "inference_geo",
    "model",
    "service_account_id",
    "service_tier",
    "speed",
    "workspace_id",
}
COST_GROUPS = {"workspace_id", "description"}
USAGE_DIMENSIONS = (
    "model",
    "api_key_id",
    "workspace_id",
    "service_tier",
    "context_window",
    "inference_geo",
)
COST_DESCRIBED = (
    "description",
    "cost_type",
    "token_type",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
)
USAGE_COUNTS = (
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m",
    "cache_creation_1h",
    "output_tokens",
    "web_search_requests",
)


@dataclass
class Request:
    """One request as the server received it."""

    path: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]


@dataclass
class FakeAdmin:
    """The server's state (see the module docstring)."""

    url: str = ""
    usage: list[dict[str, Any]] = field(default_factory=list)
    costs: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def usage_row(day: dt.date, key: str, model: str, **counts: int) -> dict[str, Any]:
    """One usage bucket of the fake bill: ``day``, ``model``, ``api_key_id`` and the token
    ``counts``; the other dimensions at the values a default workspace reports."""
    return {
        "day": day,
        "model": model,
        "api_key_id": key,
        "workspace_id": "wrkspc_default",
        "service_tier": "standard",
        "context_window": "0-200k",
        "inference_geo": "not_available",
        **counts,
    }


def _day(text: str) -> dt.date:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).date()


def _stamp(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _usage_results(rows: list[dict[str, Any]], groups: list[str]) -> list[dict[str, Any]]:
    sums: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in rows:
        key = tuple(row.get(d) if d in groups else None for d in USAGE_DIMENSIONS)
        acc = sums.setdefault(key, dict.fromkeys(USAGE_COUNTS, 0))
        for c in USAGE_COUNTS:
            acc[c] += int(row.get(c, 0))
    return [
        {
            **dict(zip(USAGE_DIMENSIONS, key, strict=True)),
            "account_id": None,
            "service_account_id": None,
            "uncached_input_tokens": acc["uncached_input_tokens"],
            "cache_read_input_tokens": acc["cache_read_input_tokens"],
            "cache_creation": {
                "ephemeral_5m_input_tokens": acc["cache_creation_5m"],
                "ephemeral_1h_input_tokens": acc["cache_creation_1h"],
            },
            "output_tokens": acc["output_tokens"],
            "server_tool_use": {"web_search_requests": acc["web_search_requests"]},
        }
        for key, acc in sums.items()
    ]


def _cost_results(rows: list[dict[str, Any]], groups: list[str]) -> list[dict[str, Any]]:
    sums: dict[tuple[Any, ...], Decimal] = {}
    described = "description" in groups
    for row in rows:
        key = (
            row.get("workspace_id") if "workspace_id" in groups else None,
            *(row.get(f) if described else None for f in COST_DESCRIBED),
        )
        sums[key] = sums.get(key, Decimal(0)) + Decimal(str(row["amount_cents"]))
    return [
        {
            "currency": "USD",
            "amount": str(amount),
            "workspace_id": key[0],
            **dict(zip(COST_DESCRIBED, key[1:], strict=True)),
        }
        for key, amount in sums.items()
    ]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, kind: str, message: str) -> None:
        self._answer(status, {"type": "error", "error": {"type": kind, "message": message}})

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        parts = urlsplit(self.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        with state.lock:
            state.requests.append(
                Request(
                    parts.path, self.path, query, {k.lower(): v for k, v in self.headers.items()}
                )
            )
            scripted = state.script.pop(0) if state.script else None
        if scripted is not None:
            status, headers = scripted
            self._answer(status, {"type": "error", "error": {"type": "scripted"}}, headers)
            return
        if self.headers.get("x-api-key") != ADMIN_KEY:
            self._error(401, "authentication_error", "invalid x-api-key")
            return
        if not self.headers.get("anthropic-version"):
            self._error(400, "invalid_request_error", "anthropic-version: header is required")
            return
        if parts.path == "/v1/organizations/usage_report/messages":
            self._report(query, USAGE_GROUPS, ("1d", "1h", "1m"), state.usage, _usage_results)
        elif parts.path == "/v1/organizations/cost_report":
            self._report(query, COST_GROUPS, ("1d",), state.costs, _cost_results)
        else:
            self._error(404, "not_found_error", f"no route {parts.path}")

    def _report(
        self,
        query: list[tuple[str, str]],
        allowed: set[str],
        widths: tuple[str, ...],
        rows: list[dict[str, Any]],
        results: Any,
    ) -> None:
        params = dict(query)
        groups = [v for k, v in query if k == "group_by[]"]
        bad = [g for g in groups if g not in allowed]
        if bad:
            self._error(400, "invalid_request_error", f"group_by: invalid value(s) {bad}")
            return
        width = params.get("bucket_width", "1d")
        if width not in widths:
            self._error(400, "invalid_request_error", f"bucket_width: {width!r} not supported")
            return
        if width != "1d":
            self._error(400, "invalid_request_error", "this fake serves 1d buckets only")
            return
        limit = int(params.get("limit", "7"))
        if not 1 <= limit <= 31:
            self._error(400, "invalid_request_error", "limit: must be between 1 and 31")
            return
        if "starting_at" not in params:
            self._error(400, "invalid_request_error", "starting_at: field required")
            return
        first = _day(params["starting_at"])
        if "page" in params:
            first = dt.date.fromisoformat(base64.b64decode(params["page"]).decode())
        end = (
            _day(params["ending_at"]) if "ending_at" in params else first + dt.timedelta(days=limit)
        )
        days: list[dt.date] = []
        day = first
        while day < end and len(days) < limit:
            days.append(day)
            day += dt.timedelta(days=1)
        data = [
            {
                "starting_at": _stamp(d),
                "ending_at": _stamp(d + dt.timedelta(days=1)),
                "results": results([r for r in rows if r["day"] == d], groups),
            }
            for d in days
        ]
        more = day < end
        self._answer(
            200,
            {
                "data": data,
                "has_more": more,
                "next_page": base64.b64encode(day.isoformat().encode()).decode() if more else None,
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeAdmin


@contextlib.contextmanager
def fake_admin() -> Iterator[FakeAdmin]:
    """Run the fake Admin API on a free port of 127.0.0.1 for the duration of the block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FakeAdmin(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
