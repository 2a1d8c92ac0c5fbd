"""Fixtures for the alert tests: a fake Slack, a recorded sleep, small databases of calls."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.fakeslack import FakeWebhook


@pytest.fixture
def slack() -> Iterator[FakeWebhook]:
    """A fake Slack incoming webhook on 127.0.0.1 that validates payloads."""
    server = FakeWebhook(slack=True)
    yield server
    server.close()


@pytest.fixture
def hook() -> Iterator[FakeWebhook]:
    """A fake generic JSON webhook on 127.0.0.1."""
    server = FakeWebhook(slack=False)
    yield server
    server.close()


class Sleeps(list):
    """Records the delays asked for instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    """An injectable ``sleep`` that records and returns at once."""
    return Sleeps()


@pytest.fixture
def at() -> dt.datetime:
    """The day every synthetic scenario happens on."""
    return dt.datetime(2026, 10, 5, tzinfo=dt.UTC)


@pytest.fixture
def sample_toml() -> Path:
    """The committed sample's configuration."""
    return Path(__file__).resolve().parents[2] / "sample_logs" / "clauditor.toml"
