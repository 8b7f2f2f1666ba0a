"""The Bytewax recovery store of the live billing flow (SPEC S10).

Snapshots are pickled account and directory states, so a store written by a release whose
state layout differs cannot be resumed. The store records the layout it was made with
(``FORMAT``), and a store of another layout is refused with what to do, rather than sending
the billing process into a restart loop.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from config.errors import OperatorError

RECOVERY_PARTITIONS = 4
STATE_FORMAT = "6"
"""The layout of the pickled states; raise it whenever billing/ state classes change shape."""
FORMAT_FILE = "FORMAT"


def ensure_recovery_dir(path: Path, partitions: int = RECOVERY_PARTITIONS) -> Path:
    """Create and initialise the Bytewax recovery store once; later runs resume from it.

    The processes of a cluster share one store and start at the same moment: the check and
    the initialisation happen under a file lock, so none of them sees a half-made store.
    """
    path.mkdir(parents=True, exist_ok=True)
    with (path / ".init.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _checked_or_initialised(path, partitions)


def _checked_or_initialised(path: Path, partitions: int) -> Path:
    from bytewax.recovery import init_db_dir

    marker = path / FORMAT_FILE
    if not any(path.glob("part-*.sqlite3")):
        marker.write_text(STATE_FORMAT + "\n", encoding="utf-8")
        init_db_dir(path, partitions)
        return path
    found = marker.read_text(encoding="utf-8").strip() if marker.is_file() else "1"
    if found != STATE_FORMAT:
        raise OperatorError(
            f"the recovery snapshots in {path} were written by an older wattpay (state format "
            f"{found}, this one reads {STATE_FORMAT}); remove that directory and start again: "
            "billing then re-reads its input topics from the start and re-emits the same ids"
        )
    return path
