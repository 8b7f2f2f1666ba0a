"""The processing order of a replay's input streams (SPEC S11, S14.1), compiled with the rules.

Each stream is a file's numbered lines in its own order (like a topic partition). The merge
repeatedly applies the line at the head of the stream with the earliest timestamp (ties:
accounts, payments, readings, relay results); a line with no valid timestamp is applied as
soon as it is at the head. ``pipelines.replay_files`` opens the files and hands their lines
here.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from datetime import datetime

from billing.clock import LOCAL_ZONE, TimestampError, parse_ts
from billing.messages import (
    READINGS,
    TOPIC_ORDER,
    Envelope,
    Reading,
    matched_reading,
    message_ts,
    reading_line,
    reading_match,
    reading_text,
)
from billing.rules import BillingRules

EPOCH = datetime(1970, 1, 1, tzinfo=LOCAL_ZONE)

Input = tuple[Envelope, Reading | None]
"""An input line as the merge hands it on: its envelope, and its reading when the line was
parsed straight from its text or bytes (``billing.messages.reading_text``, ``reading_line``)."""
Lines = Iterator[tuple[int, bytes | str]]
"""A stream's lines, numbered from 1."""


class ReadingLine:
    """A usual reading line merged by its meter and timestamp alone (``merge_streams(light=True)``).

    A process that bills some accounts only makes the envelope and reading of the lines it
    bills (``line_input``): the others' lines cost it their match and timestamp.
    """

    number: int
    match: re.Match[str]
    meter_id: str
    ts: datetime
    received_at: datetime

    def __init__(self, number: int, match: re.Match[str], ts: datetime) -> None:
        self.number = number
        self.match = match
        self.meter_id = match.group("meter")
        self.ts = ts  # the instant, in LOCAL_ZONE (as ``message_ts`` reads it)
        self.received_at = EPOCH


Merged = Input | ReadingLine
"""What ``merge_streams`` yields: an input line, or (light) a usual reading line unparsed."""
_Head = tuple[int, datetime, int, Lines, datetime | None, Merged, str]
"""A stream's next line as the merge orders it: (no timestamp first, timestamp, topic order),
then the stream's numbered lines, the line's timestamp (None if it has none), the line and
its topic."""


def line_input(line: ReadingLine, rules: BillingRules) -> tuple[Envelope, Reading]:
    """The envelope and reading the merge would have made of ``line`` (its ``received_at`` too)."""
    # The merge read its instant in LOCAL_ZONE: the reading's own, in that zone.
    parsed = matched_reading(line.match, rules, line.ts if rules.zone is LOCAL_ZONE else None)
    assert parsed is not None  # noqa: S101 - its timestamp parsed when it was merged
    payload, reading = parsed
    position = f"{READINGS}:{line.number}"
    return Envelope(READINGS, position, line.match.string, line.received_at, payload), reading


def merge_streams(
    streams: list[tuple[str, Lines]], rules: BillingRules | None, *, light: bool = False
) -> Iterator[Merged]:
    """All lines of ``(topic, numbered lines)`` streams in processing order.

    With ``rules``, the usual reading lines come with their reading, parsed straight from
    their text or bytes; ``light``, the usual reading lines of text come as ``ReadingLine``
    (their meter and timestamp, the rest made by ``line_input`` where needed). A stream goes
    on while its next line comes before the head of every other stream (the usual run of
    readings); the topics differ, so no two heads compare equal. Each envelope's
    ``received_at`` is the latest timestamp merged so far.
    """
    heads: list[_Head] = []
    for topic, lines in streams:
        first = _head(topic, lines, rules, light)
        if first is not None:
            heads.append(first)
    heapq.heapify(heads)
    clock = EPOCH
    while heads:
        head: _Head | None = heapq.heappop(heads)
        others = heads[0][:3] if heads else None  # what the next line must come before
        while head is not None:
            ts, item, topic = head[4], head[5], head[6]
            if ts is not None:
                clock = ts
            # Made here for this merge alone, so set in place.
            if isinstance(item, ReadingLine):
                item.received_at = clock
            else:
                item[0].received_at = clock
            yield item
            head = _head(topic, head[3], rules, light)
            if head is not None and others is not None and others < head[:3]:
                heapq.heappush(heads, head)
                head = None


def _head(topic: str, lines: Lines, rules: BillingRules | None, light: bool) -> _Head | None:
    """A stream's next line as a head of the merge; None at the end of the stream.

    With ``rules``, a usual reading line is parsed straight from its text or bytes (or,
    ``light``, only matched and its timestamp read when it is text).
    """
    if topic != READINGS:
        rules = None
    # The reading's own ts is the instant message_ts reads from the same text in its zone.
    own_ts = rules is not None and rules.zone is LOCAL_ZONE
    light = light and rules is not None
    order = TOPIC_ORDER[topic]
    for number, line in lines:
        if light and isinstance(line, str):
            match = reading_match(line)
            if match is not None:
                try:
                    moment = parse_ts(match.group("ts"))
                except TimestampError:
                    moment = None  # refused by the general path, with its reason
                if moment is not None:
                    item = ReadingLine(number, match, moment)
                    return (1, moment, order, lines, moment, item, topic)
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
            return (0, EPOCH, order, lines, ts, (envelope, reading), topic)
        return (1, ts, order, lines, ts, (envelope, reading), topic)
    return None
