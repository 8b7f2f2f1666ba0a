"""Every confluent-kafka call of wattpay: client settings, topics, a JSON producer, a reader.

Every client is made here: consumers by ``new_consumer``, producers by ``new_producer``,
admin clients inside ``cluster_info`` and ``ensure_topics``; other modules use these and the
small assignment helpers below and import nothing from confluent-kafka themselves. Messages
are JSON objects in UTF-8 (``encode_json``): decimals as strings, timestamps as ISO-8601 with
their offset, keys as UTF-8 text (meter id or account id).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Consumer, Message, Producer and KafkaException are imported from here by the modules that
# hold these clients or catch their errors, so that no other module imports confluent_kafka.
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from billing.outputs import json_default
from bus.topics import CATALOGUE, Topic
from config.errors import OperatorError
from config.settings import Settings

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """Messages were not confirmed by the cluster; ``failures`` lists why, one line each."""

    def __init__(self, failures: list[str], undelivered: int = 0) -> None:
        shown = "; ".join(failures[:5]) + (f" (+{len(failures) - 5} more)" if failures[5:] else "")
        parts = [f"{len(failures)} failed: {shown}"] if failures else []
        if undelivered:
            parts.append(f"{undelivered} not confirmed before the timeout")
        super().__init__("Kafka delivery failed: " + ", ".join(parts))
        self.failures = failures
        self.undelivered = undelivered


class NoBrokers(OperatorError, ValueError):
    """No Kafka brokers were configured for a command that needs them."""


def kafka_config(settings: Settings) -> dict[str, str]:
    """Client settings: ``bootstrap.servers`` from the brokers, then ``[kafka.client]`` verbatim."""
    config = {"bootstrap.servers": settings.brokers, **settings.kafka}
    if not config["bootstrap.servers"]:
        raise NoBrokers("no Kafka brokers configured (--brokers HOST:PORT or WATTPAY_BROKERS)")
    return config


def new_consumer(
    config: Mapping[str, str],
    group: str,
    *,
    end_of_partition: bool = False,
    extra: Mapping[str, str] | None = None,
) -> Consumer:
    """A consumer in ``group`` that commits only when told and starts at the earliest offset.

    Partitions are assigned by the caller (``assign``/``assign_committed``), never by a group
    rebalance. ``end_of_partition`` reports reaching a partition's end as an error message
    (``is_end_of_partition``). ``extra`` client settings override everything else.
    """
    return Consumer(
        {
            **config,
            "group.id": group,
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": "true" if end_of_partition else "false",
            **(extra or {}),
        }
    )


def new_producer(config: Mapping[str, str], *, extra: Mapping[str, str] | None = None) -> Producer:
    """A producer with a 5 ms linger; ``extra`` client settings override the config."""
    return Producer({"linger.ms": "5", **config, **(extra or {})})


def partitions_of(consumer: Consumer, topic: str, *, timeout: float = 10.0) -> list[int]:
    """The topic's partition numbers in order; empty when the topic does not exist (yet)."""
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return []
    return sorted(metadata.partitions)


def assign(consumer: Consumer, starts: Iterable[tuple[str, int, int | None]]) -> None:
    """Assign ``(topic, partition, offset)`` triples; an offset of None means the beginning."""
    consumer.assign(
        [
            TopicPartition(topic, partition, OFFSET_BEGINNING if offset is None else offset)
            for topic, partition, offset in starts
        ]
    )


def assign_committed(
    consumer: Consumer, topic: str, partitions: Sequence[int], *, timeout: float = 10.0
) -> None:
    """Assign ``partitions`` at the group's committed offsets (the beginning where none)."""
    committed = consumer.committed(
        [TopicPartition(topic, p) for p in partitions], timeout=max(timeout, 0.1)
    )
    assign(
        consumer, ((topic, tp.partition, tp.offset if tp.offset >= 0 else None) for tp in committed)
    )


def assign_at_end(consumer: Consumer, topic: str, partitions: Sequence[int]) -> None:
    """Assign ``partitions`` at their current end: only messages produced from now are read."""
    ends = []
    for partition in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        ends.append((topic, partition, high))
    assign(consumer, ends)


