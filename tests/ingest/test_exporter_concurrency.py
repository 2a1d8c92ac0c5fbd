"""Two app processes export for one DuckDB file while a third keeps querying it.

Each app is a real process: ``clauditor.instrument(db=...)`` (the default sink: its own span
file beside the database, behind a batching processor), the real anthropic SDK calling the fake
Anthropic server, flushing often. Every ``clauditor query`` first ingests the new span files
while the apps keep appending. Whatever the interleaving, every call must end up as exactly one
row and no app may see an exception.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from clauditor.ingest.span_folder import catch_up
from clauditor.store import load_calls
from tests.fakeanthropic import FakeAnthropic

CALLS_PER_APP = 40
MAX_QUERIES = 400  # bounds the reader loop whatever the machine's speed

APP = textwrap.dedent(
    """
    import json, sys
    import anthropic
    import clauditor

    db, base_url, tag, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    handle = clauditor.instrument(service="app-" + tag, environment="test", db=db)
    client = anthropic.Anthropic(api_key="sk-ant-api03-CONCURRENCY-test", base_url=base_url,
                                 max_retries=0)
    ids = []
    for i in range(calls):
        with clauditor.feature("feature-" + tag):
            reply = client.messages.create(
                model="claude-haiku-4-5", max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
            )
        ids.append(reply.id)
        if i % 3 == 2:
            handle.flush()  # many small batches: many chances to meet the other writers
    clauditor.uninstrument()
    print(json.dumps(ids))
    """
)


def _query(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "clauditor.cli",
            "query",
            "SELECT count(*) AS n FROM calls",
            "--db",
            str(db),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_apps_and_a_reader_share_one_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.duckdb"
    script = tmp_path / "app.py"
    script.write_text(APP)
    with FakeAnthropic() as fake:
        apps = [
            subprocess.Popen(
                [sys.executable, str(script), str(db), fake.base_url, tag, str(CALLS_PER_APP)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
            )
            for tag in ("a", "b")
        ]
        queries = []
        while any(app.poll() is None for app in apps) and len(queries) < MAX_QUERIES:
            queries.append(_query(db))
        outputs = [app.communicate(timeout=300) for app in apps]

    for app, (_out, err) in zip(apps, outputs, strict=True):
        assert app.returncode == 0, err
        assert "Traceback" not in err, err
    for run in queries:
        # A reader may find the file busy (or not yet created) and say so; it never crashes.
        assert "Traceback" not in run.stderr, run.stderr

    # What the apps wrote after the last query goes in now, as the next command would take it.
    catch_up(db)
    calls = load_calls(db)
    ids = [json.loads(out)[i] for out, _ in outputs for i in range(CALLS_PER_APP)]
    assert len(set(ids)) == 2 * CALLS_PER_APP
    stored = [json.loads(a)["gen_ai.response.id"] for a in calls["attributes"].to_list()]
    assert sorted(stored) == sorted(ids)  # every call, exactly once
    assert calls["span_id"].n_unique() == calls.height == 2 * CALLS_PER_APP
    assert sorted(calls["feature"].unique().to_list()) == ["feature-a", "feature-b"]
    assert "sk-ant-api03" not in "".join(calls["attributes"].to_list())
    again = _query(db)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["n"] == 2 * CALLS_PER_APP
