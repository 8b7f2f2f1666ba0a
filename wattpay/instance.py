"""The state directory of a running ``wattpay up``: its lock and where its endpoints are.

One ``wattpay up`` per state directory: it holds ``up.lock`` (``fcntl.flock``) for as long as it
runs, and writes its endpoints to ``up.json`` (mode 0600, no secrets). A second ``up`` on the
same directory finds the lock held, says who holds it, and leaves every file as it is.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from config.errors import OperatorError

STATE_FILE = "up.json"
LOCK_FILE = "up.lock"


class InstanceRunning(OperatorError):
    """Another ``wattpay up`` holds this state directory."""


class StateDirLock:
    """The held lock of a state directory; `release` when the instance stops."""

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """Whether this process still holds the lock."""
        return self._fd is not None

    def write_state(self, state: dict[str, object]) -> None:
        """Write ``up.json`` readable by this user only, replacing it in one step."""
        path = self.state_dir / STATE_FILE
        temporary = path.with_name(f".{STATE_FILE}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(state, file, indent=2)
        os.chmod(temporary, 0o600)  # in case it existed with a wider mode
        os.replace(temporary, path)

    def release(self) -> None:
        """Remove ``up.json`` and let the lock go (the lock file stays, empty)."""
        if self._fd is None:
            return
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


def claim_state_dir(state_dir: Path) -> StateDirLock:
    """Hold ``state_dir`` for this process, or raise InstanceRunning naming who holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise InstanceRunning(_held_message(state_dir, holder)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return StateDirLock(state_dir, fd)


def _held_message(state_dir: Path, pid: str) -> str:
    """Who holds the directory, with the endpoints it wrote (if it has written them yet)."""
    state = _read_state(state_dir) or {}
    where = ", ".join(
        f"{name} {state[name]}" for name in ("query", "brokers") if state.get(name) is not None
    )
    return (
        f"another wattpay up (pid {state.get('pid', pid)}) is running from {state_dir}"
        + (f": {where}" if where else "")
        + "; stop it first or give another --state-dir"
    )


def _read_state(state_dir: Path) -> dict[str, object] | None:
    try:
        state = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def running_instance(state_dir: Path = Path(".wattpay")) -> dict[str, object] | None:
    """The endpoints of a ``wattpay up`` running from this directory, if one is."""
    state = _read_state(state_dir)
    try:
        os.kill(int(state["pid"]), 0)  # type: ignore[index, arg-type]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state
