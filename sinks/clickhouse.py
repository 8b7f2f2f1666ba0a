"""The ClickHouse sink: every clickhouse-connect call in wattpay lives in this module.

One code path serves both targets (SPEC S1): an embedded chdb directory (``chdb:///abs/dir``,
an in-process engine behind clickhouse-connect's chdb backend) and a ClickHouse server
(``http(s)://user:pass@host:8123/db``).

chdb facts this module relies on (chdb 4.4, clickhouse-connect 1.12):

- One engine per process, one directory per engine: opening a second path while a client is
  open raises, and a directory open in another process cannot be opened (the engine reports a
  bare "Error initializing EmbeddedServer"). Clients are therefore shared per DSN in this
  process and the engine is closed when the last store using it closes.
- ``DateTime64(3, 'Asia/Shanghai')`` values come back as aware datetimes in Asia/Shanghai.
  Expressions without a zone come back naive UTC unless ``tz_mode="aware"``, which we set.
- ``FINAL`` works and deduplicates ReplacingMergeTree rows as on a server.
- The engine runs several ``;``-separated statements in one query call, and honours
  ``readonly=1`` but still writes files for ``INTO OUTFILE``; `check_readonly_sql` covers both.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as _DriverError

from sinks import schema

READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})
_SHANGHAI = ZoneInfo("Asia/Shanghai")


class ClickHouseError(RuntimeError):
    """A ClickHouse or driver failure, raised so callers need not import clickhouse-connect."""


def normalize_dsn(dsn: str) -> str:
    """Return the DSN with a chdb path made absolute (creating the directory); http(s) unchanged.

    ``chdb://./dir``, ``chdb://dir`` and ``chdb://~/dir`` are relative to the working or home
    directory; ``chdb:///abs/dir`` is absolute. Anything else raises ValueError.
    """
    scheme, sep, rest = dsn.partition("://")
    scheme = scheme.lower()
    if sep and scheme in ("http", "https"):
        if not urlsplit(dsn).hostname:
            raise ValueError(
                f"ClickHouse DSN {mask_dsn(dsn)!r} has no host; expected {scheme}://host:8123/db"
            )
        return dsn
    if not sep or scheme != "chdb":
        raise ValueError(
            f"unsupported ClickHouse DSN {mask_dsn(dsn)!r}: expected chdb:///path/to/dir "
            "(embedded) or http(s)://user:pass@host:8123/db"
        )
    path, qmark, query = rest.partition("?")
    if not path:
        raise ValueError(f"chdb DSN {dsn!r} names no directory; expected chdb:///path/to/dir")
    absolute = os.path.abspath(os.path.expanduser(path))
    os.makedirs(absolute, exist_ok=True)
    return f"chdb://{absolute}{qmark}{query}"


def mask_dsn(dsn: str) -> str:
    """Return the DSN with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()


