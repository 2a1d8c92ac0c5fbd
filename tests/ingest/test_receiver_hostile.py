"""The hostile corpus against one running receiver: every payload is refused or quarantined
with a clear reason and a count, the good spans of a mixed request are stored, and the server
keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from clauditor.ingest.serve import Receiver

from .hostile.corpus import PROTOBUF, Case, cases
from .receiver_support import proto_request, proto_span, query

CASES = cases()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, Path]]:
    db = tmp_path_factory.mktemp("hostile") / "clauditor.duckdb"
    with Receiver(db, http_port=0, grpc_port=None) as receiver:
        yield receiver, db


def _message(case: Case, response: httpx.Response) -> tuple[str, int]:
    """(message, rejected spans) from an answer in either encoding."""
    if case.content_type == PROTOBUF:
        if response.status_code == 200:
            partial = ExportTraceServiceResponse.FromString(response.content).partial_success
            return partial.error_message, partial.rejected_spans
        return Status.FromString(response.content).message, 0
    body = response.json()
    if response.status_code == 200:
        partial = body.get("partialSuccess", {})
        return partial.get("errorMessage", ""), int(partial.get("rejectedSpans", 0))
    return body["message"], 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_payload(case: Case, served: tuple[Receiver, Path]) -> None:
    receiver, db = served
    quarantined_before = query(db, "SELECT count(*) FROM quarantine")[0][0] if db.exists() else 0
    headers = {"Content-Type": case.content_type}
    if case.encoding:
        headers["Content-Encoding"] = case.encoding

    response = httpx.post(receiver.http_endpoint, content=case.body, headers=headers, timeout=60)

    assert response.status_code == case.status, response.content[:300]
    message, rejected = _message(case, response)
    assert case.reason in message
    assert rejected == case.rejected
    if case.good_ids:
        stored = query(
            db,
            "SELECT span_id FROM calls WHERE span_id IN (SELECT unnest(?))",
            [case.good_ids],
        )
        assert {row[0] for row in stored} == set(case.good_ids)
    if db.exists():
        quarantined = query(db, "SELECT count(*) FROM quarantine")[0][0] - quarantined_before
        assert quarantined == case.quarantined
    # The server is still up and still takes good spans.
    health = httpx.get(receiver.http_endpoint.replace("/v1/traces", "/healthz"))
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_quarantine_has_reasons_and_no_secrets(served: tuple[Receiver, Path]) -> None:
    receiver, db = served
    for case in CASES:  # this test must also pass when run alone
        headers = {
            "Content-Type": case.content_type,
            "Content-Encoding": case.encoding or "identity",
        }
        httpx.post(receiver.http_endpoint, content=case.body, headers=headers, timeout=60)
    rows = query(db, "SELECT origin, reason, payload FROM quarantine")
    assert rows and all(
        origin.startswith("otlp-http 127.0.0.1:") and reason for origin, reason, _ in rows
    )
    dump = json.dumps(rows)
    assert "SECRETSECRETSECRET" not in dump and "SECRETfake1" not in dump
    assert max(len(payload or "") for _, _, payload in rows) <= 2000
    # The 10 MB value was cut in the stored row, and the call kept its tokens and cost.
    attributes, cost = query(
        db,
        "SELECT attributes, cost_usd FROM calls WHERE attributes LIKE '%cut from 10,485,760%'",
    )[0]
    assert len(attributes) < 100_000
    assert cost == pytest.approx(1000 * 3 / 1e6 + 100 * 15 / 1e6)  # 1000 in x $3 + 100 out x $15
    good = proto_span()
    response = httpx.post(
        receiver.http_endpoint,
        content=proto_request([good]).SerializeToString(),
        headers={"Content-Type": PROTOBUF},
    )
    assert response.status_code == 200
