"""The alert message: what one transition of one incident says, independent of where it goes.

A message is plain data (:class:`AlertMessage`), stored as JSON in the ``alerts`` table before it
is sent, so a failed delivery can be retried word for word on the next run. Renderers turn it
into a Slack Block Kit payload (:mod:`clauditor.alerts.slack`), a generic JSON document, or the
plain text that ``--dry-run`` prints.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clauditor.redact import scrub

__all__ = ["CONFIG_OPTION", "RUN_OPTIONS", "TRANSITIONS", "AlertMessage", "RunFiles", "render_text"]

# Where a suggested command takes the run's files: rules write "clauditor budget{run}" (or
# "{config}" for a command without --db), and :meth:`RunFiles.fill` puts the options there.
RUN_OPTIONS = "{run}"
CONFIG_OPTION = "{config}"


@dataclass(frozen=True)
class RunFiles:
    """The database and config file of the run, which every suggested command must carry.

    A "Next:" hint is pasted by someone in another folder or shell (a Slack reader, a cron
    job's owner), so it names both files outright as absolute paths, quoted for a POSIX shell:
    ``--db`` always, ``--config`` whenever the run read a config file. Without them the
    pasted command reads ./clauditor.duckdb and ./clauditor.toml, which may not be the ones
    that raised the alert.
    """

    db: Path | None = None
    config: Path | None = None

    def fill(self, step: str) -> str:
        """``step`` with its option placeholders replaced by this run's options."""
        config = "" if self.config is None else f" --config {_quoted(self.config)}"
        db = "" if self.db is None else f" --db {_quoted(self.db)}"
        return step.replace(RUN_OPTIONS, db + config).replace(CONFIG_OPTION, config)


def _quoted(path: Path) -> str:
    return shlex.quote(str(Path(path).resolve()))


# ``digest`` is not an incident's transition: it is the daily spend digest of
# ``clauditor report --notify`` (:mod:`clauditor.dashboards.digest`), which goes through the same
# outbox and sinks; it never opens an incident.
TRANSITIONS = ("start", "escalate", "resolve", "digest")
_ICONS = {
    "start": "[FIRING]",
    "escalate": "[ESCALATED]",
    "resolve": "[RESOLVED]",
    "digest": "[DAILY]",
}


@dataclass(frozen=True)
class AlertMessage:
    """One notification: an incident of ``rule`` on ``key`` started, escalated or resolved.

    ``fields`` are the key numbers as (label, value) pairs; ``next_steps`` say what to look at
    next (usually clauditor commands). ``incident`` identifies the incident on every host: the
    rule, the key and the moment its condition began. Times are aware UTC datetimes.
    """

    rule: str
    key: str
    incident: str
    transition: str
    level: int
    severity: str
    title: str
    summary: str
    started_at: dt.datetime
    as_of: dt.datetime
    fields: tuple[tuple[str, str], ...] = ()
    next_steps: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.transition not in TRANSITIONS:
            raise ValueError(f"transition must be one of {TRANSITIONS}, got {self.transition!r}")

    @property
    def transition_key(self) -> str:
        """The uniqueness key of this transition within its incident (``escalate:2``)."""
        return f"escalate:{self.level}" if self.transition == "escalate" else self.transition

    def to_json(self) -> str:
        """The message as JSON (times ISO 8601), scrubbed of anything that looks like a secret."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["as_of"] = self.as_of.isoformat()
        return scrub(json.dumps(data, default=str, sort_keys=True))

    @classmethod
    def from_json(cls, text: str) -> AlertMessage:
        """The message stored by :meth:`to_json`."""
        data = json.loads(text)
        data["started_at"] = dt.datetime.fromisoformat(data["started_at"])
        data["as_of"] = dt.datetime.fromisoformat(data["as_of"])
        data["fields"] = tuple((str(a), str(b)) for a, b in data.get("fields", ()))
        data["next_steps"] = tuple(data.get("next_steps", ()))
        return cls(**data)


def render_text(message: AlertMessage) -> str:
    """The message as plain text, scrubbed: what ``--dry-run`` prints and Slack's notification
    fallback."""
    lines = [f"{_ICONS[message.transition]} {message.title}", message.summary]
    lines += [f"  {label}: {value}" for label, value in message.fields]
    if message.next_steps:
        lines.append("Next: " + "; ".join(message.next_steps))
    return scrub("\n".join(line for line in lines if line))