def check_readonly_sql(sql: str) -> str:
    """Return the statement if it is one read-only query, else raise ValueError.

    Accepts a single SELECT/WITH/SHOW/DESCRIBE/EXPLAIN statement with an optional trailing
    ``;``, and refuses ``INTO OUTFILE``. Literals, quoted identifiers and comments are skipped;
    where this scan and ClickHouse's lexer could differ (nested comments, ``$$`` strings) the
    scan sees more code than ClickHouse does, so it errs towards refusing.
    """
    words: list[str] = []
    end: int | None = None  # index of the first top-level ";"
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith(("--", "# ", "#!"), i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
            continue
        if ch.isspace():
            i += 1
            continue
        if ch == ";":
            end = i if end is None else end
            i += 1
            continue
        if end is not None:
            raise ValueError("only a single statement is allowed")
        if ch in "'\"`":
            i += 1
            while i < n and sql[i] != ch:
                i += 2 if sql[i] == "\\" else 1
            i += 1
        elif ch.isalpha() or ch == "_":
            start = i
            while i < n and (sql[i].isalnum() or sql[i] == "_"):
                i += 1
            words.append(sql[start:i].upper())
        else:
            i += 1
    if not words or words[0] not in READ_KEYWORDS:
        first = words[0] if words else "nothing"
        raise ValueError(f"only SELECT, WITH, SHOW, DESCRIBE or EXPLAIN may run here, not {first}")
    if any(a == "INTO" and b == "OUTFILE" for a, b in zip(words, words[1:], strict=False)):
        raise ValueError("INTO OUTFILE is not allowed here")
    return sql[:end].strip()


@dataclass
class _Shared:
    """One open client per normalized DSN, with its users counted and its calls serialized."""

    client: Client
    users: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _open_client(dsn: str) -> Client:
    """Open a clickhouse-connect client for a normalized DSN."""
    try:
        # tz_mode="aware": every datetime read back carries a zone, never naive UTC.
        return clickhouse_connect.get_client(dsn=dsn, tz_mode="aware")
    except _DriverError as ex:
        hint = ""
        if dsn.startswith("chdb:"):
            hint = " (is another process using it? a chdb directory is one process's at a time)"
        raise ClickHouseError(f"cannot open ClickHouse at {mask_dsn(dsn)}{hint}: {ex}") from ex


class ClickHouseStore:
    """A ClickHouse target: schema migrations, inserts of checked rows, and queries."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._key: str | None = None
        self._shared: _Shared | None = None

    def connect(self) -> None:
        """Open (or join this process's) client for the DSN; does nothing if already open."""
        self._connected()

    def _connected(self) -> _Shared:
        if self._shared is not None:
            return self._shared
        key = normalize_dsn(self.dsn)
        with _SHARED_LOCK:
            if self._shared is None:
                shared = _SHARED.get(key)
                if shared is None:
                    shared = _Shared(_open_client(key))
                    _SHARED[key] = shared
                shared.users += 1
                self._key, self._shared = key, shared
            return self._shared

    def close(self) -> None:
        """Leave the shared client, closing it when no other store in this process uses it."""
        with _SHARED_LOCK:
            shared, key = self._shared, self._key
            if shared is None or key is None:
                return
            self._shared = self._key = None
            shared.users -= 1
            if shared.users > 0:
                return
            del _SHARED[key]
        with shared.lock:
            shared.client.close()

    def __enter__(self) -> ClickHouseStore:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, action: Callable[[Client], Any]) -> Any:
        """Run one driver call under the shared client's lock, translating driver errors."""
        shared = self._connected()
        with shared.lock:
            try:
                return action(shared.client)
            except _DriverError as ex:
                raise ClickHouseError(str(ex)) from ex

    def command(self, sql: str) -> None:
        """Run a statement that returns no rows (DDL)."""
        self._call(lambda c: c.command(sql))

    def applied_migrations(self) -> list[int]:
        """Return the recorded migration versions, creating the record table if needed."""
        self.command(schema.create_table_sql(schema.SCHEMA_MIGRATIONS))
        _, rows = self.query("SELECT version FROM schema_migrations FINAL ORDER BY version")
        return [int(r[0]) for r in rows]

    def migrate(self) -> list[int]:
        """Apply pending migrations in order and return the versions applied now."""
        applied: list[int] = []
        for migration in schema.pending_migrations(self.applied_migrations()):
            for statement in migration.statements:
                self.command(statement)
            record = {
                "version": migration.version,
                "description": migration.description,
                "applied_at": dt.datetime.now(_SHANGHAI),
            }
            self.insert_rows(schema.SCHEMA_MIGRATIONS.name, [record])
            applied.append(migration.version)
        return applied

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Insert row dicts keyed by column name; every value is checked before anything is sent."""
        self.insert_values(table, [schema.row_values(table, row) for row in rows])

    def insert_values(self, table: str, values: Sequence[Sequence[object]]) -> None:
        """Insert rows already checked by `schema.row_values` (tuples in column order)."""
        if not values:
            return
        spec = schema.table_spec(table)
        names = spec.column_names
        # Passing the types spares the driver a DESCRIBE TABLE round trip per insert.
        types = [c.type for c in spec.columns]
        self._call(
            lambda c: c.insert(spec.name, values, column_names=names, column_type_names=types)
        )

    def read(
        self, sql: str, parameters: Mapping[str, object] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one of the application's own read statements, values bound as parameters.

        For fixed SQL written in the code (the web pages' reads), never for text from outside:
        every value goes in ``parameters`` (``{name:Type}`` placeholders), and the engine runs
        it with ``readonly=1``.
        """
        return self._query(sql, parameters, {"readonly": 1})

    def query(
        self, sql: str, parameters: Mapping[str, object] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query and return its column names and rows."""
        return self._query(sql, parameters, None)

    def query_readonly(
        self, sql: str, parameters: Mapping[str, object] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only statement (see `check_readonly_sql`) with ``readonly=1``."""
        statement = check_readonly_sql(sql)
        # clickhouse-connect drops the setting itself when the server user is already read-only.
        return self._query(statement, parameters, {"readonly": 1})

    def _query(
        self,
        sql: str,
        parameters: Mapping[str, object] | None,
        settings: dict[str, Any] | None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        params = dict(parameters) if parameters else None
        result = self._call(lambda c: c.query(sql, parameters=params, settings=settings))
        return list(result.column_names), [tuple(row) for row in result.result_rows]


class BatchWriter:
    """Buffers rows per table and writes them in batches bounded by size and by age.

    A buffer is written when it reaches ``max_rows`` or when its oldest row is older than
    ``max_seconds`` (checked on `add`; call `flush_if_due` from a timer when input is idle).
    Rows are checked on `add`, so a bad row fails its caller rather than a later batch.
    A failed write keeps the unwritten tables' rows; writes are repeatable (the tables
    deduplicate), so retrying `flush` is safe.
    """

    def __init__(
        self,
        store: ClickHouseStore,
        *,
        max_rows: int = 10_000,
        max_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rows < 1 or max_seconds < 0:
            raise ValueError("max_rows must be >= 1 and max_seconds >= 0")
        self._store = store
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        self._clock = clock
        self._buffers: dict[str, list[tuple[object, ...]]] = {}
        self._oldest: float | None = None
        self._closed = False
        self._lock = threading.RLock()

    @property
    def pending(self) -> int:
        """Number of buffered rows not yet written."""
        with self._lock:
            return sum(len(b) for b in self._buffers.values())

    def add(self, table: str, row: Mapping[str, object]) -> None:
        """Buffer one row, then flush if a bound is reached."""
        self.add_many(table, [row])

    def add_many(self, table: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Buffer rows for one table, then flush if a bound is reached."""
        schema.table_spec(table)
        values = [schema.row_values(table, row) for row in rows]
        with self._lock:
            if self._closed:
                raise RuntimeError("BatchWriter is closed")
            if not values:
                return
            buffer = self._buffers.setdefault(table, [])
            buffer.extend(values)
            if self._oldest is None:
                self._oldest = self._clock()
            if len(buffer) >= self._max_rows:
                self.flush()
            else:
                self.flush_if_due()

    def flush_if_due(self) -> bool:
        """Flush if the oldest buffered row has waited ``max_seconds``; return whether it did."""
        with self._lock:
            if self._oldest is None or self._clock() - self._oldest < self._max_seconds:
                return False
            self.flush()
            return True

    def flush(self) -> None:
        """Write every table's buffer, in the order the tables were first buffered."""
        with self._lock:
            for table in list(self._buffers):
                self._store.insert_values(table, self._buffers[table])
                del self._buffers[table]
            self._oldest = None

    def close(self) -> None:
        """Flush what is buffered and refuse further rows; the store stays open."""
        with self._lock:
            if not self._closed:
                self.flush()
                self._closed = True

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
