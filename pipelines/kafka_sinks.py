"""Bytewax sinks of the live billing flow: topic messages (S7) and analytics facts to Kafka.

Producing is asynchronous; every partition waits for delivery of all it produced when the
epoch ends (its snapshot), so a recovery snapshot never runs ahead of what reached the broker
(at-least-once; repeated messages carry the same ids, S10).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from zlib import adler32

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from billing.outputs import Row, TopicMessage
from bus.kafka import KafkaException, encode_json, new_producer
from bus.topics import FACTS
from store.facts import encode_facts

SINK_PARTITIONS = 4
# The largest message these producers send. A rejected input travels whole on the DLQ and the
# facts topic, JSON-escaped (up to six times its size), so a large input near the broker's
# limit still produces: librdkafka's maximum, never the 1 MB default.
MAX_MESSAGE_BYTES = 1_000_000_000


class _Producing(StatefulSinkPartition[object, None]):
    """One producer; a call's batches are encoded by the owning sink's ``encode``."""

    def __init__(
        self,
        config: Mapping[str, str],
        encode: Callable[[list[list[object]]], Iterable[tuple[str, str, bytes]]],
    ) -> None:
        self._producer = new_producer(config, extra={"message.max.bytes": str(MAX_MESSAGE_BYTES)})
        self._encode = encode
        self._errors: list[str] = []

    def _delivered(self, error: object, _message: object) -> None:
        if error is not None:
            self._errors.append(str(error))

    def write_batch(self, items: list[list[object]]) -> None:
        for topic, key, value in self._encode(items):
            while True:
                try:
                    self._producer.produce(
                        topic, value=value, key=key.encode(), on_delivery=self._delivered
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
        self._producer.poll(0)

    def snapshot(self) -> None:
        remaining = self._producer.flush(60)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise KafkaException(f"{remaining} messages undelivered; errors: {errors[:3]}")

    def close(self) -> None:
        self.snapshot()


class _KafkaSink(FixedPartitionedSink[object, None]):
    def __init__(self, config: Mapping[str, str]) -> None:
        self.config = dict(config)

    def list_parts(self) -> list[str]:
        return [str(i) for i in range(SINK_PARTITIONS)]

    def part_fn(self, item_key: str) -> int:
        return adler32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Producing:
        return _Producing(self.config, self.encode)

    def encode(self, batches: list[list[object]]) -> Iterable[tuple[str, str, bytes]]:
        """The messages ``(topic, key, value)`` of one call's batches."""
        raise NotImplementedError


class KafkaMessageSink(_KafkaSink):
    """Notifications, meter commands, payment requests and the DLQ, on their topics.

    Takes ``(topic, [TopicMessage, …])`` batches as the billing flow emits them; the logical topic
    names of the messages get the configured ``prefix``.
    """

    def __init__(self, config: Mapping[str, str], prefix: str) -> None:
        super().__init__(config)
        self.prefix = prefix

    def encode(self, batches: list[list[object]]) -> Iterable[tuple[str, str, bytes]]:
        for item in (item for batch in batches for item in batch):
            message = item if isinstance(item, TopicMessage) else item[1]  # type: ignore[index]
            yield self.prefix + message.topic, message.key, encode_json(message.value)


class KafkaFactSink(_KafkaSink):
    """Every analytics row, as facts on ``<prefix>facts`` for the ClickHouse loader.

    Takes ``(key, [Row, …])`` batches; a call's rows leave as batch messages, up to
    ``store.facts.FACTS_PER_MESSAGE`` rows of one table each (``store.facts.encode_facts``).
    """

    def __init__(self, config: Mapping[str, str], prefix: str) -> None:
        super().__init__(config)
        self.topic = FACTS.full_name(prefix)

    def encode(self, batches: list[list[object]]) -> Iterable[tuple[str, str, bytes]]:
        rows = [row for batch in batches for row in batch]
        assert all(isinstance(row, Row) for row in rows)  # noqa: S101 - the flow sends rows
        return [(self.topic, key, value) for key, value in encode_facts(rows)]  # type: ignore[arg-type]
