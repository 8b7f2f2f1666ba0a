"""What the notification worker tracks of its topics: events open, and how far it may commit.

A partition's committed position is the oldest event still open on it: everything below has
an outcome (or is held on its own topic) and those records are confirmed by the broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bus.kafka import GroupReader, Record


@dataclass
class Event:
    """One message read: waiting for ``waiting`` channels, then committed on its stream."""

    record: Record
    received: float
    waiting: int
    stream: Stream
    failures: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False


class Positions:
    """Per partition, the offsets in flight; what may be committed is below the oldest."""

    def __init__(self) -> None:
        self.pending: dict[int, set[int]] = {}
        self.next: dict[int, int] = {}
        self.committed: dict[int, int] = {}

    def start(self, partition: int, offset: int) -> None:
        self.pending.setdefault(partition, set()).add(offset)
        self.next[partition] = max(self.next.get(partition, 0), offset + 1)

    def finish(self, partition: int, offset: int) -> None:
        if partition in self.pending:  # not if the partition went to another worker
            self.pending[partition].discard(offset)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions now another worker's: their progress is its to record."""
        for partition in partitions:
            for table in (self.pending, self.next, self.committed):
                table.pop(partition, None)

    def committable(self) -> dict[int, int]:
        ready = {}
        for partition, upto in self.next.items():
            pending = self.pending.get(partition)
            position = min(pending) if pending else upto
            if position > self.committed.get(partition, -1):
                ready[partition] = position
        return ready


@dataclass
class Stream:
    """One topic the worker reads as a group member: its reader, positions and events open."""

    name: str
    limit: int
    reader: GroupReader | None = None
    positions: Positions = field(default_factory=Positions)
    in_flight: int = 0

    @property
    def room(self) -> int:
        """How many more events this stream may open."""
        return self.limit - self.in_flight
