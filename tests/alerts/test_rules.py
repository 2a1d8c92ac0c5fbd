"""Rule parsing: sensible defaults, and errors that name the key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from clauditor.alerts.rules import DEFAULT_ERROR_CLASSES, parse_duration, parse_rules
from clauditor.config import load_config, parse_config
from clauditor.errors import ConfigError


def test_defaults_when_no_alerts_table() -> None:
    rules = parse_rules(parse_config({}))
    assert rules.cooldown == dt.timedelta(hours=1)
    assert rules.error_rate.threshold == 0.05 and rules.error_rate.critical == 0.25
    assert rules.error_rate.classes == DEFAULT_ERROR_CLASSES
    assert rules.spike.enabled and rules.cache.enabled and rules.unpriced_model.enabled
    assert not rules.budget.active  # no budget configured: nothing to watch


def test_full_syntax_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "clauditor.toml"
    path.write_text(
        """
timezone = "Europe/Berlin"
[budget]
monthly_usd = 1000
thresholds = [0.5, 0.9]
[budget.features]
search = 100
[alerts]
cooldown = "30m"
lookback = "5m"
[alerts.error_rate]
threshold = 0.01
window = "10m"
min_calls = 50
classes = ["overloaded", "any"]
[alerts.spike]
by = "model"
z = 4
[alerts.cache]
enabled = false
[alerts.unpriced_model]
window = "1d"
"""
    )
    rules = parse_rules(load_config(path))
    assert rules.timezone == "Europe/Berlin"
    assert rules.cooldown == dt.timedelta(minutes=30) and rules.lookback == dt.timedelta(minutes=5)
    assert rules.budget.active and rules.budget.thresholds == (0.5, 0.9)
    assert rules.budget.features == {"search": 100.0}
    assert rules.error_rate.window == dt.timedelta(minutes=10)
    assert rules.error_rate.classes == ("overloaded", "any")
    assert rules.spike.by == "model" and rules.spike.z == 4.0
    assert not rules.cache.enabled
    assert rules.unpriced_model.window == dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("alerts", "named"),
    [
        ({"colldown": "1h"}, "colldown"),
        ({"cooldown": "soon"}, "alerts.cooldown"),
        ({"cooldown": "0m"}, "alerts.cooldown"),
        ({"error_rate": {"threshold": 2}}, "alerts.error_rate.threshold"),
        ({"error_rate": {"threshold": 0.3, "critical": 0.2}}, "alerts.error_rate.critical"),
        ({"error_rate": {"classes": ["overloaded_eror"]}}, "overloaded_eror"),
        ({"error_rate": {"window": "90s"}}, "alerts.error_rate.window"),
        ({"error_rate": {"min_calls": 0}}, "alerts.error_rate.min_calls"),
        ({"spike": {"by": "colour"}}, "alerts.spike.by"),
        ({"spike": {"zz": 1}}, "zz"),
        ({"cache": {"enabled": "no"}}, "alerts.cache.enabled"),
        ({"forecast": "yes"}, "[alerts.forecast]"),
        ({"enabled": False}, "alerts.enabled"),
    ],
)
def test_invalid_rules_name_the_key(alerts: dict, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(parse_config({"alerts": alerts}))
    assert named in str(info.value)


def test_parse_duration() -> None:
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration("2w") == dt.timedelta(days=14)
    assert parse_duration(30) == dt.timedelta(seconds=30)
    with pytest.raises(ConfigError, match="step"):
        parse_duration("1 fortnight", "step")
