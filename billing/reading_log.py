"""The accepted readings of one meter, kept compactly to tell duplicates from conflicts (S14.3)."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime

from billing.clock import MICROSECOND

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // MICROSECOND


@dataclass(slots=True)
class ReadingLog:
    """Accepted (timestamp, register) pairs in time order: 16 bytes a reading.

    Only the newest ``limit`` readings are kept (the default keeps more than a year of
    quarter-hour readings); an exact repeat of an older one is then ``out_of_order``.
    """

    limit: int
    stamps: array = field(default_factory=lambda: array("q"))
    milli: array = field(default_factory=lambda: array("q"))

    def energy_at(self, ts: datetime) -> int | None:
        """The register (0.001 kWh) accepted at ``ts``, if any."""
        key = _micros(ts)
        index = bisect_left(self.stamps, key)
        if index < len(self.stamps) and self.stamps[index] == key:
            return self.milli[index]
        return None

    def add(self, ts: datetime, milli: int) -> None:
        """Record an accepted reading (newer than every one recorded)."""
        self.stamps.append(_micros(ts))
        self.milli.append(milli)
        if len(self.stamps) > 2 * self.limit:
            del self.stamps[: -self.limit]
            del self.milli[: -self.limit]
