"""Live input: the three input topics merged into one ordered stream (SPEC S2, S10, S14.1).

Every topic partition is a stream in its own offset order, like a replay file. While
partitions hold a backlog, the source applies the head with the earliest timestamp (ties:
accounts, payments, readings), exactly as a replay merges its files, so a backlog, a restart
after a crash, or a second run over the same topics gives the same order and therefore the
same balances. A partition that has been read to its end does not hold the others back:
caught up, messages are applied in arrival order (S14.1 "live mode").

The position (next offset per partition) is the resume state Bytewax snapshots with every
epoch, so recovery re-reads exactly what the snapshot's state has not seen.

A partition counts as read to its end when the broker said so, or when it has been silent
for a while (``bus.kafka.PartitionEnds``). Both can be wrong for a moment around a broker
restart: an end reported before the broker went away says nothing of what landed since,
and a partition the restarted broker is slow to serve is silent. So once every broker was
lost, the first answer after it makes every partition report again (a fresh end, a record
or fresh silence), and a partition that has not answered at all since the source started
holds the merge for ``FIRST_ANSWER_SECONDS`` before it counts as at its end.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from itertools import count

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from billing.clock import LOCAL_ZONE
from billing.messages import TOPIC_ORDER, Envelope, message_ts
from bus.kafka import (
    KafkaError,
    Message,
    PartitionEnds,
    assign,
    consumer_lag,
    is_end_of_partition,
    is_every_broker_down,
    new_consumer,
)
from pipelines.metrics import Metrics

POLL_BATCH = 2000
GAP_SECONDS = 5.0
"""A partition silent this long counts as caught up: it may sit in an offset gap, where the
embedded broker never reports an end (``bus.kafka.PartitionEnds``), and must not stop billing."""
FIRST_ANSWER_SECONDS = 30.0
"""How long a partition that has sent neither a record nor its end since the source started
holds the merge: its broker may still be reading a backlog from a store that restarted."""
LAG_EVERY_SECONDS = 1.0
RECEIVE_MAX_BYTES = 2**31 - 1  # librdkafka's maximum
EMIT_LIMIT = 5000


_Head = tuple[int, datetime, int, int, str, int, Envelope]
"""A fetched message as the merge orders it: (no-ts first, ts, topic order, sequence, then
its partition key, offset and envelope). Compared as a tuple, in C; the sequence is unique,
so no two heads ever compare the fields after it."""


class _MergedPartition(StatefulSourcePartition[Envelope, dict[str, int]]):
    def __init__(
        self,
        config: Mapping[str, str],
        topics: Mapping[str, str],
        resume: dict[str, int] | None,
        fresh: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._logical = {full: logical for logical, full in topics.items()}
        # Read a message of any size the broker holds: one larger than the default 100 MB
        # would stall its partition, and with it the merged stream, for good.
        self._consumer = new_consumer(
            config,
            "wattpay-billing-input",
            end_of_partition=True,
            extra={
                "receive.message.max.bytes": str(RECEIVE_MAX_BYTES),
                "error_cb": self._client_error,
            },
        )
        self._broker_lost = False
        self._positions: dict[str, int] = dict(resume or {})
        self._buffers: dict[str, deque[_Head]] = {}
        self._sequence = count()
        self._metrics = metrics
        self._lag_at = 0.0
        assignments = []
        metadata = self._consumer.list_topics(timeout=10)
        for full in topics.values():
            partitions = metadata.topics[full].partitions if full in metadata.topics else {}
            for partition in sorted(partitions):
                key = f"{full}:{partition}"
                # Fresh topics (an in-memory broker restarted) start over; the account
                # state restored from the snapshot carries on.
                offset = None if fresh else self._positions.get(key)
                self._buffers[key] = deque()
                assignments.append((full, partition, offset))
        assign(self._consumer, assignments)
        self._ends = PartitionEnds(
            self._buffers, quiet=GAP_SECONDS, first_quiet=FIRST_ANSWER_SECONDS
        )

    def _client_error(self, error: KafkaError) -> None:
        """Called by the client within ``consume``: a broker gone means ends gone stale."""
        if is_every_broker_down(error):
            self._broker_lost = True

    def next_batch(self) -> list[Envelope]:
        lost = self._broker_lost  # set by the client within an earlier ``consume``
        messages = self._consumer.consume(POLL_BATCH, 0.05)
        received_at = datetime.now(LOCAL_ZONE)  # one instant for what one poll returned
        if lost and messages:  # the first answer since every broker was lost
            self._broker_lost = False
            self._ends.restart()
        for message in messages:
            key = f"{message.topic()}:{message.partition()}"
            error = message.error()
            if error is not None:
                if is_end_of_partition(error):
                    self._ends.end(key)
                    continue
                raise RuntimeError(f"consuming {key}: {error}")
            self._ends.record(key)
            self._buffers[key].append(self._head(key, message, received_at))
        emitted = self._emit()
        if self._metrics is not None and time.monotonic() >= self._lag_at:
            self._lag_at = time.monotonic() + LAG_EVERY_SECONDS
            self._report_lag(self._metrics)
        return emitted

    def _report_lag(self, metrics: Metrics) -> None:
        """Input messages not yet billed, per topic: fetched and waiting, plus not yet fetched."""
        behind: dict[str, int] = {}
        for key, buffer in self._buffers.items():
            full, partition = key.rsplit(":", 1)
            lag = len(buffer)
            if not self._ends.at_end(key):  # at its end (or in a gap) nothing is left to fetch
                lag += consumer_lag(self._consumer, full, [int(partition)]).get(int(partition), 0)
            topic = self._logical[full]
            behind[topic] = behind.get(topic, 0) + lag
        for topic, lag in behind.items():
            metrics.of(metrics.input_lag, topic).set(lag)

    def _head(self, key: str, message: Message, received_at: datetime) -> _Head:
        topic = self._logical[message.topic()]
        offset = message.offset()
        # The value's bytes as they are: any content is applied or rejected, never raised on.
        raw = message.value() or b""
        envelope = Envelope.decode(topic, f"{key}:{offset}", raw, received_at)
        ts = message_ts(envelope)
        rank = 0 if ts is None else 1
        return (
            rank,
            ts or received_at,
            TOPIC_ORDER[topic],
            next(self._sequence),
            key,
            offset,
            envelope,
        )

    def _emit(self) -> list[Envelope]:
        """The heads in merge order while every partition not at its end has one waiting."""
        emitted: list[Envelope] = []
        live = [key for key in self._buffers if not self._ends.at_end(key)]
        if any(not self._buffers[key] for key in live):
            return emitted  # a partition with more to come holds the merge
        live_keys = set(live)
        heads = [buffer[0] for buffer in self._buffers.values() if buffer]
        heapq.heapify(heads)
        while heads and len(emitted) < EMIT_LIMIT:
            _, _, _, _, key, offset, envelope = heapq.heappop(heads)
            buffer = self._buffers[key]
            buffer.popleft()
            self._positions[key] = offset + 1
            emitted.append(envelope)
            if buffer:
                heapq.heappush(heads, buffer[0])
            elif key in live_keys:
                break
        return emitted

    def snapshot(self) -> dict[str, int]:
        return dict(self._positions)

    def close(self) -> None:
        self._consumer.close()


class MergedKafkaSource(FixedPartitionedSource[Envelope, dict[str, int]]):
    """The readings, payments and accounts topics as one ordered, resumable stream."""

    def __init__(
        self,
        config: Mapping[str, str],
        topics: Mapping[str, str],
        *,
        fresh_topics: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = dict(config)
        self.topics = dict(topics)
        self.fresh_topics = fresh_topics
        self.metrics = metrics

    def list_parts(self) -> list[str]:
        return ["merged-input"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict[str, int] | None
    ) -> _MergedPartition:
        return _MergedPartition(
            self.config, self.topics, resume_state, self.fresh_topics, self.metrics
        )
