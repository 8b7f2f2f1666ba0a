"""Bytewax sink that writes analytics rows (SPEC S8) to ClickHouse in bounded batches."""

from __future__ import annotations

from collections import defaultdict

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from billing.outputs import Row
from sinks.clickhouse import BatchWriter, ClickHouseStore


class _ClickHousePartition(StatelessSinkPartition[tuple[str, Row]]):
    def __init__(self, dsn: str, max_rows: int, max_seconds: float) -> None:
        self._store = ClickHouseStore(dsn)
        self._writer = BatchWriter(self._store, max_rows=max_rows, max_seconds=max_seconds)

    def write_batch(self, items: list[tuple[str, Row]]) -> None:
        by_table: dict[str, list[dict[str, object]]] = defaultdict(list)
        for _key, row in items:
            by_table[row.table].append(row.values)
        for table, rows in by_table.items():
            self._writer.add_built(table, rows)
        self._writer.flush_if_due()

    def close(self) -> None:
        self._writer.close()
        self._store.close()


class ClickHouseSink(DynamicSink[tuple[str, Row]]):
    """Every worker batches its rows and writes them; repeated rows deduplicate by id."""

    def __init__(self, dsn: str, *, max_rows: int = 10_000, max_seconds: float = 1.0) -> None:
        self.dsn = dsn
        self.max_rows = max_rows
        self.max_seconds = max_seconds

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ClickHousePartition:
        return _ClickHousePartition(self.dsn, self.max_rows, self.max_seconds)
