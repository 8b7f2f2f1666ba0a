"""Test order: the modules of slow and live tests first.

``make test`` spreads whole modules over two workers (pytest-xdist, ``--dist loadfile``),
in collection order. A module of long waits on processes and the broker that starts last
would run on alone after everything else is done; started first, the short modules fill
in around it.
"""

from __future__ import annotations

import pytest

LONG_RUNNING = ("slow", "live")


def _long_running_modules(items: list[pytest.Item]) -> set[str]:
    """Paths of the modules holding at least one test marked slow or live."""
    return {
        str(item.path)
        for item in items
        if any(item.get_closest_marker(name) for name in LONG_RUNNING)
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the long-running modules to the front, each module's tests kept in their order."""
    first = _long_running_modules(items)
    items.sort(key=lambda item: str(item.path) not in first)