def commit_positions(consumer: Consumer, positions: Mapping[tuple[str, int], int]) -> None:
    """Commit the next offset to read for each ``(topic, partition)``, synchronously."""
    consumer.commit(
        offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()], asynchronous=False
    )


def committed_offsets(
    config: Mapping[str, str], group: str, topic: str, *, timeout: float = 10.0
) -> dict[int, int]:
    """The next offset ``group`` has committed per partition of ``topic`` (if it has one)."""
    consumer = new_consumer(config, group)
    try:
        partitions = [TopicPartition(topic, p) for p in partitions_of(consumer, topic)]
        committed = consumer.committed(partitions, timeout=timeout) if partitions else []
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}


def is_end_of_partition(error: KafkaError) -> bool:
    """True for the end-of-partition marker (not a failure)."""
    return error.code() == KafkaError._PARTITION_EOF


def is_every_broker_down(error: KafkaError) -> bool:
    """True for the client error saying it has lost every broker connection.

    Not for one connection closed (``_TRANSPORT``), which a broker does to an idle client.
    """
    return error.code() == KafkaError._ALL_BROKERS_DOWN


def topic_names(settings: Settings, topics: Iterable[Topic] = CATALOGUE) -> list[str]:
    """Full topic names (with the configured prefix), every topic of the catalogue by default."""
    return [settings.topic(t.name) for t in topics]


@dataclass(frozen=True)
class ClusterInfo:
    """What the cluster's metadata says: its id, broker addresses and partitions per topic."""

    cluster_id: str | None
    brokers: tuple[str, ...]
    topics: dict[str, int]


ADMIN_LOG_LEVEL = 5


def quiet_admin(config: Mapping[str, str]) -> dict[str, str]:
    """An admin client's settings with librdkafka's informational lines off.

    A short-lived admin client logs its own teardown at level 6 straight to stderr ("Purging
    N unserved events from background queue"), which lands among a command's output; its
    notices, warnings and errors (levels 5 and below) are still printed.
    """
    given = str(config.get("log_level", "6")).strip()
    if not given.isdigit():
        return dict(config)  # librdkafka reports the setting it cannot use
    return {**config, "log_level": str(min(int(given), ADMIN_LOG_LEVEL))}


def cluster_info(config: Mapping[str, str], *, timeout: float = 5.0) -> ClusterInfo:
    """Ask the cluster for its metadata; raises ``KafkaException`` if none answers in time."""
    metadata = AdminClient(quiet_admin(config)).list_topics(timeout=timeout)
    return ClusterInfo(
        cluster_id=metadata.cluster_id,
        brokers=tuple(f"{b.host}:{b.port}" for b in metadata.brokers.values()),
        topics={
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None
        },
    )


class BrokersUnreachable(OperatorError):
    """No broker of the configured cluster answered."""


def require_brokers(config: Mapping[str, str], *, timeout: float = 10.0) -> ClusterInfo:
    """The cluster's metadata, or BrokersUnreachable saying which brokers did not answer.

    The probe runs with librdkafka's own log lines off, so the operator reads one line.
    """
    try:
        return cluster_info({**config, "log_level": "0"}, timeout=timeout)
    except KafkaException as err:
        reason = err.args[0].str() if err.args and hasattr(err.args[0], "str") else str(err)
        raise BrokersUnreachable(
            f"Kafka brokers {config.get('bootstrap.servers')} did not answer within {timeout:g}s "
            f"({reason}); check --brokers or WATTPAY_BROKERS"
        ) from None


