"""The ClickHouse loader: facts topic → batched, idempotent inserts → then the offsets.

It advances its consumer-group position only after the rows are written (write, then
commit), so a crash or a ClickHouse outage loses nothing: the facts wait on the topic and
are written again on restart; repeated rows deduplicate by their ids (ReplacingMergeTree).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from sinks import schema
from sinks.clickhouse import ClickHouseError, ClickHouseStore
from sinks.facts import decode_fact

log = logging.getLogger(__name__)


@dataclass
class LoaderStats:
    """What the loader has done, for metrics and tests."""

    rows_written: int = 0
    batches: int = 0
    bad_facts: int = 0
    write_failures: int = 0
    last_batch_seconds: float = 0.0
    by_table: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Loader:
    """Consumes the facts topic and writes ClickHouse in batches bounded by size and time."""

    def __init__(
        self,
        config: Mapping[str, str],
        topic: str,
        store: ClickHouseStore,
        *,
        max_rows: int = 10_000,
        max_seconds: float = 1.0,
        group: str = "wattpay-loader",
        on_batch: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.config = dict(config)
        self.topic = topic
        self.store = store
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.group = group
        self.on_batch = on_batch
        self.stats = LoaderStats()

    def run(self, stop: threading.Event) -> None:
        """Load until ``stop`` is set; the last batch is written and committed before return."""
        consumer = Consumer(
            {
                **self.config,
                "group.id": self.group,
                "enable.auto.commit": "false",
                "auto.offset.reset": "earliest",
            }
        )
        # Static assignment with committed offsets: no group rebalancing to wait for, and
        # the committed position is still the one source of truth across restarts.
        metadata = consumer.list_topics(self.topic, timeout=10)
        partitions = [TopicPartition(self.topic, p) for p in metadata.topics[self.topic].partitions]
        committed = consumer.committed(partitions, timeout=10)
        consumer.assign(
            [
                TopicPartition(
                    self.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                )
                for tp in committed
            ]
        )
        pending: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        count = 0
        oldest = 0.0
        try:
            while not stop.is_set():
                for message in consumer.consume(2000, 0.2):
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("facts topic: %s", error)
                        continue
                    try:
                        row = decode_fact(message.value() or b"")
                        values = schema.row_values(row.table, row.values)
                    except ValueError as err:
                        self.stats.bad_facts += 1
                        log.error("skipping a fact that does not fit the schema: %s", err)
                        continue
                    if not count:
                        oldest = time.monotonic()
                    pending[row.table].append(values)
                    count += 1
                if count and (
                    count >= self.max_rows or time.monotonic() - oldest >= self.max_seconds
                ):
                    if self._write(pending, stop):
                        consumer.commit(asynchronous=False)
                        pending.clear()
                        count = 0
            if count and self._write(pending, stop, attempts=3):
                consumer.commit(asynchronous=False)
        finally:
            consumer.close()

    def _write(
        self, pending: dict[str, list[tuple[object, ...]]], stop: threading.Event, attempts: int = 0
    ) -> bool:
        """Write every table's rows; retry while ClickHouse is unreachable. True when written."""
        delay = 0.5
        tries = 0
        while True:
            started = time.monotonic()
            try:
                for table, rows in pending.items():
                    if rows:
                        self.store.insert_values(table, rows)
                        self.stats.by_table[table] += len(rows)
            except ClickHouseError as err:
                self.stats.write_failures += 1
                tries += 1
                log.warning("ClickHouse write failed (%s); retrying in %.1fs", err, delay)
                if (attempts and tries >= attempts) or stop.wait(delay):
                    return False
                delay = min(delay * 2, 10.0)
                continue
            elapsed = time.monotonic() - started
            written = sum(len(rows) for rows in pending.values())
            self.stats.rows_written += written
            self.stats.batches += 1
            self.stats.last_batch_seconds = elapsed
            if self.on_batch is not None:
                self.on_batch("all", written, elapsed)
            return True
