"""Alert rules: parse and validate ``[alerts]`` (and ``[budget]``) from the configuration.

:class:`clauditor.config.Config` keeps ``[alerts]`` as a raw mapping; :func:`parse_rules` turns
it into :class:`AlertRules`, raising :class:`~clauditor.errors.ConfigError` naming the key.
Every rule table is optional: an absent table means the rule runs with the defaults below, and
``enabled = false`` switches a rule off. Durations are strings like ``"30s"``, ``"5m"``,
``"1h"``, ``"7d"``. The full syntax, with the defaults::

    [alerts]
    cooldown = "1h"        # an incident resolves once its condition has been clear this long;
                           # a relapse inside the cooldown continues the same incident
    lookback = "15m"       # `check` sees conditions active at any moment of the last 15 min:
                           # set it to at least your cron interval so nothing falls between runs

    [alerts.budget]        # dollars and thresholds come from [budget] / [budget.features]
    enabled = true         # on whenever [budget] monthly_usd or [budget.features] is set

    [alerts.forecast]      # the month-end forecast exceeds the monthly budget
    enabled = true
    min_days = 3           # no forecast from fewer days of the month than this
    margin = 1.0           # fire when forecast > margin x budget

    [alerts.error_rate]    # a sustained error rate, per error class over all calls
    threshold = 0.05       # failed / all calls in the window
    critical = 0.25        # escalates above this rate (omit: 0.25 when threshold < 0.25)
    window = "5m"          # whole minutes
    min_calls = 20         # episodes with fewer calls never fire
    min_errors = 5
    min_duration = "5m"    # the rate must stay above the threshold this long
    classes = ["overloaded", "rate_limited", "server_error", "timeout", "connection"]
                           # classes of clauditor.analytics.errors; "any" = all failures;
                           # "client_error" (your own 4xx) is left out by default

    [alerts.spike]         # an hour's spend far above its usual level, per feature
    by = "feature"         # or model, service, environment, user, code_location
    z = 6.0                # robust standard deviations above the baseline
    min_usd = 5.0          # and at least this many dollars above it
    baseline = "7d"        # trailing history the hour is compared with
    min_baseline = "24h"   # history a key needs before it can spike

    [alerts.cache]         # the cache hit ratio of a feature falls and stays down
    drop = 0.5             # relative fall: 0.8 -> 0.4 or lower
    window = "24h"         # hours compared before and after (the fall shows after a quarter)
    min_calls = 20         # on each side
    min_before_ratio = 0.2 # features that barely cache are not watched

    [alerts.unpriced_model]  # calls to a model that has no price (their cost is unknown)
    window = "7d"          # the alert holds while such calls were seen this recently

    [alerts.unmetered]     # Anthropic billed a UTC day more than clauditor metered
    threshold = 0.05       # unmetered dollars / the day's bill
    min_usd = 1.0          # and at least this many dollars
    days = 7               # the latest stored days of the bill looked at

    [alerts.price_drift]   # Anthropic charged a price clauditor's rate card does not have
    days = 7

    These two read the bill `clauditor reconcile --fetch` stored; with ``fetch_bill = true``
    under ``[alerts]`` and ``$ANTHROPIC_ADMIN_KEY`` set, `alerts check` fetches it first
    (the days not stored or not settled yet; never in a dry run). Without a stored bill they
    are silent. An episode starts on the first UTC day over the line and holds until a later
    stored day is clear; the bill of a day is visible once the day is over.

Rule names (the ``rule`` column of the ``alerts`` table and of backtests): :data:`RULE_NAMES`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clauditor.config import Config
from clauditor.errors import ConfigError

__all__ = [
    "DEFAULT_ERROR_CLASSES",
    "ERROR_CLASS_NAMES",
    "RULE_NAMES",
    "AlertRules",
    "BudgetRule",
    "CacheRule",
    "ErrorRateRule",
    "ForecastRule",
    "PriceDriftRule",
    "SpikeRule",
    "UnmeteredRule",
    "UnpricedModelRule",
    "parse_duration",
    "parse_rules",
]

RULE_NAMES = (
    "budget",
    "forecast",
    "error_rate",
    "spike",
    "cache",
    "unpriced_model",
    "unmetered",
    "price_drift",
)

# Failures that say the service (or the network) is unwell; a 400 is the caller's own bug and
# is left out by default so that one bad prompt template does not page anybody.
DEFAULT_ERROR_CLASSES = ("overloaded", "rate_limited", "server_error", "timeout", "connection")
ERROR_CLASS_NAMES = (*DEFAULT_ERROR_CLASSES, "client_error", "other", "any")
GROUP_KEYS = ("feature", "model", "service", "environment", "user", "code_location")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any, key: str = "duration", where: str = "config") -> dt.timedelta:
    """``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``, ``"2w"`` as a timedelta; a bare number is seconds.

    Raises :class:`ConfigError` naming ``key`` for anything else, or for a zero duration.
    """
    if isinstance(value, bool):
        raise ConfigError(f'{where}: {key} must be a duration like "5m", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(
                f'{where}: {key} must be a duration like "30s", "5m", "1h" or "7d", got {value!r}'
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{where}: {key} must be longer than 0, got {value!r}")
    return dt.timedelta(seconds=seconds)


@dataclass(frozen=True)
class BudgetRule:
    """Month-to-date spend crossing fractions of the monthly budget, total and per feature."""

    enabled: bool = True
    monthly_usd: float | None = None
    thresholds: tuple[float, ...] = (0.8, 1.0, 1.2)
    features: Mapping[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether there is any budget to watch."""
        return self.enabled and (self.monthly_usd is not None or bool(self.features))


