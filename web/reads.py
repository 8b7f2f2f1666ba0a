"""The one way the web app reads ClickHouse: its own read-only statements, values bound.

Every value from a URL reaches SQL as a ``{name:Type}`` parameter, never as text, and ids
are checked against `ID_PATTERN` before any query runs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from store.clickhouse import ClickHouseStore

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
SCHEMA_TTL = 30.0
QueryFn = Callable[[str, Mapping[str, object] | None], tuple[list[str], list[tuple[Any, ...]]]]


def valid_id(value: str) -> bool:
    """True for an account, meter or landlord id: letters, digits and ``_.:-``, at most 64."""
    return ID_PATTERN.fullmatch(value) is not None


class Reader:
    """Rows as dicts from read-only queries, plus what the schema has (tables, columns)."""

    def __init__(self, query: QueryFn) -> None:
        self._query = query
        self._columns: dict[str, tuple[float, frozenset[str]]] = {}

    @classmethod
    def of_store(cls, store: ClickHouseStore) -> Reader:
        """A reader over the store's read path for the application's own statements."""
        return cls(store.read)

    def rows(self, sql: str, **params: object) -> list[dict[str, Any]]:
        """Every row of a read-only query as a dict keyed by column name."""
        columns, rows = self._query(sql, params or None)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def one(self, sql: str, **params: object) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        found = self.rows(sql, **params)
        return found[0] if found else None

    def columns(self, table: str) -> frozenset[str]:
        """Columns of a table in the current database (empty when the table does not exist).

        Tables another part of the system adds later (``bills``, ``invoices``) or columns a
        newer migration adds (``accounts.landlord_id``) are looked up, not assumed; the answer
        is kept for `SCHEMA_TTL` seconds, so a migration run meanwhile is seen soon.
        """
        known = self._columns.get(table)
        if known is not None and time.monotonic() - known[0] < SCHEMA_TTL:
            return known[1]
        found = frozenset(
            row["name"]
            for row in self.rows(
                "SELECT name FROM system.columns "
                "WHERE database = currentDatabase() AND table = {table:String}",
                table=table,
            )
        )
        self._columns[table] = (time.monotonic(), found)
        return found

    def has_table(self, table: str) -> bool:
        """True when the table exists."""
        return bool(self.columns(table))