def ensure_topics(
    config: Mapping[str, str],
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    *,
    timeout: float = 10.0,
) -> list[str]:
    """Create the topics that do not exist yet and wait until all are in the metadata.

    Existing topics are left as they are (their partition count is not changed). Returns the
    names created now.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    deadline = time.monotonic() + timeout
    admin = AdminClient(quiet_admin(config))  # must outlive the futures below
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication) for name in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        # exception() rather than result(): a raised-and-caught error would tie this frame,
        # and with it the admin client and its connection, into a reference cycle.
        error = future.exception(timeout=max(deadline - time.monotonic(), 0.1))
        if error is None:
            created.append(name)
        elif not (
            isinstance(error, KafkaException)
            and error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
        ):
            raise error
    del admin, futures
    while True:
        visible = cluster_info(config, timeout=max(deadline - time.monotonic(), 0.1)).topics
        missing = [n for n in wanted if visible.get(n, 0) < (partitions if n in created else 1)]
        if not missing:
            return [n for n in wanted if n in created]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not visible in metadata after {timeout}s: {missing}")
        time.sleep(0.05)


def encode_json(value: Mapping[str, Any]) -> bytes:
    """A message payload as UTF-8 JSON in the dict's own key order (decimals as strings)."""
    return json.dumps(value, ensure_ascii=False, default=json_default).encode("utf-8")


def _delivery_recorder(
    failures: list[str], acknowledged: dict[tuple[str, int], int]
) -> Callable[[KafkaError | None, Message], None]:
    """A delivery callback: failures appended, and per partition the end acknowledged.

    ``acknowledged`` gets the offset after the last message the broker confirmed. A closure,
    so the producer holds no reference cycle.
    """

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            key = message.key()
            shown = key.decode("utf-8", "replace") if key is not None else None
            failures.append(f"{message.topic()} key={shown!r}: {error.str()}")
            return
        where = (message.topic(), message.partition())
        offset = message.offset()
        if offset is not None and offset >= 0:
            acknowledged[where] = max(acknowledged.get(where, 0), offset + 1)

    return delivered


PUBLISHER_SETTINGS = {
    "enable.idempotence": "false",
    "acks": "all",
    "max.in.flight.requests.per.connection": "1",
    "linger.ms": "5",
}
"""``JsonProducer``'s client settings (see its docstring for why not idempotent)."""