@dataclass(frozen=True)
class ForecastRule:
    """The month-end spend forecast exceeds ``margin`` x the monthly budget."""

    enabled: bool = True
    min_days: float = 3.0
    margin: float = 1.0


@dataclass(frozen=True)
class ErrorRateRule:
    """A sustained error rate of each listed error class, over all calls."""

    enabled: bool = True
    threshold: float = 0.05
    critical: float | None = 0.25
    window: dt.timedelta = dt.timedelta(minutes=5)
    min_calls: int = 20
    min_errors: int = 5
    min_duration: dt.timedelta = dt.timedelta(minutes=5)
    classes: tuple[str, ...] = DEFAULT_ERROR_CLASSES


@dataclass(frozen=True)
class SpikeRule:
    """An hour's spend per ``by`` key far above its robust baseline."""

    enabled: bool = True
    by: str = "feature"
    z: float = 6.0
    min_usd: float = 5.0
    baseline: dt.timedelta = dt.timedelta(days=7)
    min_baseline: dt.timedelta = dt.timedelta(hours=24)


@dataclass(frozen=True)
class CacheRule:
    """A feature's cache hit ratio falls by the fraction ``drop`` and stays down."""

    enabled: bool = True
    drop: float = 0.5
    window: dt.timedelta = dt.timedelta(hours=24)
    min_calls: int = 20
    min_before_ratio: float = 0.2


@dataclass(frozen=True)
class UnpricedModelRule:
    """Calls to a model with no price seen within ``window``."""

    enabled: bool = True
    window: dt.timedelta = dt.timedelta(days=7)


@dataclass(frozen=True)
class UnmeteredRule:
    """A UTC day's bill exceeds what clauditor metered by ``threshold`` of it and ``min_usd``."""

    enabled: bool = True
    threshold: float = 0.05
    min_usd: float = 1.0
    days: int = 7


@dataclass(frozen=True)
class PriceDriftRule:
    """Anthropic's billed unit price of a model and token type differs from the rate card."""

    enabled: bool = True
    days: int = 7


