"""The ClickHouse loader: facts in → batched, idempotent inserts → then the input's offsets.

It advances its consumer-group position only after the rows are written (write, then
commit), so a crash or a ClickHouse outage loses nothing: the facts wait on the topic and
are written again on restart; repeated rows deduplicate by their ids (ReplacingMergeTree).
Batching is the replay's own ``BatchWriter``; the facts are read through a ``FactFeed``
(the facts topic, ``bus.kafka.PartitionReader``), handed in by whoever starts the loader.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from store.clickhouse import BatchWriter, ClickHouseError, ClickHouseStore
from store.facts import fact_columns

log = logging.getLogger(__name__)


class FactRecord(Protocol):
    """One fact as read: where it sits and its raw value."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes: ...


class FactFeed(Protocol):
    """A consumer group's reading of the facts topic from its committed positions."""

    partitions: list[int]

    @property
    def all_at_end(self) -> bool: ...
    def poll(self, max_messages: int, timeout: float) -> Sequence[FactRecord]: ...
    def commit(self, next_offsets: Mapping[int, int]) -> None: ...
    def close(self) -> None: ...


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
    """Reads facts and writes ClickHouse in batches bounded by size and time."""

    def __init__(
        self,
        open_feed: Callable[[], FactFeed],
        store: ClickHouseStore,
        *,
        max_rows: int = 10_000,
        max_seconds: float = 1.0,
        on_batch: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.open_feed = open_feed
        self.store = store
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.on_batch = on_batch
        self.stats = LoaderStats()
        self.drain_seconds = 30.0

    def run(self, stop: threading.Event, *, drain_seconds: float | None = None) -> None:
        """Load until ``stop`` is set, then drain the facts to their end.

        Draining takes at most ``drain_seconds`` (default: the ``drain_seconds`` attribute
        when ``stop`` is set, 30 s unless changed; 0 when the broker is known to be gone);
        the last batch is written and committed before returning.
        """
        feed = self.open_feed()
        if not feed.partitions:
            feed.close()
            raise RuntimeError("the facts topic does not exist")
        writer = BatchWriter(
            self.store, max_rows=self.max_rows, max_seconds=self.max_seconds, auto_flush=False
        )
        read: dict[int, int] = {}  # next offset per partition, of what is buffered
        deadline = None
        try:
            while True:
                if stop.is_set():
                    drain = self.drain_seconds if drain_seconds is None else drain_seconds
                    deadline = deadline or time.monotonic() + drain
                    if feed.all_at_end or time.monotonic() > deadline:
                        break
                for record in feed.poll(2000, 0.2):
                    self._decode(writer, record.value)
                    read[record.partition] = record.offset + 1
                if writer.due():
                    self._write_and_commit(writer, feed, read, stop)
            self._write_and_commit(writer, feed, read, stop, attempts=3)
        finally:
            feed.close()

    def _decode(self, writer: BatchWriter, payload: bytes) -> None:
        """Buffer a fact message's checked rows, or count it as a bad fact (all its rows)."""
        try:
            table, columns, _ = fact_columns(payload)
        except ValueError as err:
            self.stats.bad_facts += 1
            log.error("skipping a fact message that does not fit the schema: %s", err)
            return
        writer.add_columns(table, columns)

    def _write_and_commit(
        self,
        writer: BatchWriter,
        feed: FactFeed,
        read: dict[int, int],
        stop: threading.Event,
        attempts: int = 0,
    ) -> None:
        """Write what is buffered (retrying while ClickHouse is unreachable), then commit."""
        if writer.pending and not self._write(writer, stop, attempts):
            return
        if read:
            feed.commit(read)
            read.clear()

    def _write(self, writer: BatchWriter, stop: threading.Event, attempts: int = 0) -> bool:
        delay = 0.5
        tries = 0
        while True:
            started = time.monotonic()
            try:
                written = writer.flush()
            except ClickHouseError as err:
                self.stats.write_failures += 1
                tries += 1
                log.warning("ClickHouse write failed (%s); retrying in %.1fs", err, delay)
                if (attempts and tries >= attempts) or stop.wait(delay):
                    return False
                delay = min(delay * 2, 10.0)
                continue
            elapsed = time.monotonic() - started
            for table, count in written.items():
                self.stats.by_table[table] += count
            self.stats.rows_written += sum(written.values())
            self.stats.batches += 1
            self.stats.last_batch_seconds = elapsed
            if self.on_batch is not None:
                self.on_batch("all", sum(written.values()), elapsed)
            return True