class JsonProducer:
    """Publishes JSON messages; ``flush`` confirms delivery and raises on any failure.

    The client is created at the first ``send``. As a context manager it flushes on a clean
    exit and always closes.

    It is not an idempotent producer. The durable embedded broker (Tansu on its S3 store)
    records an idempotent producer's sequence before it writes the batch: a store that dies
    in between fences the producer for good, or has it told that a batch landed that never
    did. So every message waits for all replicas (``acks=all``), one request is in flight
    (order kept through retries), and the caller sends again what ``flush`` reports unsent.
    A copy that results is handled like any repeated message: an input copy is rejected by
    the S6/S14 rules, an output copy carries the same deterministic id.
    """

    def __init__(self, config: Mapping[str, str], *, flush_timeout: float = 30.0) -> None:
        self.config = {**PUBLISHER_SETTINGS, **config}
        self.flush_timeout = flush_timeout
        self.failures: list[str] = []
        self.acknowledged: dict[tuple[str, int], int] = {}
        """Per (topic, partition): the offset after the last message the broker acknowledged.

        An end that does not depend on what the broker reports later (``PartitionEnds``)."""
        self._producer: Producer | None = None
        self._on_delivery = _delivery_recorder(self.failures, self.acknowledged)

    def __enter__(self) -> JsonProducer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()

    def send(self, topic: str, key: str | None, value: Mapping[str, Any]) -> None:
        """Queue one message; the key is UTF-8 text (meter or account id)."""
        self.send_encoded(topic, key, encode_json(value))

    def send_encoded(self, topic: str, key: str | None, payload: bytes) -> None:
        """Queue one message already encoded (a fact, ``store.facts.encode_fact``)."""
        if self._producer is None:
            self._producer = new_producer(self.config)
        raw_key = key.encode("utf-8") if key is not None else None
        while True:
            try:
                self._producer.produce(topic, payload, raw_key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued message; raise ``DeliveryError`` if any failed or is pending.

        The failures reported are cleared, so a later flush reports only new ones.
        """
        remaining = 0
        if self._producer is not None:
            remaining = self._producer.flush(self.flush_timeout if timeout is None else timeout)
        if remaining or self.failures:
            failures = list(self.failures)
            self.failures.clear()
            raise DeliveryError(failures, remaining)

    def close(self) -> None:
        """Release the client; messages still queued (not flushed) are dropped."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()
            producer.close()


QUIET_SECONDS = 2.0
"""How long a partition may send nothing before a reader takes it as read to its end."""


class PartitionEnds:
    """Which partitions a reader has read to their end: by the broker's word, or by silence.

    The embedded broker's ends are not to be trusted alone (docs/architecture.md, "The
    broker's ends"): after its store crashed, it answers a high watermark (ListOffsets)
    below what it acknowledged, while its fetches report the right one; and a partition
    can end in an offset gap, below that high watermark, where no end-of-partition event
    ever comes. So a partition counts as at its end when the broker said so since its last
    record, or when it has sent nothing at all for ``quiet`` seconds while being read. A
    slow broker taken for an end costs a reader that counts messages nothing (the next
    record makes it live again), but a reader that merges partitions in order applies
    the others' later messages first. Such a reader gives a partition that has not
    answered at all since it was assigned (no record, no end: a broker still starting, or
    slow to read a backlog from its restarted store) ``first_quiet`` seconds instead.
    """

    def __init__(
        self,
        keys: Iterable[Any],
        *,
        quiet: float = QUIET_SECONDS,
        first_quiet: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self.first_quiet = quiet if first_quiet is None else first_quiet
        self._clock = clock
        now = clock()
        self._heard: dict[Any, float] = dict.fromkeys(keys, now)
        self._ended: set[Any] = set()
        self._answered: set[Any] = set()

    @property
    def keys(self) -> list[Any]:
        """The partitions tracked."""
        return list(self._heard)

    def record(self, key: Any) -> None:  # noqa: ANN401 - a partition number or (topic, partition)
        """A record of ``key`` was read: more may follow."""
        self._heard[key] = self._clock()
        self._ended.discard(key)
        self._answered.add(key)

    def end(self, key: Any) -> None:  # noqa: ANN401
        """The broker reported the end of ``key``."""
        self._heard[key] = self._clock()
        self._ended.add(key)
        self._answered.add(key)

    def restart(self) -> None:
        """Forget the ends seen so far: read until each partition reports or falls silent again.

        A partition that answered before keeps the ordinary ``quiet`` time.
        """
        now = self._clock()
        self._ended.clear()
        for key in self._heard:
            self._heard[key] = now

    def at_end(self, key: Any) -> bool:  # noqa: ANN401
        """Read to its end: the broker said so since the last record, or it fell silent."""
        return key in self._ended or self.silent(key)

    def silent(self, key: Any) -> bool:  # noqa: ANN401
        """Nothing from ``key`` (no record, no end) for ``quiet`` seconds.

        ``first_quiet`` seconds while it has never answered.
        """
        if key in self._ended:
            return False
        quiet = self.quiet if key in self._answered else self.first_quiet
        return self._clock() - self._heard[key] >= quiet

    @property
    def all_at_end(self) -> bool:
        """Every partition is at its end."""
        return all(self.at_end(key) for key in self._heard)


def consumer_lag(
    consumer: Consumer,
    topic: str,
    partitions: Iterable[int],
    positions: Mapping[int, int] | None = None,
) -> dict[int, int]:
    """Messages behind the broker's end per partition, from ``positions`` or the fetch position.

    ``positions`` are the next offsets to read (by default: where the client fetches next).
    The end is the high watermark of the latest fetch response, which the client keeps; a
    broker query (ListOffsets) is not used, since the embedded broker can answer it with an
    end below what it acknowledged. Partitions not fetched yet are left out.
    """
    lag: dict[int, int] = {}
    for partition in partitions:
        tp = TopicPartition(topic, partition)
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        position = (
            consumer.position([tp])[0].offset if positions is None else positions.get(partition, -1)
        )
        if high >= 0 and position >= 0:
            lag[partition] = max(high - position, 0)
    return lag


def consume_json(
    config: Mapping[str, str],
    topic: str,
    *,
    group: str | None = None,
    timeout: float = 10.0,
    max_messages: int | None = None,
) -> list[tuple[str | None, Any]]:
    """Read decoded ``(key, value)`` pairs from every partition of ``topic``.

    Reading starts at the group's committed offsets (the beginning without a group or
    commit); with a group the offsets read are committed at the end. With ``max_messages``
    it returns once that many arrived or ``timeout`` passed (possibly fewer); without, it
    reads what the topic holds now and raises ``TimeoutError`` if it cannot reach the end in
    time. The partitions are assigned directly, not through a group rebalance, so reading
    starts at once. A value that is not UTF-8 JSON raises ``ValueError``.
    """
    deadline = time.monotonic() + timeout
    consumer = new_consumer(
        {"fetch.wait.max.ms": "50", **config},
        group or f"wattpay-reader-{uuid.uuid4().hex}",
        end_of_partition=True,
        extra={"enable.auto.offset.store": "false"},
    )
    try:
        partitions = _wait_for_partitions(consumer, topic, deadline, wait=max_messages is not None)
        if not partitions:
            return []
        if group:
            assign_committed(consumer, topic, partitions, timeout=deadline - time.monotonic())
        else:
            assign(consumer, ((topic, p, None) for p in partitions))
        pairs, positions = _read(consumer, deadline, max_messages)
        if group and positions:
            commit_positions(consumer, {(topic, p): o for p, o in positions.items()})
        return pairs
    finally:
        consumer.close()


def _wait_for_partitions(
    consumer: Consumer, topic: str, deadline: float, *, wait: bool
) -> list[int]:
    """The topic's partitions; an absent topic is waited for only when ``wait`` is set."""
    while True:
        partitions = partitions_of(consumer, topic, timeout=max(deadline - time.monotonic(), 0.1))
        if partitions:
            return partitions
        if not wait or time.monotonic() >= deadline:
            return []
        time.sleep(0.1)


def _read(
    consumer: Consumer, deadline: float, max_messages: int | None
) -> tuple[list[tuple[str | None, Any]], dict[int, int]]:
    pairs: list[tuple[str | None, Any]] = []
    positions: dict[int, int] = {}
    ends = PartitionEnds(partition for _, partition in _assigned(consumer))
    while max_messages is None or len(pairs) < max_messages:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if max_messages is None:
                behind = [p for p in ends.keys if not ends.at_end(p)]
                raise TimeoutError(
                    f"read {len(pairs)} messages but did not reach the end of "
                    f"{len(behind)} partition(s) in time"
                )
            break
        message = consumer.poll(min(remaining, 0.2))
        if max_messages is None and ends.all_at_end:
            _report_silent(consumer, ends)
            if message is None:
                break
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if not is_end_of_partition(error):
                raise KafkaException(error)
            ends.end(message.partition())
            continue
        ends.record(message.partition())
        positions[message.partition()] = message.offset() + 1
        pairs.append(_decode(message))
    return pairs, positions


def _assigned(consumer: Consumer) -> list[tuple[str, int]]:
    return [(tp.topic, tp.partition) for tp in consumer.assignment()]


def _report_silent(consumer: Consumer, ends: PartitionEnds) -> None:
    """Log the partitions taken as ended by silence below the broker's end (an offset gap)."""
    for topic, partition in _assigned(consumer):
        if not ends.silent(partition):
            continue
        tp = TopicPartition(topic, partition)
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        position = consumer.position([tp])[0].offset
        if 0 <= position < high:
            log.warning(
                "%s[%d]: nothing at offset %d though the broker's end is %d (an offset gap); "
                "taken as read to its end",
                topic,
                partition,
                position,
                high,
            )


def _decode(message: Message) -> tuple[str | None, Any]:
    key = message.key()
    raw = message.value()
    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
    try:
        text_key = key.decode("utf-8") if key is not None else None
        value = json.loads(raw.decode("utf-8")) if raw is not None else None
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{where} is not UTF-8 JSON: {err}") from err
    return text_key, value


@dataclass(frozen=True)
class Record:
    """One message read: where it sits, its key and its raw value."""

    partition: int
    offset: int
    key: str | None
    value: bytes


def _take(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Wait for the first message only, then take what is already there.

    A batch call with a timeout would wait for a full batch and add that wait to every
    delivery.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *(consumer.consume(max_messages - 1, 0) if max_messages > 1 else [])]


def _record(message: Message) -> Record:
    key = message.key()
    return Record(
        message.partition(),
        message.offset(),
        key.decode("utf-8", "replace") if key is not None else None,
        message.value() or b"",
    )


class PartitionReader:
    """Every partition of a topic, assigned statically, from the group's committed offsets.

    No group rebalance to wait for (it starts at once on the embedded broker); the committed
    offsets stay the one record of progress across restarts. Without a group it reads from
    the beginning and commits nothing. ``commit`` takes the next offset to read per partition.
    """

    def __init__(
        self,
        config: Mapping[str, str],
        topic: str,
        group: str | None,
        *,
        strict: bool = True,
        quiet: float = QUIET_SECONDS,
    ) -> None:
        self.topic = topic
        self.group = group
        self.strict = strict
        self._consumer = new_consumer(
            {"fetch.wait.max.ms": "50", **config},
            group or f"wattpay-reader-{uuid.uuid4().hex}",
            end_of_partition=True,
            extra={"enable.auto.offset.store": "false"},
        )
        metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        starts = self._consumer.committed(partitions, timeout=10) if group else partitions
        self._consumer.assign(
            [
                TopicPartition(topic, p.partition, p.offset if p.offset >= 0 else OFFSET_BEGINNING)
                for p in starts
            ]
        )
        self.partitions = [p.partition for p in partitions]
        self.ends = PartitionEnds(self.partitions, quiet=quiet)
        self._starts = {p.partition: p.offset for p in starts if p.offset >= 0}

    def poll(self, max_messages: int, timeout: float) -> list[Record]:
        """Up to ``max_messages`` records, waiting at most ``timeout`` seconds for the first."""
        records: list[Record] = []
        for message in _take(self._consumer, max_messages, timeout):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.ends.end(message.partition())
                elif self.strict:
                    raise KafkaException(error)
                else:  # a transient client error: the client retries on its own
                    log.warning("%s: %s", self.topic, error)
                continue
            self.ends.record(message.partition())
            records.append(_record(message))
        return records

    @property
    def all_at_end(self) -> bool:
        """Every partition read to its end: reported by the broker, or silent (PartitionEnds)."""
        return self.ends.all_at_end

    def lag(self) -> dict[int, int]:
        """Messages still to read per partition fetched so far (0 for one at its end).

        Counted from the latest fetch response's end (``consumer_lag``), so it stays right
        when the embedded broker's ListOffsets answer lags behind what it acknowledged.
        """
        positions: dict[int, int] = {}
        for partition in self.partitions:
            tp = TopicPartition(self.topic, partition)
            position = self._consumer.position([tp])[0].offset
            if position < 0:  # nothing read yet: from where reading starts
                low, _ = self._consumer.get_watermark_offsets(tp, cached=True)
                position = self._starts.get(partition, low)
            positions[partition] = position
        behind = consumer_lag(self._consumer, self.topic, self.partitions, positions)
        return {p: 0 if self.ends.at_end(p) else n for p, n in behind.items()}

    def read_to_end(self, timeout: float) -> list[Record]:
        """Every record up to the end of each partition (PartitionEnds: the broker's or silence).

        Raises ``TimeoutError`` only when records still arrive after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        self.ends.restart()
        records: list[Record] = []
        while not self.ends.all_at_end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: did not reach the end in {timeout}s")
            records.extend(self.poll(1000, 0.2))
        _report_silent(self._consumer, self.ends)
        return records

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Commit, synchronously, the next offset to read of each partition given."""
        if self.group and next_offsets:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in next_offsets.items()],
                asynchronous=False,
            )

    def close(self) -> None:
        """Leave; uncommitted progress is read again by the next reader of the group."""
        self._consumer.close()


