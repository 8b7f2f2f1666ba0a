"""Bytewax sink that writes analytics rows (SPEC S8) to ClickHouse in bounded batches.

The embedded ClickHouse can be opened by one process only, so the writers (one per worker
thread) are partitions that only the process given ``writers`` lists: the workers of a
cluster's other processes send their rows there.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from billing.outputs import Row
from store.clickhouse import BatchWriter, ClickHouseStore, Columns


class _ClickHousePartition(StatefulSinkPartition[list[Row], None]):
    """Buffers the rows it gets and writes each batch on a thread of its own.

    chdb releases the interpreter lock while it inserts, so the flow goes on billing on the
    other core meanwhile. One batch is written at a time; a failed write fails the next
    call (and ``close``), as a write in line would have.
    """

    def __init__(self, dsn: str, max_rows: int, max_seconds: float) -> None:
        self._store = ClickHouseStore(dsn)
        self._writer = BatchWriter(
            self._store, max_rows=max_rows, max_seconds=max_seconds, auto_flush=False
        )
        self._inserting = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
        self._in_flight: Future[None] | None = None

    def write_batch(self, items: list[list[Row] | dict[str, Columns]]) -> None:
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
            self._written()
            self._writer.close()
        finally:
            self._inserting.shutdown()
            self._store.close()


class ClickHouseSink(FixedPartitionedSink[list[Row] | dict[str, Columns], None]):
    """Batches of rows, written by ``writers`` partitions of this process (deduplicated by id)."""

    def __init__(
        self, dsn: str, *, writers: int = 1, max_rows: int = 100_000, max_seconds: float = 1.0
    ) -> None:
        self.dsn = dsn
        self.writers = writers
        self.max_rows = max_rows
        self.max_seconds = max_seconds

    def list_parts(self) -> list[str]:
        return [f"clickhouse-{index}" for index in range(self.writers)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ClickHousePartition:
        return _ClickHousePartition(self.dsn, self.max_rows, self.max_seconds)
