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

from sinks import schema
from sinks.clickhouse import ClickHouseError, ClickHouseStore
from sinks.facts import decode_fact
from sinks.kafka import (
    Consumer,
    assign_committed,
    is_end_of_partition,
    new_consumer,
    partitions_of,
)

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
        self.drain_seconds = 30.0

    def run(self, stop: threading.Event, *, drain_seconds: float | None = None) -> None:
        """Load until ``stop`` is set, then drain the topic to its end.

        Draining takes at most ``drain_seconds`` (default: the ``drain_seconds`` attribute
        when ``stop`` is set, 30 s unless changed; 0 when the broker is known to be gone);
        the last batch is written and committed before returning.
        """
        consumer = new_consumer(self.config, self.group, end_of_partition=True)
        # Static assignment with committed offsets: no group rebalancing to wait for, and
        # the committed position is still the one source of truth across restarts.
        partitions = partitions_of(consumer, self.topic)
        if not partitions:
            consumer.close()
            raise RuntimeError(f"topic {self.topic} does not exist")
        assign_committed(consumer, self.topic, partitions)
        self._pending: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        self._count = 0
        self._oldest = 0.0
        at_end: set[int] = set()
        deadline = None
        try:
            while True:
                if stop.is_set():
                    drain = self.drain_seconds if drain_seconds is None else drain_seconds
                    deadline = deadline or time.monotonic() + drain
                    if len(at_end) == len(partitions) or time.monotonic() > deadline:
                        break
                for message in consumer.consume(2000, 0.2):
                    error = message.error()
                    if error is not None:
                        if is_end_of_partition(error):
                            at_end.add(message.partition())
                        else:
                            log.warning("facts topic: %s", error)
                        continue
                    at_end.discard(message.partition())
                    self._buffer(message.value() or b"")
                due = time.monotonic() - self._oldest >= self.max_seconds
                if self._count and (self._count >= self.max_rows or due):
                    self._write_and_commit(consumer, stop)
            self._write_and_commit(consumer, stop, attempts=3)
        finally:
            consumer.close()

    def _buffer(self, payload: bytes) -> None:
        try:
            row = decode_fact(payload)
            values = schema.row_values(row.table, row.values)
        except ValueError as err:
            self.stats.bad_facts += 1
            log.error("skipping a fact that does not fit the schema: %s", err)
            return
        if not self._count:
            self._oldest = time.monotonic()
        self._pending[row.table].append(values)
        self._count += 1

    def _write_and_commit(
        self, consumer: Consumer, stop: threading.Event, attempts: int = 0
    ) -> None:
        if self._count and self._write(self._pending, stop, attempts):
            consumer.commit(asynchronous=False)
            self._pending.clear()
            self._count = 0

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