@dataclass(frozen=True)
class AlertRules:
    """Every rule, validated, plus the state-machine timings (see the module docstring)."""

    cooldown: dt.timedelta = dt.timedelta(hours=1)
    lookback: dt.timedelta = dt.timedelta(minutes=15)
    timezone: str = "UTC"
    budget: BudgetRule = field(default_factory=BudgetRule)
    forecast: ForecastRule = field(default_factory=ForecastRule)
    error_rate: ErrorRateRule = field(default_factory=ErrorRateRule)
    spike: SpikeRule = field(default_factory=SpikeRule)
    cache: CacheRule = field(default_factory=CacheRule)
    unpriced_model: UnpricedModelRule = field(default_factory=UnpricedModelRule)
    unmetered: UnmeteredRule = field(default_factory=UnmeteredRule)
    price_drift: PriceDriftRule = field(default_factory=PriceDriftRule)
    fetch_bill: bool = False

    @property
    def history(self) -> dt.timedelta:
        """How much history before a moment the windowed rules need to judge it."""
        return max(
            self.error_rate.window + self.error_rate.min_duration,
            self.spike.baseline + dt.timedelta(hours=1),
            2 * self.cache.window,
            self.unpriced_model.window,
            self.cooldown,
            self.lookback,
        )


class _Table:
    """Reads one rule table, remembering which keys were used so leftovers can be reported."""

    def __init__(self, raw: Any, name: str, where: str, allowed: set[str]) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: [{name}] must be a table")
        unknown = set(raw) - allowed - {"enabled"}
        if unknown:
            raise ConfigError(
                f"{where}: [{name}] has unknown key(s) {sorted(unknown)}; "
                f"known: {sorted(allowed | {'enabled'})}"
            )
        self.raw, self.name, self.where = raw, name, where

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def enabled(self) -> bool:
        value = self.raw.get("enabled", True)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}: {self.key('enabled')} must be true or false")
        return value

    def number(
        self, key: str, default: float, *, low: float = 0.0, high: float | None = None
    ) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{self.where}: {self.key(key)} must be a number, got {value!r}")
        if value <= low or (high is not None and value > high):
            bound = f"greater than {low}" + (f" and at most {high}" if high is not None else "")
            raise ConfigError(f"{self.where}: {self.key(key)} must be {bound}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{self.where}: {self.key(key)} must be a whole number of at least 1, got {value!r}"
            )
        return value

    def duration(self, key: str, default: dt.timedelta) -> dt.timedelta:
        if key not in self.raw:
            return default
        return parse_duration(self.raw[key], self.key(key), self.where)


def _whole(value: dt.timedelta, unit_s: int, key: str, where: str) -> dt.timedelta:
    """``value`` if it is a whole number of ``unit_s`` seconds, else a ConfigError."""
    if value.total_seconds() % unit_s:
        unit = "minutes" if unit_s == 60 else "hours"
        raise ConfigError(f"{where}: {key} must be a whole number of {unit}")
    return value


