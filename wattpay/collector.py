"""The garbage collector tuned for processes that hold every account's state.

CPython's default thresholds (700, 10, 10) run a young collection every 700 net
allocations, and every 100 of those a full one over every live object once enough new
objects have survived. A billing process keeps each account's state (a few dozen objects)
for its whole life and allocates many short-lived objects per message, so with a city's
accounts in memory the collector walked the flow's live objects again and again.

Young collections every 100,000 net allocations (BENCHMARKS.md, "Garbage collection"):
the 274,000-account live burst and a 2-process replay are faster, and a replay's peak
memory is that of (20,000, 10, 10). Rarer collections once doubled a replay's peak memory,
but that was the driver's insert contexts: each kept a batch's columns in a reference
cycle until a full collection (``store.clickhouse._release`` now lets them go at once).
"""

from __future__ import annotations

import gc

YOUNG, MIDDLE, OLD = 100_000, 10, 10


def tune_for_long_lived_state() -> None:
    """Collect young objects every 100,000 net allocations instead of every 700."""
    gc.set_threshold(YOUNG, MIDDLE, OLD)
