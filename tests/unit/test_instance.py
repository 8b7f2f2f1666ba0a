"""The state directory lock of ``wattpay up`` (fcntl.flock) and its state file."""

import os
import stat
from pathlib import Path

import pytest

from wattpay.instance import (
    LOCK_FILE,
    STATE_FILE,
    InstanceRunning,
    claim_state_dir,
    running_instance,
)


def test_one_holder_at_a_time_and_the_second_is_told_who(tmp_path: Path) -> None:
    first = claim_state_dir(tmp_path / "state")
    with pytest.raises(InstanceRunning, match=f"pid {os.getpid()}"):
        claim_state_dir(tmp_path / "state")  # flock is per open file: refused in-process too
    first.write_state({"pid": os.getpid(), "query": "http://127.0.0.1:9", "brokers": "b:9"})
    with pytest.raises(InstanceRunning, match="query http://127.0.0.1:9, brokers b:9"):
        claim_state_dir(tmp_path / "state")
    first.release()
    second = claim_state_dir(tmp_path / "state")
    assert second.held
    second.release()
    assert not second.held


def test_state_file_is_private_and_goes_with_the_lock(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / STATE_FILE).write_text("{}")
    os.chmod(state_dir / STATE_FILE, 0o644)
    lock = claim_state_dir(state_dir)
    lock.write_state({"pid": os.getpid(), "query": "http://127.0.0.1:9"})
    assert stat.S_IMODE((state_dir / STATE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / LOCK_FILE).stat().st_mode) == 0o600
    assert running_instance(state_dir) == {"pid": os.getpid(), "query": "http://127.0.0.1:9"}
    lock.release()
    assert not (state_dir / STATE_FILE).exists()
    assert running_instance(state_dir) is None
    assert sorted(p.name for p in state_dir.iterdir()) == [LOCK_FILE]
