"""Pid files of the embedded servers, so a run after a crash waits for its predecessors.

A SIGKILL of ``wattpay up`` leaves its broker and S3 store to exit on their own (they are
told to when their parent dies); the next start must not open the same data while they
still shut down.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def record_pid(path: Path, pid: int) -> None:
    """Write down the process id of a server just started, and of the process that owns it.

    Written beside and renamed into place: a reader (or a kill at that moment) never finds
    the file empty, which would leave the server unknown to ``reap_stale`` after a crash.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(f"{pid} {os.getpid()}\n", encoding="utf-8")
    os.replace(partial, path)


class StateDirInUse(RuntimeError):
    """Another live process owns the servers of this state directory."""


def _alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose command line holds ``marker``."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return False
    return marker in command and state != "Z"


def reap_stale(path: Path, marker: str, grace: float) -> None:
    """Stop the server of a pid file if it outlived its owner: SIGTERM, ``grace`` s, SIGKILL.

    Raises `StateDirInUse` when its owner still runs: that server is in use.
    """
    try:
        pid, owner = (int(n) for n in path.read_text(encoding="utf-8").split())
    except (OSError, ValueError):
        return
    if not _alive(pid, marker):
        path.unlink(missing_ok=True)
        return
    if owner != os.getpid() and _alive(owner, ""):
        raise StateDirInUse(f"process {owner} still runs the server {pid} of {path.parent}")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _alive(pid, marker):
            break
        try:
            os.kill(pid, sig)
        except OSError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid, marker):
            time.sleep(0.1)
    path.unlink(missing_ok=True)
