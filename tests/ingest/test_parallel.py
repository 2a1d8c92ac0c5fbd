"""The parallel engine (worker processes) stores exactly what the in-process engine stores.

Each test ingests the same input with ``engine="python"`` and ``engine="parallel"`` into two
real DuckDB files and compares rows, summaries (rejection order included), quarantine and
ingested files, with chunks small enough that every input spans many of them.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import pytest

from clauditor.config import Config
from clauditor.ingest import ingest_paths, parallel
from clauditor.ingest.lines import load_line
from clauditor.simulate import simulate

from .otlp_fixtures import SDK_CACHED_CALL, line, span
from .test_columnar import _hostile_lines, assert_same
from .test_files import clauditor_call, write_mixed_file


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few lines per chunk: chunk edges fall between every kind of line, and batches
    # (batch_size below) close in the middle of chunks.
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 3000)


def test_simulator_output(tmp_path: Path) -> None:
    src = tmp_path / "sim.jsonl"
    simulate(src, days=1, seed=5)
    summary = assert_same([src], tmp_path, engine="parallel", batch_size=777)
    assert summary.calls_written > 1000


def test_gzip_and_feature_keys(tmp_path: Path) -> None:
    simulate(tmp_path / "plain.jsonl", days=1, seed=9)
    src = tmp_path / "sim.jsonl.gz"
    src.write_bytes(gzip.compress((tmp_path / "plain.jsonl").read_bytes()))
    config = Config(feature_attributes=["clauditor.user_id", "clauditor.feature"])
    assert_same([src], tmp_path, engine="parallel", config=config)


@pytest.mark.parametrize("batch_size", [1, 2, 50_000])
def test_the_file_ingest_fixtures(tmp_path: Path, batch_size: int) -> None:
    mixed = tmp_path / "mixed.jsonl"
    write_mixed_file(mixed)
    assert_same([mixed], tmp_path, engine="parallel", batch_size=batch_size)


def test_hostile_lines_in_tiny_batches(tmp_path: Path) -> None:
    src = tmp_path / "hostile.jsonl"
    src.write_text("\n".join(_hostile_lines() * 3) + "\n")
    summary = assert_same([src], tmp_path, engine="parallel", batch_size=3)
    assert summary.rejected > 15


def test_a_folder_with_a_truncated_gzip_a_protobuf_file_and_a_bad_one(tmp_path: Path) -> None:
    from .receiver_support import proto_request, proto_span

    folder = tmp_path / "in"
    folder.mkdir()
    data = gzip.compress((line(clauditor_call("00f067aa0ba902b1")) * 400).encode())
    (folder / "a-cut.jsonl.gz").write_bytes(data[: len(data) - 12])
    message = proto_request([proto_span() for _ in range(3)]).SerializeToString()
    (folder / "b-traces.pb").write_bytes(struct.pack(">I", len(message)) + message)
    write_mixed_file(folder / "c-mixed.jsonl")
    (folder / "d-empty.json").write_text("\n\n")
    summary = assert_same([folder], tmp_path, engine="parallel", batch_size=5)
    assert summary.files == 4
    assert any("cannot read further" in r.reason for r in summary.rejections)


def test_auto_uses_workers_only_for_big_inputs(tmp_path: Path) -> None:
    # Small input: "auto" stays in-process, and gives what "parallel" gives.
    src = tmp_path / "mixed.jsonl"
    write_mixed_file(src)
    assert_same([src], tmp_path, engine="auto")


def test_big_integers_nan_and_a_bom_parse_as_the_standard_library_parses_them() -> None:
    cases = [
        b'{"a":18446744073709551616}',
        b'{"a":-9223372036854775809}',
        b'{"a":123456789012345678901234567890}',
        b'{"a":NaN,"b":-Infinity}',
        b'\xef\xbb\xbf{"a":1}',
        b'{"a":"\\ud800"}',
        b'{"a":1.5,"b":"1790812859669255084","a":2}',
    ]
    for text in cases:
        got, want = load_line(text), json.loads(text)
        assert repr(got) == repr(want), text
    for bad in (b"{", b'{"a":1}x', b"\xff", b'{"a":"\x01"}'):
        with pytest.raises(ValueError) as ours:
            load_line(bad)
        with pytest.raises(ValueError) as theirs:
            json.loads(bad)
        assert str(ours.value) == str(theirs.value)


def test_a_span_with_a_huge_integer_is_read_exactly(tmp_path: Path) -> None:
    big = span("00f067aa0ba90301", SDK_CACHED_CALL)
    big["attributes"].append({"key": "x.big", "value": {"intValue": 2**70}})
    big["attributes"].append({"key": "x.neg", "value": {"doubleValue": -(2**65)}})
    src = tmp_path / "big.jsonl"
    src.write_text(line(big) * 2)
    assert_same([src], tmp_path, engine="parallel")
    rows = ingest_paths([src], tmp_path / "check.duckdb", engine="parallel")
    assert rows.calls_written == 1
