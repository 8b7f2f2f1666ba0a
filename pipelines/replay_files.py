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
from billing.messages import (
    READINGS,
    TOPIC_ORDER,
    Envelope,
    Reading,
    message_ts,
    reading_line,
    reading_text,
)
from billing.rules import BillingRules
from bus.topics import BILLING_INPUTS, RESULTS

REPLAY_FILES = {t.name: t.file_name() for t in BILLING_INPUTS}
"""Every file a replay reads: the three inputs and the optional relay results."""
RESULTS_FILE = REPLAY_FILES[RESULTS.name]
INPUT_FILES = {name: file for name, file in REPLAY_FILES.items() if name != RESULTS.name}
EPOCH = datetime(1970, 1, 1, tzinfo=LOCAL_ZONE)


def input_lines(path: Path) -> Iterator[bytes]:
    r"""The lines of an input file as bytes: split on b"\n" only, so ``wc -l`` counts them.

    A ``\r`` inside a line does not split it, an empty line is a line, and a last line
    without its newline still counts (``wc -l`` plus one). Read a MiB at a time and split
    in C; a line longer than that is joined once, however long.
    """
    for lines in _line_blocks(path):
        yield from lines.split(b"\n")


def input_texts(path: Path) -> Iterator[bytes | str]:
    """``input_lines``, but the lines of an ASCII block come as text, decoded once a block.

    Text is what the merge reads the usual reading line from (``reading_text``); the lines
    of a block with any other byte stay bytes.
    """
    for lines in _line_blocks(path):
        yield from lines.decode("ascii").split("\n") if lines.isascii() else lines.split(b"\n")


def _line_blocks(path: Path) -> Iterator[bytes]:
    r"""A file's bytes in blocks of whole lines without their last newline (a MiB or so).

    The last block is what follows the last newline, if anything. A line longer than a
    read is joined once, however long.
    """
    if not path.exists():
        return
    with path.open("rb") as handle:
        pending: list[bytes] = []  # the start of a line that goes on in the next block
        while block := handle.read(1 << 20):
            end = block.rfind(b"\n")
            if end < 0:
                pending.append(block)
                continue
            if pending:
                pending.append(block[:end])
                yield b"".join(pending)
            else:
                yield block[:end]
            pending = [block[end + 1 :]]
        last = b"".join(pending)
        if last:
            yield last


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


Input = tuple[Envelope, Reading | None]
"""An input line as the merge hands it on: its envelope, and its reading when the line was
parsed straight from its text or bytes (``billing.messages.reading_text``, ``reading_line``)."""
_Head = tuple[int, datetime, int, Iterator[tuple[int, bytes | str]], datetime | None, Input]
"""A stream's next line as the merge orders it: (no timestamp first, timestamp, topic order),
then the stream's numbered lines, the line's timestamp (None if it has none), the line."""


def merged_envelopes(directory: Path) -> Iterator[Envelope]:
    """All input envelopes of a replay directory in processing order."""
    for envelope, _ in merged_inputs(directory):
        yield envelope


def merged_inputs(directory: Path, rules: BillingRules | None = None) -> Iterator[Input]:
    """All input lines of a replay directory in processing order.

    With ``rules``, the usual reading lines come with their reading, parsed straight from
    their bytes. A stream goes on while its next line comes before the head of every other
    stream (the usual run of readings); the topics differ, so no two heads compare equal.
    """
    heads: list[_Head] = []
    for topic, name in REPLAY_FILES.items():
        first = _head(topic, enumerate(input_texts(directory / name), start=1), rules)
        if first is not None:
            heads.append(first)
    heapq.heapify(heads)
    clock = EPOCH
    while heads:
        head: _Head | None = heapq.heappop(heads)
        others = heads[0][:3] if heads else None  # what the next line must come before
        while head is not None:
            ts, item = head[4], head[5]
            envelope = item[0]
            clock = ts or clock
            envelope.received_at = clock  # made here for this merge alone, so set in place
            yield item
            head = _head(envelope.topic, head[3], rules)
            if head is not None and others is not None and others < head[:3]:
                heapq.heappush(heads, head)
                head = None


def _head(
    topic: str, lines: Iterator[tuple[int, bytes | str]], rules: BillingRules | None
) -> _Head | None:
    """A stream's next line as a head of the merge; None at the end of the stream.

    With ``rules``, a usual reading line is parsed straight from its text or bytes.
    """
    if topic != READINGS:
        rules = None
    # The reading's own ts is the instant message_ts reads from the same text in its zone.
    own_ts = rules is not None and rules.zone is LOCAL_ZONE
    for number, line in lines:
        if rules is None:
            parsed = None
        elif isinstance(line, str):
            parsed = reading_text(line, rules)
        else:
            parsed = reading_line(line, rules)
        if parsed is None:
            envelope = Envelope.decode(topic, f"{topic}:{number}", line, EPOCH)
            reading = None
            ts = message_ts(envelope)
        else:
            payload, reading = parsed
            raw = line if isinstance(line, str) else line.decode("ascii")
            envelope = Envelope(topic, f"{topic}:{number}", raw, EPOCH, payload)
            ts = reading.ts if own_ts else message_ts(envelope)
        # A line without a timestamp sorts first: it is applied as soon as it is at the head.
        if ts is None:
            return (0, EPOCH, TOPIC_ORDER[topic], lines, ts, (envelope, reading))
        return (1, ts, TOPIC_ORDER[topic], lines, ts, (envelope, reading))
    return None


def has_command_results(directory: Path) -> bool:
    """True when a replay directory has a relay results file (S14.16 confirms cuts by it)."""
    return (directory / RESULTS_FILE).exists()
