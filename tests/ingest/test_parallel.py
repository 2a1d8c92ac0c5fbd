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
from clauditor.ingest import files, ingest_paths, parallel
from clauditor.ingest.lines import build_frame, load_line, read_line
from clauditor.simulator import simulate
from clauditor.store import load_calls, read_connection

from .engine_parity import WEEKDAYS_END, assert_same, hostile_lines
from .hostile.corpus import JSON, cases
from .otlp_fixtures import SDK_CACHED_CALL, line, span
from .test_files import clauditor_call, write_mixed_file


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few lines per chunk: chunk edges fall between every kind of line, and batches
    # (batch_size below) close in the middle of chunks.
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 3000)


def test_simulator_output(tmp_path: Path) -> None:
    src = tmp_path / "sim.jsonl"
    simulate(src, days=1, seed=5, end=WEEKDAYS_END)
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
    src.write_text("\n".join(hostile_lines() * 3) + "\n")
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


def test_workers_read_their_own_ranges_and_number_lines_across_them(tmp_path: Path) -> None:
    # A plain file is cut into byte ranges that the workers read themselves: the line numbers
    # of rejections must still count from the top of the file, up to a last line that has no
    # line end and is broken.
    good = line(clauditor_call("00f067aa0ba902c1"))
    body = "".join(
        good.replace("00f067aa0ba902c1", f"00f067aa0b{i:06x}") if i % 7 else "not json\n"
        for i in range(1, 60)
    )
    src = tmp_path / "ranges.jsonl"
    src.write_text(body + "\n\n" + '{"resourceSpans": [')  # blank lines, then a cut-off line
    summary = assert_same([src], tmp_path, engine="parallel", batch_size=11)
    origins = [r.origin for r in summary.rejections]
    assert origins[:2] == [f"{src}:7", f"{src}:14"]
    assert origins[-1] == f"{src}:62"
    assert summary.calls_written == 59 - 8


def test_out_of_range_integers_are_rejected_or_kept_by_every_engine(tmp_path: Path) -> None:
    # Values no 64-bit column can hold: a span time is a rejection naming it; an informative
    # number (the HTTP status) is left NULL and kept in the attributes. No engine crashes.
    late = span("00f067aa0ba90311", SDK_CACHED_CALL)
    late["endTimeUnixNano"] = "1" + "0" * 25
    status = span("00f067aa0ba90312", SDK_CACHED_CALL)
    status["attributes"] = [
        a for a in status["attributes"] if a["key"] != "http.response.status_code"
    ] + [{"key": "http.response.status_code", "value": {"intValue": str(2**70)}}]
    src = tmp_path / "ranges.jsonl"
    src.write_text(line(late) + line(status))
    summary = assert_same([src], tmp_path, engine="parallel")
    assert [r.reason for r in summary.rejections] == [
        "span end time is out of range: 10000000000000000000000000"
    ]
    assert summary.calls_written == 1
    rows = load_calls(tmp_path / "python.duckdb")
    assert rows["http_status"].to_list() == [None]
    assert json.loads(rows["attributes"][0])["http.response.status_code"] == 2**70


def test_the_database_is_free_between_batches_and_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write connection is held across batches for at most WRITE_HOLD_S: with 0 it is given
    # up after every batch, with the same result; either way it is free once ingest returns.
    src = tmp_path / "mixed.jsonl"
    write_mixed_file(src)
    monkeypatch.setattr(files, "WRITE_HOLD_S", 0.0)
    assert_same([src], tmp_path / "every-batch", engine="parallel", batch_size=2)
    monkeypatch.setattr(files, "WRITE_HOLD_S", 3600.0)
    assert_same([src], tmp_path / "held", engine="parallel", batch_size=2)
    with read_connection(tmp_path / "held" / "parallel.duckdb") as con:
        assert con.execute("SELECT count(*) FROM calls").fetchall()[0][0] > 0


def test_worker_rows_travel_as_arrow_and_make_the_in_process_frame(tmp_path: Path) -> None:
    # Workers send their rows as an Arrow IPC stream; the frame the parent makes of it is the
    # one the in-process engine builds from the same rows, dtypes included.
    src = tmp_path / "mixed.jsonl"
    write_mixed_file(src)
    text = src.read_bytes()
    result = parallel.parse_chunk(str(src), 1, text, ("clauditor.feature",))
    assert isinstance(result.columns, bytes)
    sink = parallel._ChunkSink()
    for number, raw in enumerate(text.splitlines(keepends=True), 1):
        if not raw.isspace():
            read_line(str(src), number, raw, sink, ("clauditor.feature",))
    expected = build_frame(sink.rows)
    got = parallel.columns_frame(result.columns)
    assert got.schema == expected.schema
    assert got.equals(expected)
    assert got.height == 3  # the mixed file's three good calls


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc/*/stat."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if fields[1] == str(pid) and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.skipif(parallel.available_workers() < 2, reason="auto starts workers with 2+ CPUs")
def test_kill_9_of_ingest_takes_its_workers_with_it(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "big.jsonl"
    simulate(src, days=10, seed=5)
    assert src.stat().st_size >= files.PARALLEL_MIN_BYTES  # big enough for worker processes
    ingest = subprocess.Popen(
        [sys.executable, "-m", "clauditor.cli", "ingest", str(src), "--db", str(tmp_path / "k.db")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60  # a bound, not a timing assertion
        while len(workers) < 2:
            assert ingest.poll() is None, "ingest ended before its workers were seen"
            assert time.monotonic() < deadline, "no worker processes after 60 s"
            workers = _children(ingest.pid)
            time.sleep(0.05)
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(30)
        deadline = time.monotonic() + 15  # the target is at once (Linux) or within 1 s
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived their parent"
    finally:
        if ingest.poll() is None:
            ingest.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)  # ours: started by the ingest this test ran


def test_the_receiver_hostile_corpus_as_lines(tmp_path: Path) -> None:
    bodies = [c.body.strip() for c in cases() if c.content_type == JSON and not c.encoding]
    lines = [b for b in bodies if b"\n" not in b and _python_reads(b)]
    assert len(lines) >= 3
    src = tmp_path / "corpus.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    assert_same([src], tmp_path, engine="parallel")


def _python_reads(body: bytes) -> bool:
    # The corpus's too-deep body makes Python's json module raise RecursionError (the receiver
    # answers that with a 400): out of scope for file-ingest parity.
    try:
        json.loads(body)
    except RecursionError:
        return False
    except ValueError:
        pass
    return True


@pytest.mark.parametrize("engine", ["rust", "columnar"])
def test_an_unknown_engine_is_refused(tmp_path: Path, engine: str) -> None:
    with pytest.raises(ValueError, match="engine"):
        ingest_paths([], tmp_path / "c.duckdb", engine=engine)
