"""The analytics and alert commands on the committed sample, as a user runs them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.ingest import ingest_paths

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"
AS_OF = "2026-11-30T00:00:00Z"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("jobs") / "sample.duckdb"
    ingest_paths([SAMPLE / "sample-30d.jsonl.gz"], db)
    return db


def run_json(*args: str) -> list[dict]:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_errors_finds_the_529_storm(sample_db: Path) -> None:
    rows = run_json("errors", "--db", str(sample_db), "--period", "30d", "--as-of", AS_OF)
    overloaded = [r for r in rows if r["error_class"] == "overloaded"]
    assert len(overloaded) == 1
    assert overloaded[0]["start"].startswith("2026-11-09T14:00")


def test_errors_options_change_what_is_an_episode(sample_db: Path) -> None:
    # The storm (sample_logs/README.md: 529s 14:00-14:45 UTC on 2026-11-09, over 20 % of the
    # calls) is sustained for far longer than 20 minutes at well over 2 %: still one episode
    # with stricter options. A window longer than the whole storm cannot be sustained at 100 %.
    base = ["errors", "--db", str(sample_db), "--period", "30d", "--as-of", AS_OF]
    strict = run_json(*base, "--window=10m", "--min-duration=20m", "--threshold=0.02",
                      "--min-calls=50")  # fmt: skip
    overloaded = [r for r in strict if r["error_class"] == "overloaded"]
    assert len(overloaded) == 1 and overloaded[0]["start"].startswith("2026-11-09T1")
    assert run_json(*base, "--threshold=1.0") == []


def test_spikes_finds_the_runaway_loop(sample_db: Path) -> None:
    rows = run_json("spikes", "--db", str(sample_db), "--period", "30d", "--as-of", AS_OF)
    agent = [r for r in rows if r["key"] == "agent-tools"]
    assert len(agent) == 1 and agent[0]["start"].startswith("2026-11-16T01:00")


def test_budget_uses_the_config(sample_db: Path) -> None:
    rows = run_json(
        "budget", "--db", str(sample_db), "--as-of", "2026-11-24T00:00:00Z",
        "--config", str(SAMPLE / "clauditor.toml"),
    )  # fmt: skip
    total = next(r for r in rows if r["scope"] == "total")
    assert total["budget_usd"] == 615.0
    assert 0.8 in total["thresholds_crossed"] and 1.0 not in total["thresholds_crossed"]


def test_audit_latency_cache_failures_run(sample_db: Path) -> None:
    for command in ("audit", "latency", "cache", "failures"):
        rows = run_json(command, "--db", str(sample_db), "--period", "30d", "--as-of", AS_OF)
        assert rows, f"{command} printed nothing"


@pytest.mark.parametrize("period", ["30d", "2026-11-09..2026-11-10", "2020-01-01..2020-01-02"])
def test_audit_command_prints_the_runners_audit(sample_db: Path, period: str) -> None:
    # The command prints the runner's scorecard of the period (its figures are worked out by
    # hand in tests/analytics/test_audit.py); the last period holds no calls at all.
    import datetime as dt

    from clauditor.analytics import resolve_period
    from clauditor.analytics.runner import audit_table
    from clauditor.cli._common import resolve_config

    config = resolve_config(None)
    as_of = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    span = resolve_period(period, as_of=as_of, tz="UTC")
    want = audit_table(sample_db, span, config=config, as_of=as_of).rows(named=True)
    got = run_json("audit", "--db", str(sample_db), "--period", period, "--as-of", AS_OF)
    assert [(r["item"], r["status"], r["evidence"]) for r in got] == [
        (r["item"], r["status"], r["evidence"]) for r in want
    ]
    _same_rows(
        [{"usd_at_stake": r["usd_at_stake"]} for r in got],
        [{"usd_at_stake": r["usd_at_stake"]} for r in want],
    )
    if period.startswith("2020"):
        assert {r["status"] for r in got} == {"n/a"}


def _emitted(frame, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """``frame`` as the commands print it with ``--format json``."""
    from clauditor.output import Format, emit

    capsys.readouterr()
    emit(frame, Format.json)
    return json.loads(capsys.readouterr().out)


def _same_rows(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            if isinstance(value, float):  # sums in another order
                assert mine[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            else:
                assert mine[key] == value, key


PER_CALL_CASES = [
    ("cache", "feature,model"),
    ("cache", "model"),
    ("cache", ""),
    ("failures", "feature"),
    ("failures", "feature,model"),
    ("failures", ""),
    # Keys outside feature and model, and buckets other than days: the same path.
    ("cache", "environment"),
    ("failures", "user"),
]


@pytest.mark.parametrize(("command", "option"), PER_CALL_CASES)
def test_cache_and_failures_commands_print_the_runners_tables(
    sample_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    option: str,
) -> None:
    # What these commands print is the runner's table by the --by keys (the figures are worked
    # out by hand in tests/analytics/test_cache.py and test_failure.py), never the calls.
    import datetime as dt

    from clauditor.analytics import resolve_period
    from clauditor.analytics.runner import cache_tables, failures_table

    period, as_of = "30d", AS_OF
    span = resolve_period(period, as_of=dt.datetime.fromisoformat(as_of), tz="UTC")
    option, _, flags = option.partition(" ")
    keys = [k for k in option.split(",") if k]
    if command == "cache":
        want = cache_tables(sample_db, span, keys, candidates=False)[0]
    else:
        want = failures_table(sample_db, span, keys)
    _forbid_per_call(monkeypatch)
    args = [command, "--db", str(sample_db), "--period", period, "--as-of", as_of]
    args += ["--by", option, *flags.split()]
    got = run_json(*args)
    assert got or option, "nothing to compare"  # the sample's incidents are found
    _same_rows(got, _emitted(want, capsys))


@pytest.mark.parametrize("by", ["feature", "service"])
def test_spikes_command_finds_the_runaway_loop(sample_db: Path, by: str) -> None:
    # The sample's planted runaway (sample_logs/README.md): agent-tools looping 01:10-02:40 UTC
    # on 2026-11-16, i.e. the spike hours 01:00 and 02:00; its baseline is the week before the
    # period, which the command reads too. By service, the loop's service carries the spike.
    got = run_json(
        "spikes", "--db", str(sample_db), "--period", "7d", "--as-of", "2026-11-20T00:00:00Z",
        "--by", by,
    )  # fmt: skip
    starts = {(r["start"][:16], r["end"][:16]) for r in got}
    assert ("2026-11-16T01:00", "2026-11-16T03:00") in starts, got
    runaway = next(r for r in got if r["start"].startswith("2026-11-16T01:00"))
    assert "runaway volume" in runaway["reason"]


@pytest.mark.parametrize("keys", ["feature", "feature,model", "model", ""])
@pytest.mark.parametrize("period", ["7d", "2020-01-01..2020-01-02"])
def test_costs_adds_up_to_the_periods_calls_and_the_one_before(
    sample_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    keys: str,
    period: str,
) -> None:
    # The groups' breakdown figures are worked out by hand in tests/analytics/test_costs.py;
    # here the rows add up to the app's calls and dollars of the period and of the one before.
    import datetime as dt

    from clauditor.analytics import resolve_period

    span = resolve_period(period, as_of=dt.datetime(2026, 11, 20, tzinfo=dt.UTC), tz="UTC")
    calls, usd = _app_totals(sample_db, span)
    _, previous_usd = _app_totals(sample_db, span.previous())
    _forbid_per_call(monkeypatch)
    got = run_json(
        "costs", "--by", keys, "--db", str(sample_db), "--period", period,
        "--as-of", "2026-11-20T00:00:00Z",
    )  # fmt: skip
    if period.startswith("2020"):  # an empty period lists no rows of zeros
        assert got == []
        return
    assert got and calls > 0
    assert sum(r["calls"] for r in got) == calls
    assert sum(r["cost_usd"] or 0.0 for r in got) == pytest.approx(usd, rel=1e-9)
    assert sum(r["previous_cost_usd"] or 0.0 for r in got) == pytest.approx(previous_usd, rel=1e-9)


def _app_totals(db: Path, span) -> tuple[int, float]:
    """The app's (not Claude Code's) calls of ``span`` in ``db`` (free count_tokens calls left
    out of the count) and their priced dollars."""
    from clauditor.store import read_connection

    with read_connection(db) as con:
        row = con.execute(
            "SELECT count(*) FILTER (WHERE coalesce(operation, '') <> 'count_tokens'), "
            "coalesce(sum(cost_usd), 0) FROM calls WHERE start_time >= ? "
            "AND start_time < ? AND coalesce(source, '') <> 'claude-code'",
            [span.start, span.end],
        ).fetchall()[0]
    return int(row[0]), float(row[1])


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu"])
def test_budget_command_equals_the_per_call_job(
    sample_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    zone: str,
) -> None:
    # Slot sums (and the calls of the slots where a threshold is crossed): hours in whole-hour
    # zones, quarter hours in zones 30 or 45 minutes off UTC. Never the calls themselves.
    import datetime as dt

    from clauditor.analytics import resolve_period
    from clauditor.analytics.budget import budget_status
    from clauditor.analytics.periods import Period
    from clauditor.config import load_config

    config = tmp_path / "clauditor.toml"
    text = (SAMPLE / "clauditor.toml").read_text()
    config.write_text(text.replace('timezone = "UTC"', f'timezone = "{zone}"'))
    cfg = load_config(config)
    assert cfg.timezone == zone and cfg.budget.monthly_usd
    as_of = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)
    month = resolve_period("mtd", as_of=as_of, tz=zone)
    window = Period(month.start - dt.timedelta(days=35), month.end, month.label, zone)
    want = budget_status(
        _app_calls(sample_db, window),
        monthly_usd=cfg.budget.monthly_usd,
        feature_budgets=cfg.budget.features,
        thresholds=cfg.budget.thresholds,
        as_of=as_of,
        tz=zone,
    )
    assert want["thresholds_crossed"].list.len().sum() > 0  # a crossing to date exactly
    _forbid_per_call(monkeypatch)
    got = run_json(
        "budget", "--db", str(sample_db), "--config", str(config),
        "--as-of", "2026-11-24T09:30:00Z",
    )  # fmt: skip
    _same_rows(got, _emitted(want, capsys))


def _app_calls(db: Path, span):
    """The app's (not Claude Code's) whole calls of ``span`` in ``db``."""
    import polars as pl

    from clauditor.store import load_calls

    calls = load_calls(db)
    inside = pl.col("start_time").is_between(span.start, span.end, "left")
    return calls.filter(inside & (pl.col("source").fill_null("") != "claude-code"))


def _forbid_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every loader of per-call frames fail: the commands run on the engine's reductions."""
    import clauditor.analytics.frame

    def per_call(*_: object, **__: object) -> None:
        raise AssertionError("a command read the calls")

    monkeypatch.setattr(clauditor.analytics.frame, "analytics_frame_from", per_call)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "Asia/Kathmandu"])
