"""``clauditor ingest`` reads the Collector's protobuf files (``format: proto``) as it reads
JSON lines: same rows, same dedupe, bad messages quarantined as ``path:message N``."""

from __future__ import annotations

import struct
from pathlib import Path

from clauditor.ingest import ingest_paths

from .receiver_support import call_attributes, proto_request, proto_span, query, varint


def _fixed32(*messages: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def test_a_folder_of_protobuf_files_is_ingested_and_priced(tmp_path: Path) -> None:
    folder = tmp_path / "otel"
    folder.mkdir()
    first = proto_request(
        [proto_span(span_id=bytes.fromhex("00f067aa0ba90101")), proto_span()]
    ).SerializeToString()
    second = proto_request([proto_span()]).SerializeToString()
    (folder / "traces-1.pb").write_bytes(_fixed32(first, second))
    (folder / "traces-2.binpb").write_bytes(varint(len(first)) + first)  # same 2 spans again
    (folder / "notes.txt").write_text("not telemetry")  # not an ingest suffix: skipped

    db = tmp_path / "c.duckdb"
    summary = ingest_paths([folder], db)

    assert summary.files == 2
    assert summary.lines == 3  # messages
    assert summary.spans_read == 5
    assert summary.calls_written == 3
    assert summary.duplicates == 2
    rows = query(
        db,
        "SELECT input_tokens, output_tokens, feature, service, cost_usd FROM calls "
        "WHERE span_id = '00f067aa0ba90101'",
    )
    # claude-sonnet-4-5: $3 / MTok input, $15 / MTok output; no cache tokens, so the
    # inclusive 1000 input tokens are all uncached: 1000 * 3e-6 + 100 * 15e-6 = $0.0045.
    assert rows[0][:4] == (1000, 100, "search", "support-bot")
    assert abs(rows[0][4] - 0.0045) < 1e-12


def test_a_bad_message_and_a_bad_span_are_quarantined_with_their_message_number(
    tmp_path: Path,
) -> None:
    good = proto_request([proto_span()]).SerializeToString()
    bad_span = proto_request(
        [proto_span(call_attributes(gen_ai__usage__output_tokens=-5))]
    ).SerializeToString()
    path = tmp_path / "traces.pb"
    path.write_bytes(_fixed32(good, bad_span, b"\x0a\xff\xff") + _fixed32(good)[:-3])

    db = tmp_path / "c.duckdb"
    summary = ingest_paths([path], db)

    assert summary.calls_written == 1
    origins = [(r.origin, r.reason) for r in summary.rejections]
    assert origins[0] == (f"{path}:message 2", "gen_ai.usage.output_tokens is negative: -5")
    assert origins[1][0] == f"{path}:message 3"
    assert "not a valid OTLP protobuf" in origins[1][1]
    assert origins[2][0] == f"{path}:message 4"
    assert "file ends inside a message" in origins[2][1]
    assert summary.rejected == 3
    stored = query(db, "SELECT origin FROM quarantine ORDER BY origin")
    assert [r[0] for r in stored] == [f"{path}:message {n}" for n in (2, 3, 4)]
    assert query(db, "SELECT spans, rejected FROM ingested_files") == [(2, 3)]


def test_the_same_protobuf_file_twice_writes_nothing_new(tmp_path: Path) -> None:
    path = tmp_path / "t.pb"
    path.write_bytes(_fixed32(proto_request([proto_span(), proto_span()]).SerializeToString()))
    db = tmp_path / "c.duckdb"
    assert ingest_paths([path], db).calls_written == 2
    again = ingest_paths([path], db, engine="parallel")
    assert (again.calls_written, again.duplicates) == (0, 2)
