"""The state directory of a running ``wattpay up``: where its endpoints are written down."""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_FILE = "up.json"


def running_instance(state_dir: Path = Path(".wattpay")) -> dict[str, object] | None:
    """The endpoints of a ``wattpay up`` running from this directory, if one is."""
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state