@pytest.mark.parametrize("every", ["hour", "day", "week"])
def test_costs_every_equals_the_per_call_buckets(
    sample_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    zone: str,
    every: str,
) -> None:
    # Buckets in a zone 30 or 45 minutes off UTC come from 15-minute slots, never the calls.
    import datetime as dt

    import polars as pl

    from clauditor.analytics import resolve_period
    from clauditor.analytics.trends import BUCKETS

    config = tmp_path / "clauditor.toml"
    text = (SAMPLE / "clauditor.toml").read_text()
    config.write_text(text.replace('timezone = "UTC"', f'timezone = "{zone}"'))
    span = resolve_period("7d", as_of=dt.datetime(2026, 11, 20, tzinfo=dt.UTC), tz=zone)
    # Each call's local bucket, from the whole calls: the calls and dollars of each bucket.
    local = pl.col("start_time").dt.convert_time_zone(zone).dt.truncate(BUCKETS[every])
    want = {
        b.isoformat(): (n, usd)
        for b, n, usd in _app_calls(sample_db, span)
        .group_by(local.alias("bucket"))
        .agg(
            (pl.col("operation") != "count_tokens").fill_null(True).sum(), pl.col("cost_usd").sum()
        )
        .iter_rows()
    }
    _forbid_per_call(monkeypatch)
    got = run_json(
        "costs", "--by", "feature", "--every", every, "--db", str(sample_db), "--period", "7d",
        "--as-of", "2026-11-20T00:00:00Z", "--config", str(config),
    )  # fmt: skip
    assert len(got) > 7
    buckets: dict[str, tuple[int, float]] = {}
    for r in got:
        bucket = dt.datetime.fromisoformat(r["bucket"]).isoformat()
        n, usd = buckets.get(bucket, (0, 0.0))
        buckets[bucket] = (n + r["calls"], usd + (r["cost_usd"] or 0.0))
    assert buckets.keys() == want.keys()
    for bucket, (n, usd) in want.items():
        assert buckets[bucket][0] == n and buckets[bucket][1] == pytest.approx(usd, rel=1e-9)


