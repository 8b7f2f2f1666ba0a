"""The accepted readings of one meter, kept compactly to tell duplicates from conflicts (S14.3).

Readings are stored as deltas in a byte string (docs/billing-rules.md #6): each one is
``varint(zigzag(Δ energy) · 2 + 1)`` when it keeps the meter's cadence (the same gap as the
previous one), otherwise ``varint(zigzag(Δ energy) · 2)`` followed by
``varint(zigzag(gap − previous gap))``. A quarter-hour meter thus costs about 2 bytes a
reading. Every ``BLOCK`` readings a checkpoint keeps the absolute values, so a lookup decodes
at most one block and old blocks are dropped whole.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

BLOCK = 64
"""Readings per checkpoint; fewer than ``2 · BLOCK`` readings beyond ``limit`` are kept."""


def _put(out: bytearray, value: int) -> None:
    """Append a non-negative int as a little-endian base-128 varint."""
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


@dataclass(slots=True)
class ReadingLog:
    """Accepted (timestamp µs, register 0.001 kWh) pairs of one meter, in time order.

    At least the newest ``limit`` readings are kept; an exact repeat of an older one is then
    ``out_of_order``. ``last_*`` are the newest reading and its gap to the one before.
    """

    limit: int
    data: bytearray = field(default_factory=bytearray)
    count: int = 0
    last_stamp: int = 0
    last_milli: int = 0
    last_gap: int = 0
    blocks: array = field(default_factory=lambda: array("q"))
    """Per block, 4 ints: the state before its first reading (stamp, register, gap), offset."""

    def __getstate__(self) -> tuple[object, ...]:
        """Its fields as a tuple: pickled with every account snapshot, so kept cheap."""
        return (
            self.limit,
            bytes(self.data),
            self.count,
            self.last_stamp,
            self.last_milli,
            self.last_gap,
            self.blocks.tobytes(),
        )

    def __setstate__(self, packed: tuple[Any, ...]) -> None:
        limit, data, self.count, self.last_stamp, self.last_milli, self.last_gap, blocks = packed
        self.limit = limit
        self.data = bytearray(data)
        self.blocks = array("q")
        self.blocks.frombytes(blocks)

    def energy_at(self, key: int) -> int | None:
        """The register (0.001 kWh) accepted at ``key`` (µs since the epoch), if any."""
        if key >= self.last_stamp:  # the common case: newer than anything accepted
            return self.last_milli if key == self.last_stamp and self.count else None
        blocks = self.blocks
        block = 4 * (bisect_left(range(len(blocks) // 4), key, key=lambda b: blocks[4 * b]) - 1)
        if block < 0:
            return None
        stamp, milli, gap, pos = blocks[block : block + 4]
        data = self.data
        end = blocks[block + 7] if block + 4 < len(blocks) else len(data)
        while pos < end:
            head, pos = _get(data, pos)
            milli += _unzigzag(head >> 1)
            if not head & 1:
                change, pos = _get(data, pos)
                gap += _unzigzag(change)
            stamp += gap
            if stamp >= key:
                return milli if stamp == key else None
        return None

    def add(self, stamp: int, milli: int) -> None:
        """Record an accepted reading at ``stamp`` µs (newer than every one recorded)."""
        if self.count % BLOCK == 0:
            self._checkpoint()
        gap = stamp - self.last_stamp
        delta = _zigzag(milli - self.last_milli) * 2
        if gap == self.last_gap:
            _put(self.data, delta + 1)
        else:
            _put(self.data, delta)
            _put(self.data, _zigzag(gap - self.last_gap))
        self.last_stamp, self.last_milli, self.last_gap = stamp, milli, gap
        self.count += 1

    def _checkpoint(self) -> None:
        """Start a block; drop the oldest one when the rest still hold ``limit`` readings."""
        blocks = self.blocks
        blocks.extend((self.last_stamp, self.last_milli, self.last_gap, len(self.data)))
        if self.count - BLOCK >= self.limit:
            cut = blocks[7]
            del self.data[:cut]
            del blocks[:4]
            for index in range(3, len(blocks), 4):
                blocks[index] -= cut
            self.count -= BLOCK


def _get(data: bytearray, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return (value, next position)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
