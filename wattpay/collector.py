"""The garbage collector tuned for processes that hold every account's state.

CPython's default thresholds (700, 10, 10) run a young collection every 700 net
allocations, and every 100 of those a full one over every live object once enough new
objects have survived. A billing process keeps each account's state (a few dozen objects)
for its whole life and allocates a few short-lived objects per message, so with a city's
accounts in memory the collector walked the flow's live objects again and again:
BENCHMARKS.md "Garbage collection" measures a replay 1.2× faster with these thresholds and
the same peak memory. Much rarer collections (100,000, 50, 100) were faster still (1.3×,
and a 60,000-account live burst 1.4×) but doubled the replay's peak memory: garbage in reference
cycles waited too long to be freed.
"""

from __future__ import annotations

import gc

YOUNG, MIDDLE, OLD = 20_000, 10, 10


def tune_for_long_lived_state() -> None:
    """Collect young objects every 20,000 net allocations instead of every 700."""
    gc.set_threshold(YOUNG, MIDDLE, OLD)
