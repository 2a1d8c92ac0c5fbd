"""The span folder: what apps wrote beside the database reaches it, once, whatever happened to
the apps; nothing else in the folder is ever merged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.ingest.span_folder import catch_up
from clauditor.span_files import MARKER_LINE, span_folder
from tests.fakeanthropic import FakeAnthropic
from tests.ingest.otlp_fixtures import SDK_CACHED_CALL, line, span

ROOT = Path(__file__).resolve().parents[2]

# An app that calls Claude until it is killed, printing each call's number once it returned.
# Small span files, so that the run rotates through several of them.
LOOPING_APP = """
    import sys, anthropic, clauditor
    handle = clauditor.instrument(service=sys.argv[3], db=sys.argv[2])
    handle.exporter.rotate_bytes = 8192
    client = anthropic.Anthropic(base_url=sys.argv[1], api_key="sk-ant-test-x", max_retries=0)
    n = 0
    while True:
        with clauditor.feature("loop"):
            client.messages.create(model="claude-haiku-4-5", max_tokens=8,
                                   messages=[{"role": "user", "content": "hi"}])
        n += 1
        print(n, flush=True)
        if len(sys.argv) > 4 and n >= int(sys.argv[4]):
            print("idle", flush=True)
            sys.stdin.read()  # waits here until killed
"""


def _start(fake: FakeAnthropic, db: Path, service: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(LOOPING_APP),
            fake.base_url,
            str(db),
            service,
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _wait_for(proc: subprocess.Popen[str], line: str, timeout_s: float = 60.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if not got:
            raise AssertionError(f"app ended early: {proc.stderr.read() if proc.stderr else ''}")
        if got.strip() == line:
            return
    raise AssertionError(f"app did not print {line!r} within {timeout_s} s")


def _written_span_ids(folder: Path) -> list[str]:
    """Every span id in the whole lines of every span file under ``folder`` (kept ones too)."""
    ids: list[str] = []
    for file in sorted(folder.rglob("spans-*")):
        if ".catchup" in file.parts:
            continue
        try:
            data = file.read_bytes()
        except FileNotFoundError:  # a live writer sealed it meanwhile: counted next time
            continue
        for text in data[: data.rfind(b"\n") + 1].splitlines():
            for rs in json.loads(text)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    ids.extend(s["spanId"] for s in ss["spans"])
    return ids


def _wait_until_written(folder: Path, spans: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_written_span_ids(folder)) < spans:
        assert time.monotonic() < deadline, f"fewer than {spans} spans written in {timeout_s} s"
        time.sleep(0.1)


def _stored(db: Path) -> tuple[int, set[str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT span_id FROM calls").fetchall()
    finally:
        con.close()
    return len(rows), {r[0] for r in rows}


def test_two_apps_killed_mid_run_lose_no_span_they_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL two app processes mid-run (real SDK, real HTTP), after a catch-up that ran
    while both wrote: after the next catch-up, every span either sink had written is stored
    exactly once.

    What a killed app can lose is only what its batch processor still queued, never written:
    at most about a second of spans (one export per second), see the next test."""
    monkeypatch.setenv("CLAUDITOR_SPAN_RETENTION_HOURS", "24")  # keep files to count them
    db = tmp_path / "calls.duckdb"
    folder = span_folder(db)
    with FakeAnthropic() as fake:
        apps = [_start(fake, db, f"app-{i}") for i in range(2)]
        try:
            _wait_until_written(folder, 40)
            mid = catch_up(db)  # while both write: their live files' whole lines so far
            assert mid is not None and mid.calls_written > 0
            _wait_until_written(folder, 240)
            for proc in apps:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        finally:
            for proc in apps:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
    assert catch_up(db) is not None
    written = _written_span_ids(folder)
    assert len(written) >= 240 and len(set(written)) == len(written)
    count, stored = _stored(db)
    assert count == len(written) and stored == set(written)
    assert not list(folder.glob("spans-*")), "every span file was ingested and moved aside"
    assert catch_up(db) is not None and _stored(db)[0] == count  # again: nothing twice


