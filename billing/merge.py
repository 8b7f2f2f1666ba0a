"""The processing order of a replay's input streams (SPEC S11, S14.1), compiled with the rules.

Each stream is a file's numbered lines in its own order (like a topic partition). The merge
repeatedly applies the line at the head of the stream with the earliest timestamp (ties:
accounts, payments, readings, relay results); a line with no valid timestamp is applied as
soon as it is at the head. ``pipelines.replay_files`` opens the files and hands their lines
here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime

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

EPOCH = datetime(1970, 1, 1, tzinfo=LOCAL_ZONE)

Input = tuple[Envelope, Reading | None]
"""An input line as the merge hands it on: its envelope, and its reading when the line was
parsed straight from its text or bytes (``billing.messages.reading_text``, ``reading_line``)."""
Lines = Iterator[tuple[int, bytes | str]]
"""A stream's lines, numbered from 1."""
_Head = tuple[int, datetime, int, Lines, datetime | None, Input]
"""A stream's next line as the merge orders it: (no timestamp first, timestamp, topic order),
then the stream's numbered lines, the line's timestamp (None if it has none), the line."""


def merge_streams(streams: list[tuple[str, Lines]], rules: BillingRules | None) -> Iterator[Input]:
    """All lines of ``(topic, numbered lines)`` streams in processing order.

    With ``rules``, the usual reading lines come with their reading, parsed straight from
    their text or bytes. A stream goes on while its next line comes before the head of every
    other stream (the usual run of readings); the topics differ, so no two heads compare
    equal. Each envelope's ``received_at`` is the latest timestamp merged so far.
    """
    heads: list[_Head] = []
    for topic, lines in streams:
        first = _head(topic, lines, rules)
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
            if ts is not None:
                clock = ts
            envelope.received_at = clock  # made here for this merge alone, so set in place
            yield item
            head = _head(envelope.topic, head[3], rules)
            if head is not None and others is not None and others < head[:3]:
                heapq.heappush(heads, head)
                head = None


def _head(topic: str, lines: Lines, rules: BillingRules | None) -> _Head | None:
    """A stream's next line as a head of the merge; None at the end of the stream.

    With ``rules``, a usual reading line is parsed straight from its text or bytes.
    """
    if topic != READINGS:
        rules = None
    # The reading's own ts is the instant message_ts reads from the same text in its zone.
    own_ts = rules is not None and rules.zone is LOCAL_ZONE
    order = TOPIC_ORDER[topic]
    for number, line in lines:
        parsed = None
        if rules is not None:
            parsed = (
                reading_text(line, rules) if isinstance(line, str) else reading_line(line, rules)
            )
        ts: datetime | None
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
            return (0, EPOCH, order, lines, ts, (envelope, reading))
        return (1, ts, order, lines, ts, (envelope, reading))
    return None
