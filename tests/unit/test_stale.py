"""Pid files of the embedded servers: a leftover is stopped, a server in use is not."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wattpay.stale import StateDirInUse, reap_stale, record_pid

SERVER = [sys.executable, "-c", "import time; time.sleep(60)", "stale-test-server"]


def spawn() -> subprocess.Popen[bytes]:
    process = subprocess.Popen(SERVER)
    deadline = time.monotonic() + 10
    while b"stale-test-server" not in Path(f"/proc/{process.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process


def test_a_server_whose_owner_is_gone_is_stopped(tmp_path: Path) -> None:
    server = spawn()
    owner = subprocess.Popen([sys.executable, "-c", "pass"])
    owner.wait()
    (tmp_path / "s.pid").write_text(f"{server.pid} {owner.pid}\n")
    reap_stale(tmp_path / "s.pid", "stale-test-server", 5.0)
    assert server.wait(5) == -15
    assert not (tmp_path / "s.pid").exists()


def test_a_server_whose_owner_runs_is_left_alone(tmp_path: Path) -> None:
    server, owner = spawn(), spawn()
    try:
        (tmp_path / "s.pid").write_text(f"{server.pid} {owner.pid}\n")
        with pytest.raises(StateDirInUse):
            reap_stale(tmp_path / "s.pid", "stale-test-server", 5.0)
        assert server.poll() is None
    finally:
        for process in (server, owner):
            process.kill()
            process.wait()


def test_a_pid_file_of_another_program_is_dropped(tmp_path: Path) -> None:
    server = spawn()
    try:
        record_pid(tmp_path / "s.pid", server.pid)
        reap_stale(tmp_path / "s.pid", "weed server", 5.0)  # not that program: not touched
        assert server.poll() is None
        assert not (tmp_path / "s.pid").exists()
    finally:
        server.kill()
        server.wait()


def test_a_pid_file_is_never_seen_empty(tmp_path: Path) -> None:
    """Written beside and renamed: a reader finds the old pids or the new ones, never nothing."""
    (tmp_path / "s.pid").write_text("1 2\n")
    record_pid(tmp_path / "s.pid", 4242)
    assert (tmp_path / "s.pid").read_text() == f"4242 {os.getpid()}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.pid"]  # nothing left beside it
