"""`ingest_paths`: OTLP/JSON-lines files into a real DuckDB file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from clauditor.errors import IngestError
from clauditor.ingest import ingest_paths
from clauditor.store import load_calls, read_connection

from .otlp_fixtures import SDK_CACHED_CALL, line, span

GOOD_1 = "00f067aa0ba902b1"
GOOD_2 = "00f067aa0ba902b2"
GOOD_3 = "00f067aa0ba902b3"


def clauditor_call(span_id: str, **extra: object) -> dict[str, object]:
    return span(span_id, {**SDK_CACHED_CALL, "clauditor.feature": "search", **extra})


def write_mixed_file(path: Path) -> None:
    """Line 1: two good calls and an HTTP span. Line 2: not JSON. Line 3: a good call and a
    call whose token count is negative (carrying a secret, to check the quarantine scrubs it).
    Line 4: JSON, but not a trace request."""
    path.write_text(
        line(
            clauditor_call(GOOD_1),
            clauditor_call(GOOD_2),
            span("00f067aa0ba90200", {"http.request.method": "GET"}, name="GET /"),
        )
        + '{"resourceSpans": [ {"broken"\n'
        + "\n"
        + line(
            clauditor_call(GOOD_3),
            clauditor_call(
                "00f067aa0ba902b4",
                **{
                    "gen_ai.usage.output_tokens": -5,
                    "app.note": "sk-ant-test-leak123",
                    "http.request.header.authorization": "hunter2-secret",
                },
            ),
        )
        + '{"hello": "world"}\n'
    )


def quarantine(db: Path) -> list[tuple[str, str, str]]:
    with read_connection(db) as con:
        return con.execute(
            "SELECT origin, reason, payload FROM quarantine ORDER BY origin"
        ).fetchall()


def test_good_spans_stored_bad_ones_counted_and_quarantined(tmp_path: Path) -> None:
    src = tmp_path / "spans.jsonl"
    write_mixed_file(src)
    db = tmp_path / "c.duckdb"
    summary = ingest_paths([src], db)

    assert summary.files == 1
    assert summary.lines == 4  # the blank line is not counted
    assert summary.spans_read == 5
    assert summary.calls_written == 3
    assert summary.ignored == 1
    assert summary.rejected == 3  # the broken line, the negative count, the non-trace line
    assert summary.unpriced == 0
    origins = {(r.origin, r.reason.split(":")[0]) for r in summary.rejections}
    assert origins == {
        (f"{src}:2", "not valid JSON"),
        (f"{src}:4", "gen_ai.usage.output_tokens is negative"),
        (f"{src}:5", "not an OTLP ExportTraceServiceRequest"),
    }
    stored = load_calls(db, columns=["span_id", "feature", "input_tokens"]).sort("span_id")
    assert stored.rows() == [(sid, "search", 1000) for sid in (GOOD_1, GOOD_2, GOOD_3)]

    q = quarantine(db)
    assert [row[0] for row in q] == [f"{src}:2", f"{src}:4", f"{src}:5"]
    bad_span_payload = q[1][2]
    assert "00f067aa0ba902b4" in bad_span_payload
    assert "sk-ant" not in bad_span_payload and "hunter2" not in bad_span_payload
    assert all(len(payload) <= 2000 for _, _, payload in q)


def test_ingesting_twice_writes_nothing_new(tmp_path: Path) -> None:
    src = tmp_path / "spans.jsonl"
    write_mixed_file(src)
    db = tmp_path / "c.duckdb"
    ingest_paths([src], db)
    again = ingest_paths([src], db)
    assert again.calls_written == 0
    assert again.duplicates == 3
    assert again.rejected == 3  # still reported...
    assert len(quarantine(db)) == 3  # ...but not stored twice
    assert load_calls(db).height == 3


@pytest.mark.parametrize("engine", ["python", "parallel"])
def test_new_spans_after_resent_ones_are_all_written(tmp_path: Path, engine: str) -> None:
    """A second file that re-sends a stored span in its second batch: every new call is
    stored, the re-sent one counted as a duplicate, the bad line quarantined once."""
    db = tmp_path / "c.duckdb"
    first = tmp_path / "first.jsonl"
    write_mixed_file(first)
    ingest_paths([first], db, engine=engine)
    new = [f"00f067aa0ba903{i:02x}" for i in range(4)]
    second = tmp_path / "second.jsonl"
    second.write_text(
        line(clauditor_call(new[0]), clauditor_call(new[1]))
        + line(clauditor_call(GOOD_1), clauditor_call(new[2]))
        + "not json\n"
        + line(clauditor_call(new[3]))
    )
    summary = ingest_paths([second], db, engine=engine, batch_size=2)
    assert (summary.calls_written, summary.duplicates, summary.rejected) == (4, 1, 1)
    stored = load_calls(db, columns=["span_id"]).get_column("span_id").sort().to_list()
    assert stored == sorted([GOOD_1, GOOD_2, GOOD_3, *new])
    assert [row[0] for row in quarantine(db) if row[0].startswith(str(second))] == [f"{second}:3"]


def test_gzip_is_detected_by_content_and_folders_are_searched(tmp_path: Path) -> None:
    folder = tmp_path / "telemetry"
    (folder / "day2").mkdir(parents=True)
    (folder / "day1.jsonl.gz").write_bytes(gzip.compress(line(clauditor_call(GOOD_1)).encode()))
    # gzip content behind a plain name: recognised by its magic bytes.
    (folder / "day2" / "spans.json").write_bytes(
        gzip.compress(line(clauditor_call(GOOD_2)).encode())
    )
    (folder / "day2" / "more.jsonl").write_text(line(clauditor_call(GOOD_3)))
    (folder / "notes.txt").write_text("not telemetry")
    db = tmp_path / "c.duckdb"
    seen: list[tuple[int, int]] = []
    summary = ingest_paths([folder], db, progress=lambda done, total: seen.append((done, total)))
    assert (summary.files, summary.calls_written, summary.rejected) == (3, 3, 0)
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix != ".txt")
    assert seen and seen[-1] == (total, total)
    with read_connection(db) as con:
        assert con.execute("SELECT count(*) FROM ingested_files").fetchall() == [(3,)]


def test_small_batches_give_the_same_result(tmp_path: Path) -> None:
    src = tmp_path / "spans.jsonl"
    write_mixed_file(src)
    db = tmp_path / "c.duckdb"
    summary = ingest_paths([src], db, batch_size=1)
    assert (summary.calls_written, summary.rejected) == (3, 3)
    assert len(quarantine(db)) == 3


def test_stored_cost_matches_hand_computation(tmp_path: Path) -> None:
    src = tmp_path / "spans.jsonl"
    src.write_text(line(clauditor_call(GOOD_1)))
    db = tmp_path / "c.duckdb"
    ingest_paths([src], db)
    row = load_calls(db).row(0, named=True)
    # claude-sonnet-4-5: $3 input, $15 output per MTok; cache read 0.1x, 5m write 1.25x,
    # 1h write 2x input. Uncached input 1000, output 500, read 3000, writes 600 (5m) + 400 (1h):
    #   1000 * 3/1e6 = 0.003; 500 * 15/1e6 = 0.0075; 3000 * 0.30/1e6 = 0.0009;
    #   600 * 3.75/1e6 + 400 * 6/1e6 = 0.00225 + 0.0024 = 0.00465  -> total 0.01605
    assert row["cost_input_usd"] == pytest.approx(0.003)
    assert row["cost_output_usd"] == pytest.approx(0.0075)
    assert row["cost_cache_read_usd"] == pytest.approx(0.0009)
    assert row["cost_cache_write_usd"] == pytest.approx(0.00465)
    assert row["cost_usd"] == pytest.approx(0.01605)
    assert row["price_version"].startswith("claude-sonnet-4-5@")


def test_unknown_models_are_counted_as_unpriced(tmp_path: Path) -> None:
    src = tmp_path / "spans.jsonl"
    src.write_text(
        line(
            clauditor_call(GOOD_1, **{"gen_ai.response.model": "claude-mystery-9"}),
            clauditor_call(GOOD_2),
        )
    )
    db = tmp_path / "c.duckdb"
    assert ingest_paths([src], db).unpriced == 1
    assert ingest_paths([src], db).unpriced == 0  # nothing new was written
    assert load_calls(db, where="cost_usd IS NULL").height == 1


def test_a_missing_input_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(IngestError, match="nope.jsonl"):
        ingest_paths([missing], tmp_path / "c.duckdb")


def test_a_broken_gzip_header_is_an_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x00garbage-that-is-not-deflate")
    with pytest.raises(IngestError, match="bad.jsonl.gz"):
        ingest_paths([bad], tmp_path / "c.duckdb")


def test_a_truncated_gzip_keeps_what_came_before(tmp_path: Path) -> None:
    data = gzip.compress((line(clauditor_call(GOOD_1)) * 1 + line(clauditor_call(GOOD_2))).encode())
    src = tmp_path / "cut.jsonl.gz"
    src.write_bytes(data[: len(data) - 12])  # drop the trailer: the stream ends early
    summary = ingest_paths([src], tmp_path / "c.duckdb")
    assert summary.rejected == 1
    assert "cannot read further" in summary.rejections[0].reason


@pytest.mark.parametrize("engine", ["python", "parallel"])
def test_json_nested_too_deeply_is_one_rejected_line(tmp_path: Path, engine: str) -> None:
    # json's parser recurses: a line nested past its limit used to end the whole ingest with
    # a RecursionError traceback.
    deep = '{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    path = tmp_path / "deep.jsonl"
    path.write_text(line(clauditor_call(GOOD_1)) + deep + line(clauditor_call(GOOD_2)))
    summary = ingest_paths([path], tmp_path / "db.duckdb", engine=engine)
    assert [(r.origin, r.reason) for r in summary.rejections] == [
        (f"{path}:2", "not valid JSON: nested too deeply to read")
    ]
    assert sorted(load_calls(tmp_path / "db.duckdb")["span_id"]) == sorted([GOOD_1, GOOD_2])


def test_a_file_starting_with_an_array_line_is_read_as_json_lines(tmp_path: Path) -> None:
    # It used to be taken for protobuf (only "{" counted as JSON), every "message" rejected
    # as broken protobuf and the good line after it lost.
    path = tmp_path / "odd.jsonl"
    path.write_text("[1, 2]\n" + line(clauditor_call(GOOD_1)))
    summary = ingest_paths([path], tmp_path / "db.duckdb")
    assert [(r.origin, r.reason) for r in summary.rejections] == [
        (f"{path}:1", "not an OTLP ExportTraceServiceRequest: not a JSON object")
    ]
    assert load_calls(tmp_path / "db.duckdb")["span_id"].to_list() == [GOOD_1]


def test_a_byte_order_mark_does_not_make_json_lines_protobuf(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(clauditor_call(GOOD_1)).encode())
    summary = ingest_paths([path], tmp_path / "db.duckdb")
    assert summary.rejections == []
    assert load_calls(tmp_path / "db.duckdb")["span_id"].to_list() == [GOOD_1]
