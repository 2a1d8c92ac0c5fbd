"""The spool beside the database loads back only the batches clauditor spooled itself.

A file dropped into the spool folder by anything else (a valid-looking calls schema without
the spool's marker, extra, missing or mistyped columns, a file that is no Parquet at all) is
moved to ``rejected/``, recorded in ``quarantine`` with its reason, and never merged into
``calls``; the batches the spool wrote still load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from clauditor.schema import CALLS_SCHEMA
from clauditor.store import drain_spool, load_calls, read_connection, spool_dir, write_calls
from tests.test_store import LockHolder


def _costs(db: Path) -> tuple[int, float]:
    frame = load_calls(db, columns=["cost_usd"])
    return frame.height, float(frame["cost_usd"].sum())


def _spool_while_locked(db: Path, frame: pl.DataFrame) -> None:
    """Spool ``frame`` the way an exporter does: the file is busy, so the batch waits."""
    holder = LockHolder(db)
    try:
        assert write_calls(db, frame, timeout_s=0.2, spool_on_busy=True).spooled == frame.height
    finally:
        holder.release()


def _foreign_name() -> str:
    """A name like the spool's own: the name alone lets nothing in."""
    return f"{time.time_ns():020d}-{os.getpid()}-0badf00d.parquet"


def test_a_hand_written_batch_without_the_marker_is_never_merged(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({"feature": "chat"}))
    before = _costs(db_path)
    spool = spool_dir(db_path)
    spool.mkdir()
    # Exactly the calls schema, plausible rows with invented spend: only the marker is missing.
    forged = make_calls({"feature": "chat"}, {"feature": "chat"}).with_columns(
        pl.lit(1_000_000.0).alias("cost_usd")
    )
    assert forged.schema == CALLS_SCHEMA
    forged.write_parquet(spool / _foreign_name())

    drain_spool(db_path)

    assert _costs(db_path) == before
    assert list(spool.glob("*.parquet")) == []
    assert len(list((spool / "rejected").iterdir())) == 1
    with read_connection(db_path) as con:
        reasons = con.execute("SELECT origin, reason FROM quarantine").fetchall()
    assert len(reasons) == 1
    assert "rejected" in reasons[0][0] and "no clauditor spool marker" in reasons[0][1]


def _marked(frame: pl.DataFrame, path: Path) -> None:
    """``frame`` written with the spool's marker, as a batch of another schema would be (an
    older clauditor's, or a forger's)."""
    table = frame.to_arrow()
    pq.write_table(table.replace_schema_metadata({b"clauditor.spool": b"calls-batch-1"}), path)


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        pytest.param(
            lambda frame, path: _marked(frame.with_columns(pl.lit(1).alias("bonus")), path),
            "extra bonus",
            id="extra-column",
        ),
        pytest.param(
            lambda frame, path: _marked(frame.drop("cost_usd"), path),
            "missing cost_usd",
            id="missing-column",
        ),
        pytest.param(
            lambda frame, path: _marked(
                frame.with_columns(pl.col("cost_usd").cast(pl.String)), path
            ),
            "mistyped cost_usd",
            id="mistyped-column",
        ),
        pytest.param(
            lambda frame, path: path.write_text("span_id,cost_usd\nx,1e6\n"),
            "unreadable",
            id="not-parquet",
        ),
        pytest.param(
            lambda frame, path: path.write_bytes(b"PAR1" + os.urandom(200) + b"PAR1"),
            "unreadable",
            id="corrupt-parquet",
        ),
    ],
)
def test_foreign_files_are_quarantined_and_good_batches_still_load(
    db_path: Path, make_calls, write: Callable[[pl.DataFrame, Path], object], reason: str
) -> None:
    write_calls(db_path, make_calls({}))
    good = make_calls({}, {})
    _spool_while_locked(db_path, good)
    spool = spool_dir(db_path)
    write(
        make_calls({}).with_columns(pl.lit(1_000_000.0).alias("cost_usd")), spool / _foreign_name()
    )
    assert len(list(spool.glob("*.parquet"))) == 2

    result = drain_spool(db_path)

    assert result.inserted == 2  # the spooled batch, and only it
    height, usd = _costs(db_path)
    assert height == 3 and usd < 1.0
    assert list(spool.glob("*.parquet")) == []
    with read_connection(db_path) as con:
        [(why,)] = con.execute("SELECT reason FROM quarantine").fetchall()
    assert reason in why, why


def test_a_batch_spooled_by_clauditor_still_loads(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({}))
    _spool_while_locked(db_path, make_calls({}, {}))
    [spooled] = spool_dir(db_path).glob("*.parquet")
    assert b"clauditor.spool" in spooled.read_bytes()  # the marker travels in the file
    result = drain_spool(db_path)
    assert (result.inserted, result.duplicates) == (2, 0)
    assert load_calls(db_path).height == 3
    assert not (spool_dir(db_path) / "rejected").exists()