@pytest.mark.parametrize("keys", ["service", "environment,user", "code_location,model"])
def test_costs_by_any_keys_equal_the_per_call_change(
    sample_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    keys: str,
) -> None:
    import datetime as dt

    from clauditor.analytics import resolve_period

    by = keys.split(",")
    span = resolve_period("7d", as_of=dt.datetime(2026, 11, 20, tzinfo=dt.UTC), tz="UTC")
    calls, usd = _app_totals(sample_db, span)
    _, previous_usd = _app_totals(sample_db, span.previous())
    _forbid_per_call(monkeypatch)
    got = run_json(
        "costs", "--by", keys, "--db", str(sample_db), "--period", "7d",
        "--as-of", "2026-11-20T00:00:00Z",
    )  # fmt: skip
    assert got and all(k in r for r in got for k in by)
    assert len({tuple(r[k] for k in by) for r in got}) == len(got)  # one row a group
    assert sum(r["calls"] for r in got) == calls
    assert sum(r["cost_usd"] or 0.0 for r in got) == pytest.approx(usd, rel=1e-9)
    assert sum(r["previous_cost_usd"] or 0.0 for r in got) == pytest.approx(previous_usd, rel=1e-9)


@pytest.mark.parametrize(
    ("zone", "every", "by"),
    [("Asia/Kolkata", "1h", "feature"), ("Asia/Kathmandu", "1d", "service"), ("UTC", "1w", "")],
)
def test_latency_buckets_in_any_zone_are_local_and_count_every_successful_call(
    sample_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    zone: str,
    every: str,
    by: str,
) -> None:
    import datetime as dt
    import zoneinfo

    from clauditor.analytics import resolve_period
    from clauditor.store import read_connection

    config = tmp_path / "clauditor.toml"
    text = (SAMPLE / "clauditor.toml").read_text()
    config.write_text(text.replace('timezone = "UTC"', f'timezone = "{zone}"'))
    span = resolve_period("7d", as_of=dt.datetime(2026, 11, 20, tzinfo=dt.UTC), tz=zone)
    # What the buckets must add up to: the period's successful chat calls of the app.
    with read_connection(sample_db) as con:
        want = con.execute(
            "SELECT count(*) FROM calls WHERE start_time >= ? AND start_time < ? "
            "AND coalesce(operation, 'chat') = 'chat' AND coalesce(status, 'ok') = 'ok' "
            "AND coalesce(source, '') <> 'claude-code'",
            [span.start, span.end],
        ).fetchall()[0][0]
    _forbid_per_call(monkeypatch)
    got = run_json(
        "latency", "--by", by, "--every", every, "--db", str(sample_db), "--period", "7d",
        "--as-of", "2026-11-20T00:00:00Z", "--config", str(config),
    )  # fmt: skip
    assert sum(r["calls"] for r in got) == want
    local = zoneinfo.ZoneInfo(zone)
    for r in got:  # each bucket starts on a local hour, midnight or Monday midnight
        start = dt.datetime.fromisoformat(r["period"]).astimezone(local)
        assert (start.minute, start.second) == (0, 0), r
        if every != "1h":
            assert start.hour == 0, r
        if every == "1w":
            assert start.weekday() == 0, r