class GroupReader:
    """The partitions of a topic that group assignment gives this member of ``group``.

    Members of one group split the topic's partitions between them; when a member leaves or
    dies, the others take its partitions over from the committed offsets (the beginning
    where none are). ``on_revoke`` is called with the partitions about to be taken away,
    on the thread that polls, while their offsets can still be committed.
    """

    def __init__(
        self,
        config: Mapping[str, str],
        topic: str,
        group: str,
        *,
        on_revoke: Callable[[list[int]], None] | None = None,
        session_seconds: float = 10.0,
    ) -> None:
        self.topic = topic
        self.group = group
        self.on_revoke = on_revoke
        self.assigned: set[int] = set()
        self._consumer = new_consumer(
            {
                "fetch.wait.max.ms": "50",
                "session.timeout.ms": str(int(session_seconds * 1000)),
                "heartbeat.interval.ms": str(max(100, int(session_seconds * 1000) // 5)),
                **config,
            },
            group,
            extra={"enable.auto.offset.store": "false"},
        )
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {p.partition for p in partitions}

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = sorted(p.partition for p in partitions)
        if self.on_revoke is not None and gone:
            self.on_revoke(gone)
        self.assigned -= set(gone)

    def poll(self, max_messages: int, timeout: float) -> list[Record]:
        """Up to ``max_messages`` records of the assigned partitions (rebalances happen here)."""
        records: list[Record] = []
        for message in _take(self._consumer, max_messages, timeout):
            error = message.error()
            if error is None:
                records.append(_record(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: %s", self.topic, error)
        return records

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Commit, synchronously, the next offset to read of the given partitions still ours."""
        mine = {p: o for p, o in next_offsets.items() if p in self.assigned}
        if mine:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in mine.items()],
                asynchronous=False,
            )

    def close(self) -> None:
        """Leave the group (its partitions go to the other members); uncommitted work is redone."""
        self._consumer.close()


def open_reader(
    config: Mapping[str, str],
    topic: str,
    group: str | None,
    stop: Any,
    *,
    strict: bool = True,
    wait: float = 0.5,
) -> PartitionReader | None:
    """A ``PartitionReader`` once ``topic`` exists; ``None`` if ``stop`` is set first.

    ``stop`` is anything with ``is_set()`` (a threading or asyncio event).
    """
    warned = False
    while not stop.is_set():
        try:
            return PartitionReader(config, topic, group, strict=strict)
        except KafkaException as err:
            if not warned:
                log.warning("waiting for topic %s to exist (%s)", topic, err)
                warned = True
        time.sleep(wait)
    return None


class KafkaPublisher(JsonProducer):
    """Publishes JSON values to ``prefix`` + a logical topic, keyed by text.

    ``flush`` raises ``DeliveryError`` when a message was not confirmed in time. It speaks
    the ``Publisher`` protocol of the meter gateway (``meters.poller``).
    """

    def __init__(
        self, config: Mapping[str, str], prefix: str, *, flush_timeout: float = 30.0
    ) -> None:
        super().__init__(config, flush_timeout=flush_timeout)
        self.prefix = prefix

    def publish(self, topic: str, key: str, value: Mapping[str, Any]) -> None:
        """Queue one message on logical ``topic`` (an empty key goes without one)."""
        self.send(self.prefix + topic, key or None, value)


def facts_feed(config: Mapping[str, str], topic: str) -> Callable[[], PartitionReader]:
    """How the ClickHouse loader opens the facts topic: its group's committed positions."""
    return lambda: PartitionReader(config, topic, "wattpay-loader", strict=False)


def committed_positions(config: Mapping[str, str]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the lowest offset any consumer group committed there."""
    admin = AdminClient(dict(config))
    groups = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
    lowest: dict[tuple[str, int], int] = {}
    for listing in groups.valid:
        request = [ConsumerGroupTopicPartitions(listing.group_id)]
        for future in admin.list_consumer_group_offsets(request, request_timeout=10).values():
            for tp in future.result(timeout=15).topic_partitions or []:
                if tp.offset >= 0 and tp.error is None:
                    place = (tp.topic, tp.partition)
                    lowest[place] = min(lowest.get(place, tp.offset), tp.offset)
    return lowest