def test_a_killed_app_loses_at_most_what_it_queued_in_the_last_second(tmp_path: Path) -> None:
    """The queued window is bounded: calls that returned more than a few seconds before the
    kill were exported (every second) and written, so they are all stored."""
    db = tmp_path / "calls.duckdb"
    with FakeAnthropic() as fake:
        proc = _start(fake, db, "idle-app", "25")
        try:
            _wait_for(proc, "idle")
            time.sleep(5)  # five export periods: generous on a loaded machine
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    assert catch_up(db) is not None
    assert _stored(db)[0] == 25


def test_a_torn_last_line_is_cut_off_and_every_whole_line_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer that died mid-write (its file unsealed, its lock gone) leaves a torn last
    line: the whole lines before it are stored, the torn bytes are cut off and logged."""
    db = tmp_path / "calls.duckdb"
    folder = span_folder(db)
    folder.mkdir()
    orphan = folder / "spans-00000000000000000001-99999-0123abcd.jsonl.part"
    calls = [{**SDK_CACHED_CALL, "gen_ai.response.id": f"msg_{i}"} for i in range(1, 4)]
    whole = [line(span(f"00f067aa0ba902{i:02x}", c)).encode() for i, c in enumerate(calls, 1)]
    orphan.write_bytes(MARKER_LINE + b"".join(whole) + whole[0][:40])
    done = catch_up(db)
    assert done is not None and done.torn_bytes == 40
    assert _stored(db) == (3, {f"00f067aa0ba902{i:02x}" for i in range(1, 4)})
    assert "torn line (40 bytes" in caplog.text
    assert not list(folder.glob("spans-*"))
    assert not any(r[0] for r in _quarantined(db))  # the torn line is no rejection


def _quarantined(db: Path) -> list[tuple[str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT reason FROM quarantine").fetchall()
    finally:
        con.close()


def test_nothing_but_the_sinks_own_files_is_merged(tmp_path: Path) -> None:
    """Files the sink did not write (no marker, another name, a symlink) are moved to
    rejected/ and recorded in quarantine; their spans never reach calls."""
    db = tmp_path / "calls.duckdb"
    folder = span_folder(db)
    folder.mkdir()
    line = _foreign_line()
    stem = "spans-00000000000000000001-1-0123abcd"
    (folder / f"{stem}.jsonl").write_bytes(line)  # the sink's name, no marker
    (folder / "other.jsonl").write_bytes(MARKER_LINE + line)  # the marker, another name
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(MARKER_LINE + line)
    (folder / "spans-00000000000000000002-1-0123abcd.jsonl").symlink_to(outside)
    done = catch_up(db)
    assert done is not None and len(done.rejected_files) == 3
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM calls").fetchone() == (0,)
        reasons = sorted(r[0] for r in con.execute("SELECT reason FROM quarantine").fetchall())
    finally:
        con.close()
    assert len(reasons) == 3 and all(r.startswith("span folder file rejected") for r in reasons)
    assert sorted(p.name for p in (folder / "rejected").iterdir()) == sorted(
        [f"{stem}.jsonl", "other.jsonl", "spans-00000000000000000002-1-0123abcd.jsonl"]
    )
    assert outside.exists()  # a symlink's target is never touched


def test_a_command_reads_what_apps_wrote_and_a_parquet_folder_is_left_alone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "calls.duckdb"
    folder = span_folder(db)
    folder.mkdir()
    (folder / "spans-00000000000000000001-1-0123abcd.jsonl").write_bytes(
        MARKER_LINE + _foreign_line()
    )
    result = CliRunner().invoke(app, ["query", "SELECT count(*) AS n FROM calls", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert " 1 " in result.output or "│ 1" in result.output
    assert not list(folder.glob("spans-*"))

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    span_folder(dataset).mkdir()
    kept = span_folder(dataset) / "spans-00000000000000000001-1-0123abcd.jsonl"
    kept.write_bytes(MARKER_LINE + _foreign_line())
    assert catch_up(dataset) is None and kept.exists()


def _foreign_line() -> bytes:
    """One OTLP/JSON request line holding one Claude call span."""
    return line(span("00f067aa0ba902b1", SDK_CACHED_CALL)).encode()


def test_a_running_receiver_ingests_the_span_files_itself(tmp_path: Path) -> None:
    """With `clauditor serve` holding the database, no command needs to run: the receiver
    takes the span files (here a killed app's) on its own."""
    from clauditor.ingest.serve import Receiver

    db = tmp_path / "calls.duckdb"
    folder = span_folder(db)
    with Receiver(db, http_port=0, grpc_port=None), FakeAnthropic() as fake:
        proc = _start(fake, db, "served-app", "5")
        try:
            _wait_for(proc, "idle")
            _wait_until_written(folder, 5)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        deadline = time.monotonic() + 60
        while list(folder.glob("spans-*")):
            assert time.monotonic() < deadline, "the receiver did not take the span files"
            time.sleep(0.2)
    assert _stored(db)[0] == 5


BOUNDED_APP = """
    import sys, anthropic, clauditor
    handle = clauditor.instrument(service="bounded", db=sys.argv[2])
    client = anthropic.Anthropic(base_url=sys.argv[1], api_key="sk-ant-test-x", max_retries=0)
    for _ in range(40):
        client.messages.create(model="claude-haiku-4-5", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
        handle.flush()
    print(handle.exporter.written, handle.exporter.dropped)
"""


def test_a_full_span_folder_drops_counts_and_logs_once_instead_of_filling_the_disk(
    tmp_path: Path,
) -> None:
    db = tmp_path / "calls.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLAUDITOR_SPAN_FOLDER_MAX_MB": "0.02"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    with FakeAnthropic() as fake:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(BOUNDED_APP), fake.base_url, str(db)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stderr
    written, dropped = map(int, done.stdout.split())
    assert written > 0 and dropped > 0 and written + dropped == 40
    assert done.stderr.count("dropped, not written") == 1  # once per episode, counted
    size = sum(p.stat().st_size for p in span_folder(db).rglob("*") if p.is_file())
    assert size <= 0.02 * 1024 * 1024
    assert catch_up(db) is not None and _stored(db)[0] == written


def test_ingested_span_files_are_kept_for_the_retention_then_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "calls.duckdb"
    folder = span_folder(db)
    folder.mkdir()
    name = "spans-00000000000000000001-1-0123abcd.jsonl"
    (folder / name).write_bytes(MARKER_LINE + _foreign_line())
    monkeypatch.setenv("CLAUDITOR_SPAN_RETENTION_HOURS", "2")
    catch_up(db)
    kept = folder / "ingested" / name
    assert kept.exists() and not (folder / name).exists()
    three_hours_ago = time.time() - 3 * 3600
    os.utime(kept, (three_hours_ago, three_hours_ago))
    catch_up(db)
    assert not kept.exists()
    assert _stored(db)[0] == 1


FORKING_APP = """
    import os, sys, anthropic, clauditor
    handle = clauditor.instrument(service="pre-fork", db=sys.argv[2])
    client = anthropic.Anthropic(base_url=sys.argv[1], api_key="sk-ant-test-x", max_retries=0)
    def call():
        client.messages.create(model="claude-haiku-4-5", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    call()
    handle.flush()  # the parent's span file is open now
    pid = os.fork()
    if pid == 0:  # a pre-forking server's worker
        for _ in range(3):
            call()
        handle.flush()
        os._exit(0)  # no atexit: the worker's file is left as a dead writer's
    os.waitpid(pid, 0)
    call()
    handle.flush()
"""


def test_a_forked_worker_writes_its_own_span_file(tmp_path: Path) -> None:
    """A pre-forking server instruments once and forks: each worker gets its own file (never
    interleaving lines into the parent's), and every call is stored once."""
    db = tmp_path / "calls.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    with FakeAnthropic() as fake:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(FORKING_APP), fake.base_url, str(db)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stderr
    files = sorted(span_folder(db).glob("spans-*"))
    pids = {f.name.split("-")[2] for f in files}
    assert len(pids) == 2, [f.name for f in files]
    assert catch_up(db) is not None
    assert _stored(db)[0] == 5