def parse_rules(config: Config) -> AlertRules:
    """The validated alert rules of ``config`` (``[alerts]`` plus the ``[budget]`` dollars).

    Raises :class:`ConfigError` naming the file and the offending key.
    """
    where = str(config.source) if config.source else "config"
    raw = config.alerts or {}
    top = _Table(raw, "alerts", where, {"cooldown", "lookback", "fetch_bill", *RULE_NAMES})
    if "enabled" in raw:
        raise ConfigError(
            f"{where}: alerts.enabled is not a setting; switch rules off one by one with "
            "[alerts.<rule>] enabled = false"
        )

    budget_t = _Table(raw.get("budget", {}), "alerts.budget", where, set())
    budget = BudgetRule(
        enabled=budget_t.enabled(),
        monthly_usd=config.budget.monthly_usd,
        thresholds=tuple(config.budget.thresholds),
        features=dict(config.budget.features),
    )

    fc = _Table(raw.get("forecast", {}), "alerts.forecast", where, {"min_days", "margin"})
    forecast = ForecastRule(
        enabled=fc.enabled(),
        min_days=fc.number("min_days", 3.0, high=31.0),
        margin=fc.number("margin", 1.0),
    )

    er = _Table(
        raw.get("error_rate", {}),
        "alerts.error_rate",
        where,
        {"threshold", "critical", "window", "min_calls", "min_errors", "min_duration", "classes"},
    )
    threshold = er.number("threshold", 0.05, high=1.0)
    critical: float | None = None
    if "critical" in er.raw:
        critical = er.number("critical", 0.25, high=1.0)
    elif threshold < 0.25:
        critical = 0.25
    if critical is not None and critical <= threshold:
        raise ConfigError(
            f"{where}: alerts.error_rate.critical ({critical}) must be above "
            f"alerts.error_rate.threshold ({threshold})"
        )
    classes = er.raw.get("classes", list(DEFAULT_ERROR_CLASSES))
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
    ):
        raise ConfigError(
            f"{where}: alerts.error_rate.classes must be a non-empty list of error types like "
            f'["overloaded", "server_error"], got {classes!r}'
        )
    unknown_classes = sorted(set(classes) - set(ERROR_CLASS_NAMES))
    if unknown_classes:
        raise ConfigError(
            f"{where}: alerts.error_rate.classes has unknown class(es) {unknown_classes}; "
            f"known: {list(ERROR_CLASS_NAMES)}"
        )
    error_rate = ErrorRateRule(
        enabled=er.enabled(),
        threshold=threshold,
        critical=critical,
        window=_whole(er.duration("window", dt.timedelta(minutes=5)), 60, er.key("window"), where),
        min_calls=er.integer("min_calls", 20),
        min_errors=er.integer("min_errors", 5),
        min_duration=er.duration("min_duration", dt.timedelta(minutes=5)),
        classes=tuple(classes),
    )

    sp = _Table(
        raw.get("spike", {}),
        "alerts.spike",
        where,
        {"by", "z", "min_usd", "baseline", "min_baseline"},
    )
    by = sp.raw.get("by", "feature")
    if by not in GROUP_KEYS:
        raise ConfigError(f"{where}: alerts.spike.by must be one of {list(GROUP_KEYS)}, got {by!r}")
    spike = SpikeRule(
        enabled=sp.enabled(),
        by=by,
        z=sp.number("z", 6.0),
        min_usd=sp.number("min_usd", 5.0),
        baseline=_whole(
            sp.duration("baseline", dt.timedelta(days=7)), 3600, sp.key("baseline"), where
        ),
        min_baseline=_whole(
            sp.duration("min_baseline", dt.timedelta(hours=24)), 3600, sp.key("min_baseline"), where
        ),
    )

    ca = _Table(
        raw.get("cache", {}),
        "alerts.cache",
        where,
        {"drop", "window", "min_calls", "min_before_ratio"},
    )
    cache = CacheRule(
        enabled=ca.enabled(),
        drop=ca.number("drop", 0.5, high=1.0),
        window=_whole(ca.duration("window", dt.timedelta(hours=24)), 3600, ca.key("window"), where),
        min_calls=ca.integer("min_calls", 20),
        min_before_ratio=ca.number("min_before_ratio", 0.2, low=-1e-9, high=1.0),
    )

    um = _Table(raw.get("unpriced_model", {}), "alerts.unpriced_model", where, {"window"})
    unpriced = UnpricedModelRule(
        enabled=um.enabled(), window=um.duration("window", dt.timedelta(days=7))
    )

    un = _Table(
        raw.get("unmetered", {}), "alerts.unmetered", where, {"threshold", "min_usd", "days"}
    )
    unmetered = UnmeteredRule(
        enabled=un.enabled(),
        threshold=un.number("threshold", 0.05, high=1.0),
        min_usd=un.number("min_usd", 1.0, low=-1e-9),
        days=un.integer("days", 7),
    )
    pd = _Table(raw.get("price_drift", {}), "alerts.price_drift", where, {"days"})
    drift = PriceDriftRule(enabled=pd.enabled(), days=pd.integer("days", 7))
    fetch_bill = raw.get("fetch_bill", False)
    if not isinstance(fetch_bill, bool):
        raise ConfigError(f"{where}: alerts.fetch_bill must be true or false, got {fetch_bill!r}")

    return AlertRules(
        cooldown=top.duration("cooldown", dt.timedelta(hours=1)),
        lookback=top.duration("lookback", dt.timedelta(minutes=15)),
        timezone=config.timezone,
        budget=budget,
        forecast=forecast,
        error_rate=error_rate,
        spike=spike,
        cache=cache,
        unpriced_model=unpriced,
        unmetered=unmetered,
        price_drift=drift,
        fetch_bill=fetch_bill,
    )
