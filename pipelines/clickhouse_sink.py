"""Bytewax sink that writes analytics rows (SPEC S8) to ClickHouse in bounded batches.

The embedded ClickHouse can be opened by one process only, so the writers (one per worker
thread) are partitions that only the process given ``writers`` lists: the workers of a
cluster's other processes send their rows there.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from billing.outputs import Row
from store.clickhouse import BatchWriter, ClickHouseStore, Columns


class _ClickHousePartition(StatefulSinkPartition[list[Row], None]):
    """Buffers the rows it gets and writes each batch on a thread of its own.

    chdb releases the interpreter lock while it inserts, so the flow goes on billing on the
    other core meanwhile. One batch is written at a time; a failed write fails the next
    call (and ``close``), as a write in line would have. With ``ready``, nothing is written
    before it is done (the tables being created meanwhile), and its failure fails the next
    call and ``close``. Once a call has raised, ``close`` writes nothing and raises nothing:
    Bytewax closes the partition while it unwinds, and a second error there aborts the
    process instead of reporting the first.
    """

    def __init__(
        self, dsn: str, max_rows: int, max_seconds: float, ready: Future[Any] | None
    ) -> None:
        self._ready = ready
        self._store = ClickHouseStore(dsn)
        self._writer = BatchWriter(
            self._store, max_rows=max_rows, max_seconds=max_seconds, auto_flush=False
        )
        self._inserting = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
        self._in_flight: Future[None] | None = None
        self._failed = False

    def write_batch(self, items: list[list[Row] | dict[str, Columns]]) -> None:
        try:
            self._write(items)
        except BaseException:
            self._failed = True
            raise

    def _write(self, items: list[list[Row] | dict[str, Columns]]) -> None:
        if self._ready is not None and self._ready.done():
            self._ready.result()  # raises what preparing the store raised
        by_table: dict[str, list[dict[str, object]]] = defaultdict(list)
        for rows in items:
            if isinstance(rows, dict):  # already columns (``encode_rows``)
                for table, columns in rows.items():
                    self._writer.add_columns(table, columns)
                continue
            for row in rows:
                by_table[row.table].append(row.values)
        for table, built in by_table.items():
            self._writer.add_built(table, built)
        if self._writer.due():
            self._written()
            self._in_flight = self._inserting.submit(self._insert, self._writer.take())

    def _insert(self, batch: dict[str, Columns]) -> None:
        if self._ready is not None:
            self._ready.result()
        for table, columns in batch.items():
            self._store.insert_columns(table, columns)

    def _written(self) -> None:
        """Wait for the batch being written; raise what its write raised."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        try:
            if not self._failed:
                if self._ready is not None:
                    self._ready.result()
                self._written()
                self._writer.close()
        finally:
            self._inserting.shutdown()
            self._store.close()


class ClickHouseSink(FixedPartitionedSink[list[Row] | dict[str, Columns], None]):
    """Batches of rows, written by ``writers`` partitions of this process (deduplicated by id).

    ``ready``: what the writes wait for, such as the tables' migration on another thread
    (``store.clickhouse.open_migrated``).
    """

    def __init__(  # noqa: PLR0913 - the sink's settings
        self,
        dsn: str,
        *,
        writers: int = 1,
        max_rows: int = 100_000,
        max_seconds: float = 1.0,
        ready: Future[Any] | None = None,
    ) -> None:
        self.ready = ready
        self.dsn = dsn
        self.writers = writers
        self.max_rows = max_rows
        self.max_seconds = max_seconds

    def list_parts(self) -> list[str]:
        return [f"clickhouse-{index}" for index in range(self.writers)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ClickHousePartition:
        return _ClickHousePartition(self.dsn, self.max_rows, self.max_seconds, self.ready)
