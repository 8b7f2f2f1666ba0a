"""Which stored batches retention may remove, and its settings (wattpay/retention.py)."""

from __future__ import annotations

import pickle
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings
from wattpay.retention import Batch, recovery_positions, removable

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def batches(*pairs: tuple[int, int]) -> list[Batch]:
    """Batches from (first offset, hours ago)."""
    return [Batch(offset, NOW - timedelta(hours=age), f"k{offset}") for offset, age in pairs]


def offsets(found: list[Batch]) -> list[int]:
    return [b.offset for b in found]


def test_a_batch_goes_only_when_wholly_below_the_bound_and_old_enough() -> None:
    stored = batches((0, 50), (10, 40), (25, 30), (40, 1))
    cutoff = NOW - timedelta(hours=24)
    assert offsets(removable(stored, 25, cutoff)) == [0, 10]  # 10..24 ends below 25
    assert offsets(removable(stored, 24, cutoff)) == [0]  # 10..24 is not wholly below 24
    assert offsets(removable(stored, 0, cutoff)) == []
    assert offsets(removable(stored, 1000, cutoff)) == [0, 10, 25]  # the young one stays
    assert offsets(removable(stored, 1000, NOW)) == [0, 10, 25]  # the last one always stays
    assert offsets(removable(stored, None, cutoff)) == [0, 10, 25]  # no consumer: age alone
    assert offsets(removable(list(reversed(stored)), 25, cutoff)) == [0, 10]
    assert removable([], 10, cutoff) == []


def test_positions_come_from_every_source_snapshot_kept(tmp_path: Path) -> None:
    for index, state in enumerate(
        [({"t.readings:0": 40, "t.readings:1": 7}, 47), ({"t.readings:0": 30}, 30)]
    ):
        connection = sqlite3.connect(tmp_path / f"part-{index}.sqlite3")
        connection.execute(
            "CREATE TABLE snaps (step_id TEXT, state_key TEXT, snap_epoch INT, ser_change BLOB)"
        )
        connection.execute(
            "INSERT INTO snaps VALUES ('x.input', 'merged-input', 3, ?)", (pickle.dumps(state),)
        )
        connection.commit()
        connection.close()
    assert recovery_positions(tmp_path) == {"t.readings:0": 30, "t.readings:1": 7}
    assert recovery_positions(tmp_path / "none") is None


def test_a_snapshot_holding_anything_but_positions_is_refused(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "part-0.sqlite3")
    connection.execute("CREATE TABLE snaps (state_key TEXT, ser_change BLOB)")
    connection.execute("INSERT INTO snaps VALUES ('merged-input', ?)", (pickle.dumps(Path("/")),))
    connection.commit()
    connection.close()
    with pytest.raises(pickle.UnpicklingError):
        recovery_positions(tmp_path)


def test_retention_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "wattpay.toml"
    path.write_text("[retention]\nderived_hours = 2\ninput_days = 0.5\nenabled = false\n")
    settings = load_settings(str(path), env={})
    assert settings.retention.derived_hours == 2 and settings.retention.input_days == 0.5
    assert not settings.retention.enabled
    assert load_settings(None, env={}).retention.input_days == 7
    path.write_text('[retention]\nderived_hours = -1\ninput_days = "x"\ninterval_seconds = 0\n')
    with pytest.raises(SettingsError) as raised:
        load_settings(str(path), env={})
    assert len(raised.value.problems) == 3
