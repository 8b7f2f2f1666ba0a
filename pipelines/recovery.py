"""The Bytewax recovery store of the live billing flow (SPEC S10)."""

from __future__ import annotations

from pathlib import Path

RECOVERY_PARTITIONS = 4


def ensure_recovery_dir(path: Path, partitions: int = RECOVERY_PARTITIONS) -> Path:
    """Create and initialise the Bytewax recovery store once; later runs resume from it."""
    from bytewax.recovery import init_db_dir

    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, partitions)
    return path
