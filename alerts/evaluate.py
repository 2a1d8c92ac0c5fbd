"""Evaluate the rules, run the state machine, deliver: ``check_alerts`` and ``backtest``.

The state machine, per ``(rule, key)``, at each evaluation moment ``as_of``:

* **start**: no open incident and an episode is active (it held at some moment of the last
  ``lookback``) -> one message at the highest active level;
* **escalate**: an open incident and an active level above any it was messaged at -> one message
  per new level (crossing 80 % then 100 % sends two; 100 % straight away sends one start);
* **hold**: still active, no higher level -> nothing, however many runs;
* **resolve**: an open incident and no episode active for ``cooldown`` -> one message. A relapse
  inside the cooldown continues the same incident, so a flapping condition never spams.

An incident is named by its rule, key and the moment its condition began, so every run and
every host names it alike; the ``alerts`` table's key ``(rule, key, incident, transition)``
then makes a transition happen once however many runs race (:mod:`clauditor.alerts.state`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from clauditor.alerts.deliver import Sink, sinks_from_env
from clauditor.alerts.message import AlertMessage, RunFiles
from clauditor.alerts.rules import AlertRules, parse_duration, parse_rules
from clauditor.alerts.signals import (
    RULE_TITLES,
    AlertInputs,
    Episode,
    bill_episodes,
    episodes,
    load_alert_inputs,
)
from clauditor.alerts.state import (
    FAILED,
    SENT,
    UNDELIVERED,
    Delivery,
    Incident,
    claim_transitions,
    load_open_incidents,
    record_deliveries,
)
from clauditor.analytics.periods import Period, resolve_period
from clauditor.config import Config
from clauditor.errors import ConfigError, DeliveryError

__all__ = ["CheckResult", "backtest", "check_alerts", "decide", "send_claimed"]

log = logging.getLogger("clauditor.alerts")
NO_FILES = RunFiles()  # suggested commands without --db / --config (a replay shows none)
UTC = dt.UTC


@dataclass(frozen=True)
class CheckResult:
    """What one ``check`` did.

    ``firing``: the incidents open after the run (the CLI exits 1 when there is any);
    ``sent``: messages delivered by this run; ``printed``: messages to show instead (every
    decided message with ``--dry-run``, or those with no destination configured); ``failed``:
    messages whose delivery failed, with the reason (they are retried on the next run).
    """

    firing: list[Incident] = field(default_factory=list)
    sent: list[AlertMessage] = field(default_factory=list)
    printed: list[AlertMessage] = field(default_factory=list)
    failed: list[tuple[AlertMessage, str]] = field(default_factory=list)


def _incident_id(rule: str, key: str, start: dt.datetime) -> str:
    return f"{rule}|{key}|{start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _message(
    episode: Episode,
    transition: str,
    incident: str,
    started_at: dt.datetime,
    as_of: dt.datetime,
    files: RunFiles,
) -> AlertMessage:
    title = episode.title
    if transition == "escalate":
        title = f"Escalated to {episode.severity}: {title}"
    return AlertMessage(
        rule=episode.rule,
        key=episode.key,
        incident=incident,
        transition=transition,
        level=episode.level,
        severity=episode.severity,
        title=title,
        summary=episode.summary,
        started_at=started_at,
        as_of=as_of,
        fields=episode.fields,
        next_steps=tuple(files.fill(step) for step in episode.next_steps),
    )


def _resolve_message(
    inc: Incident,
    last: Episode | None,
    as_of: dt.datetime,
    cooldown: dt.timedelta,
    files: RunFiles,
) -> AlertMessage:
    what = last.title if last is not None else f"{RULE_TITLES.get(inc.rule, inc.rule)}: {inc.key}"
    ended = last.end if last is not None and last.end is not None else None
    summary = (
        f"Over: the condition has been clear for at least {_human(cooldown)}. It began "
        f"{inc.started_at:%Y-%m-%d %H:%M} UTC and reached {inc.severity}"
        + (f"; last seen {ended:%Y-%m-%d %H:%M} UTC." if ended else ".")
    )
    return AlertMessage(
        rule=inc.rule,
        key=inc.key,
        incident=inc.incident,
        transition="resolve",
        level=0,
        severity="resolved",
        title=f"Resolved: {what}",
        summary=summary,
        started_at=inc.started_at,
        as_of=as_of,
        fields=(("Began", f"{inc.started_at:%Y-%m-%d %H:%M} UTC"), ("Worst", inc.severity)),
        next_steps=tuple(files.fill(step) for step in last.next_steps[:1]) if last else (),
    )


def _human(td: dt.timedelta) -> str:
    seconds = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def decide(
    open_incidents: Mapping[tuple[str, str], Incident],
    found: Sequence[Episode],
    as_of: dt.datetime,
    *,
    lookback: dt.timedelta,
    cooldown: dt.timedelta,
    files: RunFiles = NO_FILES,
) -> list[AlertMessage]:
    """The transitions at ``as_of`` given the open incidents and the episodes (pure).

    See the module docstring for the rules. Messages come sorted by rule and key; their
    suggested commands carry ``files`` (the run's ``--db`` and ``--config``).
    """
    by_key: dict[tuple[str, str], list[Episode]] = {}
    for e in found:
        by_key.setdefault((e.rule, e.key), []).append(e)
    quiet = max(cooldown, lookback)
    messages = []
    for rule_key in sorted(set(by_key) | set(open_incidents)):
        eps = by_key.get(rule_key, [])
        active = [e for e in eps if e.active(as_of - lookback, as_of)]
        inc = open_incidents.get(rule_key)
        if inc is None:
            if active:
                top = max(active, key=lambda e: (e.level, e.start))
                began = min(e.start for e in active)
                anchor = min(e.anchor or e.start for e in active)
                incident = _incident_id(*rule_key, anchor)
                messages.append(_message(top, "start", incident, began, as_of, files))
            continue
        if active:
            top = max(active, key=lambda e: (e.level, e.start))
            if top.level > inc.level:
                messages.append(
                    _message(top, "escalate", inc.incident, inc.started_at, as_of, files)
                )
            continue
        if not any(e.active(as_of - quiet, as_of) for e in eps):
            seen = [e for e in eps if e.start <= as_of]
            last = max(seen, key=lambda e: e.start) if seen else None
            messages.append(_resolve_message(inc, last, as_of, cooldown, files))
    return messages


def _apply(
    open_incidents: Mapping[tuple[str, str], Incident], messages: Iterable[AlertMessage]
) -> dict[tuple[str, str], Incident]:
    """The open incidents after ``messages`` (what the table says once they are recorded)."""
    state = dict(open_incidents)
    for m in messages:
        rk = (m.rule, m.key)
        if m.transition == "resolve":
            state.pop(rk, None)
        else:
            state[rk] = Incident(m.rule, m.key, m.incident, m.started_at, m.level, m.severity)
    return state


def _as_utc(as_of: dt.datetime | None, tz: str) -> dt.datetime:
    if as_of is None:
        return dt.datetime.now(UTC)
    if as_of.tzinfo is None:
        return as_of.replace(tzinfo=zoneinfo.ZoneInfo(tz)).astimezone(UTC)
    return as_of.astimezone(UTC)


def _month_start(t: dt.datetime, tz: str) -> dt.datetime:
    zone = zoneinfo.ZoneInfo(tz)
    local = t.astimezone(zone)
    return dt.datetime.combine(local.date().replace(day=1), dt.time(), zone).astimezone(UTC)


def _load(db: Path, rules: AlertRules, start: dt.datetime, end: dt.datetime) -> AlertInputs:
    """The aggregates the rules need to judge ``[start, end]``: windowed history, whole months
    (a budget rule reads the whole month). DuckDB reduces the calls; no frame of them is
    held, so a month of millions of calls takes seconds (benchmarks/RESULTS.md)."""
    begin = _month_start(start - rules.history, rules.timezone)
    return load_alert_inputs(db, rules, Period(begin, end, "alert evaluation", tz=rules.timezone))


def _bill_episodes(
    db: Path, config: Config, rules: AlertRules, now: dt.datetime, *, fetch: bool
) -> list[Episode]:
    """The bill rules' episodes over the latest stored UTC days (fetched first when asked).

    Silent without a stored bill. A fetch that fails is logged and the stored bill is used, so
    the Admin API being down never stops the other alerts.
    """
    import os

    from clauditor.analytics.reconcile import reconcile_stored
    from clauditor.ingest.admin_api import AdminApiError
    from clauditor.ingest.bill import fetch_bill, load_bill
    from clauditor.semconv import ENV_ADMIN_KEY

    if not (rules.unmetered.enabled or rules.price_drift.enabled) or db.is_dir():
        return []
    last = (now - dt.timedelta(days=1)).date()  # the last UTC day that is over
    first = last - dt.timedelta(days=max(rules.unmetered.days, rules.price_drift.days) - 1)
    if fetch and os.environ.get(ENV_ADMIN_KEY):
        try:
            fetch_bill(db, first, last, now=now, settle_days=config.reconcile.settle_days)
        except AdminApiError as exc:
            log.warning("could not fetch the bill for the alerts (using the stored one): %s", exc)
    if load_bill(db, first, last).days.height == 0:
        return []
    by_model = reconcile_stored(db, first, last, config)
    by_key = reconcile_stored(db, first, last, config, by="api_key")
    return bill_episodes(by_model.rows, by_key.rows, by_model.drift, rules, now)


def _sinks(sender: Any) -> list[Sink]:
    if sender is None:
        return list(sinks_from_env())
    if isinstance(sender, list | tuple):
        return list(sender)
    if hasattr(sender, "send"):
        return [sender]
    if callable(sender):
        return [_CallableSink(sender)]
    raise TypeError("sender must be a Sink, a list of sinks or a callable(message)")


class _CallableSink:
    """Adapts a plain ``callable(message)`` to the Sink protocol."""

    name = "callable"

    def __init__(self, func: Callable[[AlertMessage], Any]) -> None:
        self._func = func

    def send(self, message: AlertMessage) -> None:
        self._func(message)


def check_alerts(
    db: Path,
    config: Config,
    *,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    sender: Any = None,
) -> CheckResult:
    """Evaluate every rule at ``as_of`` (default now), record transitions and send them.

    ``sender``: None (the destinations in the environment, see
    :func:`clauditor.alerts.deliver.sinks_from_env`), a Sink, a list of sinks, or a
    ``callable(message)`` that raises on failure. With ``dry_run`` nothing is written or sent:
    the messages a real run would send are returned in ``printed``. Failed deliveries are
    recorded and retried by the next run; a delivered message is never sent again. Raises
    :class:`ConfigError` for invalid rules and store errors when the database is unusable.
    """
    db = Path(db)
    rules = parse_rules(config)
    now = _as_utc(as_of, rules.timezone)
    calls = _load(db, rules, now, now)
    found = episodes(calls, rules, now)
    found += _bill_episodes(db, config, rules, now, fetch=rules.fetch_bill and not dry_run)
    files = RunFiles(db=db, config=config.source)

    def decide_now(open_: Mapping[tuple[str, str], Incident]) -> list[AlertMessage]:
        return decide(
            open_, found, now, lookback=rules.lookback, cooldown=rules.cooldown, files=files
        )

    if dry_run:
        open_ = load_open_incidents(db)
        messages = decide_now(open_)
        return CheckResult(firing=list(_apply(open_, messages).values()), printed=messages)

    sinks = _sinks(sender)
    run_id = uuid.uuid4().hex
    claimed = claim_transitions(db, decide_now, run_id=run_id)
    result, deliveries = send_claimed(claimed.to_send, sinks)
    record_deliveries(db, deliveries, run_id=run_id)
    result.firing.extend(load_open_incidents(db).values())
    return result


def send_claimed(
    to_send: Sequence[tuple[AlertMessage, frozenset[str]]], sinks: Sequence[Sink]
) -> tuple[CheckResult, list[Delivery]]:
    """Send each claimed message to the sinks that do not have it yet (step 2 of
    :mod:`clauditor.alerts.state`): what was sent, printed (no sink) or failed, and the
    deliveries to record. Never raises for a failed delivery."""
    result = CheckResult()
    deliveries = []
    for message, done in to_send:
        if not sinks:
            result.printed.append(message)
            deliveries.append(Delivery(message, UNDELIVERED, error="no destination configured"))
            continue
        delivered, errors = set(done), []
        for sink in sinks:
            if sink.name in delivered:
                continue  # a retry: this sink already has it
            try:
                sink.send(message)
                delivered.add(sink.name)
            except DeliveryError as exc:
                errors.append(f"{sink.name}: {exc}")
            except Exception as exc:  # a custom sender's own failure
                errors.append(f"{sink.name}: {type(exc).__name__}")
        if errors:
            reason = "; ".join(errors)
            log.warning(
                "alert %s %s/%s not delivered: %s",
                message.transition,
                message.rule,
                message.key,
                reason,
            )
            result.failed.append((message, reason))
            deliveries.append(Delivery(message, FAILED, frozenset(delivered), reason))
        else:
            result.sent.append(message)
            deliveries.append(Delivery(message, SENT, frozenset(delivered)))
    return result, deliveries


_BACKTEST_SCHEMA: dict[str, Any] = {
    "rule": pl.String,
    "key": pl.String,
    "started_at": pl.Datetime("us", "UTC"),
    "detected_at": pl.Datetime("us", "UTC"),
    "escalations": pl.Int64,
    "severity": pl.String,
    "resolved_at": pl.Datetime("us", "UTC"),
    "peak": pl.Float64,
    "title": pl.String,
}


def backtest(
    db: Path,
    config: Config,
    *,
    since: str = "30d",
    as_of: dt.datetime | None = None,
    step: str = "1h",
) -> pl.DataFrame:
    """Replay history through the rules: every incident that would have fired.

    ``since`` is a period spec (:func:`clauditor.analytics.resolve_period`), replayed as if
    ``alerts check`` had run every ``step``. Columns: ``rule``, ``key``, ``started_at`` (when
    the condition began), ``detected_at`` (the run that would have sent the start),
    ``escalations`` (messages after the start), ``severity`` (the worst level), ``resolved_at``
    (NULL: still open at the end), ``peak`` (rule-specific: budget fraction, error rate, spike
    score, hit-ratio fall, unpriced calls), ``title`` (of the worst level's message, as
    ``severity``); sorted by detection time.
    """
    rules = parse_rules(config)
    every = parse_duration(step, "step", "backtest")
    end = _as_utc(as_of, rules.timezone)
    try:
        period = resolve_period(since, as_of=end, tz=rules.timezone)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    calls = _load(db, rules, period.start, period.end)
    zone = zoneinfo.ZoneInfo(rules.timezone)
    moments, day = [], period.start.astimezone(zone).date()
    while (m := dt.datetime.combine(day, dt.time(), zone).astimezone(UTC)) < period.end:
        if m > period.start:
            moments.append(m)
        day += dt.timedelta(days=1)
    found = episodes(calls, rules, end, forecast_moments=[*moments, end])
    # A run every `step` sees everything since the previous run, whatever the lookback says.
    lookback = max(rules.lookback, every)
    grid: list[dt.datetime] = []
    t = period.start + every
    while t < end:
        grid.append(t)
        t += every
    grid.append(end)

    state: dict[tuple[str, str], Incident] = {}
    rows: dict[str, dict[str, Any]] = {}
    peaks: dict[tuple[str, str], list[Episode]] = {}
    for e in found:
        peaks.setdefault((e.rule, e.key), []).append(e)
    for t in grid:  # hundreds of moments; each decides over the few episodes there are
        messages = decide(state, found, t, lookback=lookback, cooldown=rules.cooldown)
        for m in messages:
            if m.transition == "start":
                rows[m.incident] = {
                    "rule": m.rule,
                    "key": m.key,
                    "started_at": m.started_at,
                    "detected_at": t,
                    "escalations": 0,
                    "severity": m.severity,
                    "resolved_at": None,
                    "peak": None,
                    "title": m.title,
                    "_level": m.level,
                }
            elif m.incident in rows:
                row = rows[m.incident]
                if m.transition == "escalate":
                    row["escalations"] += 1
                    if m.level > row["_level"]:
                        row["_level"], row["severity"] = m.level, m.severity
                else:
                    row["resolved_at"] = t
        state = _apply(state, messages)
    for row in rows.values():
        until = row["resolved_at"] or end
        inside = [
            e
            for e in peaks.get((row["rule"], row["key"]), [])
            if e.start <= until and (e.end is None or e.end >= row["started_at"])
        ]
        row["peak"] = max(e.peak for e in inside) if inside else None
        # The title of the worst level reached, so the row's title and severity say one thing.
        worst = [e for e in inside if e.level == row["_level"]]
        if worst:
            row["title"] = worst[0].title
        del row["_level"]
    frame = pl.DataFrame(list(rows.values()), schema=_BACKTEST_SCHEMA)
    return frame.sort("detected_at", "rule", "key")
