"""instrument() end to end: a script's calls land in the DuckDB file (through the span folder
and the catch-up every command runs first), whatever goes wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from clauditor.ingest.span_folder import catch_up
from tests.fakeanthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


APP = """
    import anthropic, clauditor, sys
    clauditor.instrument(service="support-bot", environment="prod", db=sys.argv[0] and {db!r})
    client = anthropic.Anthropic(base_url={url!r}, api_key="sk-ant-api03-SECRET", max_retries=0)
    with clauditor.feature("summarize", user_id="u-42"):
        m = client.messages.create(model="claude-haiku-4-5", max_tokens=64,
                                   messages=[{{"role": "user", "content": "hi"}}])
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=300,
                                messages=[{{"role": "user", "content": "hi"}}]) as s:
        s.get_final_message()
    print(m.usage.output_tokens)
"""


def test_script_calls_are_in_the_db_when_it_exits(tmp_path: Path) -> None:
    db = tmp_path / "calls.duckdb"
    with FakeAnthropic() as fake:
        done = _run(APP.format(db=str(db), url=fake.base_url))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "34"
    assert not db.exists()  # the app wrote its span file only
    caught = catch_up(db)
    assert caught is not None and caught.calls_written == 2
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT service, environment, feature, user_id, operation, stream, input_tokens, "
        "output_tokens, status, cost_usd, attributes FROM calls ORDER BY stream"
    ).fetchall()
    con.close()
    assert len(rows) == 2
    plain, streamed = rows
    assert plain[:10] == (
        "support-bot",
        "prod",
        "summarize",
        "u-42",
        "chat",
        False,
        12,
        34,
        "ok",
        # claude-haiku-4-5 at $1 / $5 per MTok: 12 * 1e-6 + 34 * 5e-6 = 0.000182
        plain[9],
    )
    assert abs(plain[9] - 0.000182) < 1e-12
    assert streamed[5] is True and streamed[7] == 201  # the delta's count, not the placeholder
    assert "sk-ant" not in json.dumps([str(r) for r in rows])


def test_a_locked_database_does_not_touch_the_app_and_its_spans_wait(tmp_path: Path) -> None:
    """The app never opens the database: another process holding it costs the app nothing,
    and the calls arrive with the first catch-up once the file is free."""
    db = tmp_path / "calls.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys,time; c=duckdb.connect({str(db)!r}); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with FakeAnthropic() as fake:
            done = _run(APP.format(db=str(db), url=fake.base_url))
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "34"
    assert "clauditor" not in done.stderr  # nothing failed, nothing was logged
    caught = catch_up(db)
    assert caught is not None and caught.calls_written == 2
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM calls").fetchone() == (2,)
    con.close()


EXITING_APP = """
    import anthropic, clauditor, sys
    clauditor.instrument(service="exit-test")
    client = anthropic.Anthropic(base_url=sys.argv[1], api_key="sk-ant-test-x", max_retries=0)
    client.messages.create(model="claude-haiku-4-5", max_tokens=8,
                           messages=[{"role": "user", "content": "hi"}])
    print("called", flush=True)
"""


def _exit_seconds(base_url: str, env_extra: dict[str, str]) -> tuple[float, str]:
    """Seconds from the app's last line to its exit (the atexit flush), and its stderr."""
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.update(env_extra)
    app = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(EXITING_APP), base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert app.stdout is not None and app.stderr is not None
    assert app.stdout.readline() == "called\n"
    done = time.monotonic()
    stderr = app.stderr.read()  # ends when the process does
    app.wait(60)
    assert app.returncode == 0, stderr
    return time.monotonic() - done, stderr


@pytest.mark.slow
def test_an_unreachable_otlp_endpoint_adds_at_most_a_second_to_exit_and_logs_once(
    tmp_path: Path,
) -> None:
    """Target: at most 1 s more than exiting with the DuckDB sink (asserted with a 2 s bound:
    a shared machine is noisy); the failure is one WARNING, not one line per retry."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{closed}"
    baselines, unreachables = [], []
    with FakeAnthropic() as fake:
        for _ in range(2):  # interleaved, the least of each: teardown time on a busy machine varies
            seconds, _ = _exit_seconds(fake.base_url, {"CLAUDITOR_DB": str(tmp_path / "c.duckdb")})
            baselines.append(seconds)
            seconds, stderr = _exit_seconds(
                fake.base_url, {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
            )
            unreachables.append(seconds)
        assert len(fake.requests) == 4  # every app made its call
    baseline, unreachable = min(baselines), min(unreachables)
    assert unreachable - baseline <= 2.0, (unreachable, baseline, stderr)
    failures = [line for line in stderr.splitlines() if f"127.0.0.1:{closed}" in line]
    assert len(failures) == 1, stderr
    assert "not exported to" in failures[0] and "Connection refused" in failures[0]
    assert "retrying" not in stderr and "Failed to export" not in stderr
