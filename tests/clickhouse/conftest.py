"""A fresh embedded ClickHouse (chDB) per test, through the same client a server uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clauditor.clickhouse import ClickHouse, connect


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[ClickHouse]:
    client = connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        yield client
    finally:
        client.close()