def test_job_commands_group_by_keys_outside_the_jobs_own_columns(
    sample_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The --by keys' columns (service, environment, user, code location) group the rows: one
    # row a group, and the groups' calls and dollars add up to the period's app calls.
    import datetime as dt

    from clauditor.analytics import resolve_period

    span = resolve_period("30d", as_of=dt.datetime(2026, 11, 30, tzinfo=dt.UTC), tz="UTC")
    calls, usd = _app_totals(sample_db, span)
    base = ["--db", str(sample_db), "--period", "30d", "--as-of", AS_OF]
    _forbid_per_call(monkeypatch)

    cache = run_json("cache", "--by", "service,user", *base)
    assert len(cache) > 100
    assert len({(r["service"], r["user"]) for r in cache}) == len(cache)

    failures = run_json("failures", "--by", "environment,code_location", *base)
    assert len(failures) > 3
    assert len({(r["environment"], r["code_location"]) for r in failures}) == len(failures)
    assert sum(r["calls"] for r in failures) == calls
    assert sum(r["cost_usd"] for r in failures) == pytest.approx(usd, rel=1e-9)


def test_alerts_dry_run_prints_and_changes_nothing(sample_db: Path) -> None:
    before = hashlib.sha256(sample_db.read_bytes()).hexdigest()
    result = runner.invoke(
        app,
        ["alerts", "check", "--dry-run", "--db", str(sample_db), "--as-of", AS_OF,
         "--config", str(SAMPLE / "clauditor.toml")],
    )  # fmt: skip
    assert result.exit_code == 1  # alerts are firing at the end of the sample month
    assert "[FIRING] Budget" in result.stdout and "dry run" in result.stdout
    assert hashlib.sha256(sample_db.read_bytes()).hexdigest() == before


def test_alerts_backtest_lists_each_planted_incident_once(sample_db: Path) -> None:
    rows = run_json(
        "alerts", "backtest", "--db", str(sample_db), "--since", "30d", "--as-of", AS_OF,
        "--config", str(SAMPLE / "clauditor.toml"),
    )  # fmt: skip
    rules = [(r["rule"], r["key"]) for r in rows]
    assert rules.count(("spike", "agent-tools")) == 1
    assert sum(1 for rule, key in rules if rule == "error_rate" and "overloaded" in key) == 1
    assert sum(1 for rule, key in rules if rule == "cache" and "support-chat" in key) == 1
    assert sum(1 for rule, _ in rules if rule == "unpriced_model") == 1
