"""Replay input: the JSONL files merged into processing order (SPEC S11, S14.1).

Each file is a stream in its own line order (like a topic partition). The merge repeatedly
applies the message at the head of the stream with the earliest timestamp (ties: accounts,
payments, readings, relay results); a line with no valid timestamp is applied as soon as it
is at the head. The relay results file is optional (S2): without it, cuts are confirmed by
the grace period of S14.16 (``has_command_results``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from billing.clock import LOCAL_ZONE
from billing.messages import TOPIC_ORDER, Envelope, message_ts
from bus.topics import BILLING_INPUTS, RESULTS

REPLAY_FILES = {t.name: t.file_name() for t in BILLING_INPUTS}
"""Every file a replay reads: the three inputs and the optional relay results."""
RESULTS_FILE = REPLAY_FILES[RESULTS.name]
INPUT_FILES = {name: file for name, file in REPLAY_FILES.items() if name != RESULTS.name}
EPOCH = datetime(1970, 1, 1, tzinfo=LOCAL_ZONE)


def input_lines(path: Path) -> Iterator[bytes]:
    r"""The lines of an input file as bytes: split on b"\n" only, so ``wc -l`` counts them.

    A ``\r`` inside a line does not split it, an empty line is a line, and a last line
    without its newline still counts (``wc -l`` plus one).
    """
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            yield line[:-1] if line.endswith(b"\n") else line


def _envelopes(topic: str, path: Path) -> Iterator[tuple[datetime | None, Envelope]]:
    """Envelopes of one file in line order, each with its timestamp (None if it has none)."""
    for number, line in enumerate(input_lines(path), start=1):
        envelope = Envelope.decode(topic, f"{topic}:{number}", line, EPOCH)
        yield message_ts(envelope), envelope


def count_lines(directory: Path) -> int:
    """How many input lines a replay directory holds (every line is applied or rejected).

    Counted as ``input_lines`` splits them: each newline, plus a last line without one.
    """
    total = 0
    for name in REPLAY_FILES.values():
        path = directory / name
        if path.exists():
            last = b"\n"
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):  # newlines counted in C, a MiB at a time
                    total += chunk.count(b"\n")
                    last = chunk[-1:]
            total += last != b"\n"
    return total


_Head = tuple[int, datetime, int, int, datetime | None, Envelope]
"""A stream's next line as the merge orders it: (no-ts first, ts, topic order, line count, …)."""


def merged_envelopes(directory: Path) -> Iterator[Envelope]:
    """All input envelopes of a replay directory in processing order."""
    streams = {topic: _envelopes(topic, directory / name) for topic, name in REPLAY_FILES.items()}
    heads: list[_Head] = []
    clock = EPOCH
    counter = 0

    def head_of(topic: str) -> _Head | None:
        nonlocal counter
        for ts, envelope in streams[topic]:
            counter += 1
            # A line without a timestamp sorts first: it is applied as soon as it is at the head.
            rank = 0 if ts is None else 1
            return (rank, ts or EPOCH, TOPIC_ORDER[topic], counter, ts, envelope)
        return None

    for topic in streams:
        first = head_of(topic)
        if first is not None:
            heapq.heappush(heads, first)
    while heads:
        head: _Head | None = heapq.heappop(heads)
        while head is not None:
            ts, envelope = head[4], head[5]
            clock = ts or clock
            envelope.received_at = clock  # made above for this merge alone, so set in place
            yield envelope
            head = head_of(envelope.topic)
            # The same stream goes on while its head comes before every other head (the
            # usual run of readings); the counters differ, so no two heads compare equal.
            if head is not None and heads and heads[0] < head:
                heapq.heappush(heads, head)
                head = None


def has_command_results(directory: Path) -> bool:
    """True when a replay directory has a relay results file (S14.16 confirms cuts by it)."""
    return (directory / RESULTS_FILE).exists()
