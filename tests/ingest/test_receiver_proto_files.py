"""OTLP protobuf files as the Collector's file exporter writes them (``format: proto``):
length-prefixed ExportTraceServiceRequest messages, read span by span."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from clauditor.errors import IngestError
from clauditor.ingest.normalize import SpanRecord, SpanRejected
from clauditor.ingest.otlp_proto import is_proto_file, iter_proto_file_spans
from clauditor.ingest.writer import WriteQueue, prepare

from .receiver_support import json_request, json_span, proto_request, proto_span, query, varint


def _messages(count: int, spans: int) -> list[bytes]:
    return [
        proto_request([proto_span() for _ in range(spans)]).SerializeToString()
        for _ in range(count)
    ]


def _ids(messages: list[bytes]) -> set[str]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = set()
    for body in messages:
        request = ExportTraceServiceRequest.FromString(body)
        out |= {s.span_id.hex() for s in request.resource_spans[0].scope_spans[0].spans}
    return out


@pytest.mark.parametrize("framing", ["collector-fixed32", "varint-delimited"])
def test_every_span_of_a_length_prefixed_file(tmp_path: Path, framing: str) -> None:
    messages = _messages(3, 4)
    if framing == "collector-fixed32":
        data = b"".join(struct.pack(">I", len(m)) + m for m in messages)
    else:
        data = b"".join(varint(len(m)) + m for m in messages)
    path = tmp_path / "traces.pb"
    path.write_bytes(data)

    items = list(iter_proto_file_spans(path))

    assert is_proto_file(path)
    assert [n for n, _ in items] == [1] * 4 + [2] * 4 + [3] * 4
    assert all(isinstance(item, SpanRecord) for _, item in items)
    assert {item.span_id for _, item in items} == _ids(messages)


def test_truncated_file_keeps_whole_messages_and_rejects_the_cut_one(tmp_path: Path) -> None:
    messages = _messages(2, 3)
    data = b"".join(struct.pack(">I", len(m)) + m for m in messages)
    path = tmp_path / "cut.pb"
    path.write_bytes(data[:-10])  # the collector died mid-write

    items = list(iter_proto_file_spans(path))

    records = [item for _, item in items if isinstance(item, SpanRecord)]
    rejected = [(n, item) for n, item in items if isinstance(item, SpanRejected)]
    assert {r.span_id for r in records} == _ids(messages[:1])
    assert len(rejected) == 1 and rejected[0][0] == 2
    assert "file ends inside a message" in rejected[0][1].reason


def test_json_lines_and_gzip_are_not_taken_for_protobuf(tmp_path: Path) -> None:
    import gzip
    import json

    lines = tmp_path / "traces.jsonl"
    lines.write_text(json.dumps(json_request([json_span()])) + "\n")
    packed = tmp_path / "traces.jsonl.gz"
    packed.write_bytes(gzip.compress(lines.read_bytes()))
    assert not is_proto_file(lines)
    assert not is_proto_file(packed)


def test_zstd_file_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "traces.pb.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 32)
    with pytest.raises(IngestError, match="zstd"):
        list(iter_proto_file_spans(path))


def test_file_spans_written_through_the_writer_land_once(tmp_path: Path, db_path: Path) -> None:
    messages = _messages(2, 5)
    path = tmp_path / "traces.pb"
    path.write_bytes(b"".join(struct.pack(">I", len(m)) + m for m in messages))
    writer = WriteQueue(db_path).start()
    try:
        for _ in range(2):  # ingesting the same file twice stores each span once
            batch = prepare(
                (item for _, item in iter_proto_file_spans(path)), str(path), ["clauditor.feature"]
            )
            writer.submit(batch).result(30)
    finally:
        writer.close()
    rows = query(db_path, "SELECT span_id, cost_usd FROM calls")
    assert {r[0] for r in rows} == _ids(messages) and len(rows) == 10
    # 1000 input x $3/MTok + 100 output x $15/MTok = 0.003 + 0.0015
    assert all(r[1] == pytest.approx(0.0045) for r in rows)
