"""The report over the committed sample (sample_logs/): every planted incident is visible.

The incidents are listed in sample_logs/README.md: the 529 storm of 9 November, the runaway loop
of 16 November, the cache regression of 19 November and the budget's 80 % line on 23 November.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest

from clauditor.config import load_config
from clauditor.dashboards.report import write_report
from clauditor.ingest import ingest_paths

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"
AS_OF = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SAMPLE / "sample-30d.jsonl.gz").exists(), reason="sample_logs not generated"
    ),
]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("sample")
    config = load_config(SAMPLE / "clauditor.toml")
    db = folder / "clauditor.duckdb"
    ingest_paths([SAMPLE / "sample-30d.jsonl.gz"], db, config=config)
    out = folder / "report.html"
    summary = write_report(db, out, period="30d", as_of=AS_OF, config=config)
    # 50,140 calls in the period, 1,518 of them free count_tokens calls counted apart.
    free = duckdb.connect(str(db), read_only=True).sql(
        "SELECT count(*) FROM calls WHERE operation = 'count_tokens' AND start_time >= $s "
        "AND start_time < $e", params={"s": summary.period.start, "e": summary.period.end}
    ).fetchall()[0][0]  # fmt: skip
    assert (summary.calls, free) == (48_622, 1_518)
    assert summary.bytes <= 6_000_000
    return out.read_text(encoding="utf-8")


def _text(page: str) -> str:
    """The page's visible text, roughly: scripts dropped, tags removed, spaces collapsed."""
    body = re.sub(r"<script\b.*?</script>", " ", page, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def test_the_529_storm_is_an_error_episode(page: str) -> None:
    assert re.search(r"overloaded Nov 09 14:00 – 14:45 45 min", _text(page))


def test_the_runaway_loop_is_a_spend_spike(page: str) -> None:
    match = re.search(r"agent-tools Nov 16 01:00 – 03:00 ([\d,]+) \$([\d,.]+)", _text(page))
    assert match, "no agent-tools spike on the night of 16 November"
    assert 80 < float(match.group(2).replace(",", "")) < 110  # ~$60 an hour for 90 minutes
    assert "runaway volume" in page


def test_the_cache_regression_is_marked(page: str) -> None:
    assert re.search(r"support-chat : hit ratio fell from 8\d% to \d% at Nov 19 10:00", _text(page))


def test_the_budget_crossings_are_dated(page: str) -> None:
    text = _text(page)
    assert "80% on Nov 23" in text
    assert "100% on Nov 28" in text
    assert "Budget used 103%" in text  # $635.43 of $615


def test_unpriced_model_and_untagged_spend_are_shown(page: str) -> None:
    text = _text(page)
    assert "claude-experimental-2026 : 96 calls" in text
    assert "Untagged spend $48.22" in text
    assert page.count('class="plotly-graph-div"') == 8
