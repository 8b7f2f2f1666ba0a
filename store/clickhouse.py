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
  ``readonly=1`` but still writes files for ``INTO OUTFILE``; per-call settings ride as a
  trailing ``SETTINGS`` clause (``readonly`` must come last there, or the engine refuses the
  settings after it). `query_readonly` therefore decides on ClickHouse's own parse of the
  statement (see `store.sqlguard`) before anything runs.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import clickhouse_connect
from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.datatypes.numeric import Decimal as DecimalType
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.datatypes.string import String as StringType
from clickhouse_connect.driver import options as _driver_options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.common import write_array
from clickhouse_connect.driver.exceptions import ClickHouseError as _DriverError
from clickhouse_connect.driver.insert import InsertContext

from billing.clock import milli_ticks_column
from billing.emitter import rows_by_table
from billing.outputs import Row
from config.errors import OperatorError
from config.settings import mask_url, redact
from store import schema
from store.sqlguard import (
    QueryLimits,
    RefusedQuery,
    check_identifiers,
    check_size,
    check_tree,
    parse_ast,
)

_SHANGHAI = ZoneInfo("Asia/Shanghai")
# The driver logs a warning (sometimes with a traceback holding the request URL) before it
# raises; the raised error is reported once by the caller, secrets redacted.
logging.getLogger("clickhouse_connect").setLevel(logging.ERROR)

# A batch may hold rows of many months (a meter silent for years, then read: its span is cut
# at every midnight), and the monthly tables put each month in its own partition.
_INSERT_SETTINGS = {"max_partitions_per_insert_block": 0}
# wattpay hands the driver columns and reads Arrow, never pandas frames. The driver imports
# pandas on the first insert only to ask whether the data is one, which costs every process
# that inserts about 0.2 s of start-up; telling it that pandas is absent spares that.
_driver_options.pd = None
_driver_options.pd_time_test = None


class ClickHouseError(OperatorError, RuntimeError):
    """A ClickHouse or driver failure, raised so callers need not import clickhouse-connect."""


class MissingDirectory(ClickHouseError):
    """A chdb directory to read does not exist (and was not to be created)."""


class QueryStopped(ClickHouseError):
    """An analyst's query ran into `QueryLimits` and was stopped."""


def normalize_dsn(dsn: str, *, create: bool = True) -> str:
    """Return the DSN with a chdb path made absolute (creating the directory); http(s) unchanged.

    With ``create=False`` a missing chdb directory raises `MissingDirectory` instead.

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
        raise ValueError(
            f"chdb DSN {mask_dsn(dsn)!r} names no directory; expected chdb:///path/to/dir"
        )
    absolute = os.path.abspath(os.path.expanduser(path))
    if not create and not os.path.isdir(absolute):
        raise MissingDirectory(f"no ClickHouse data at {absolute} (no such chdb directory)")
    os.makedirs(absolute, exist_ok=True)
    return f"chdb://{absolute}{qmark}{query}"


def mask_dsn(dsn: str) -> str:
    """The DSN with its password and token-like query values as ``***``, for messages and logs."""
    return mask_url(dsn)


@dataclass
class _Shared:
    """One open client per normalized DSN, with its users counted and its calls serialized."""

    client: Client
    users: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


class _ScaledDecimal(DecimalType, registered=False):
    """A Decimal column handed to the driver as ints already scaled by 10^scale.

    The driver's own encoder formats every ``Decimal`` as text and parses it again; the
    native format of a Decimal(P, S) is the int value × 10^S, so these are written as is.
    """

    def _write_column_binary(self, column: Sequence[int], dest: bytearray, ctx: Any) -> None:  # noqa: ANN401
        if self.byte_size <= 8:
            write_array(self._array_type, column, dest, ctx.column_name)
        else:
            dest += _wide_ints(column, self.byte_size)


def _wide_ints(column: Sequence[int], size: int) -> bytes:
    """Ints as ``size``-byte little-endian two's complement (Int128, Int256), one after another.

    Values within 64 bits (every cost of an interval) are laid out as 64-bit words, their
    sign repeated in the words above, in C; any larger one is converted a value at a time.
    """
    try:
        low = array("q", column)
    except OverflowError:
        low = None
    if low is None or sys.byteorder != "little":
        return b"".join(v.to_bytes(size, "little", signed=True) for v in column)
    step = size // 8
    words = array("q", bytes(size * len(low)))
    words[0::step] = low
    if low and min(low) < 0:
        signs = array("q", [-1 if v < 0 else 0 for v in low])
        for word in range(1, step):
            words[word::step] = signs
    return words.tobytes()


class _Label(StringType, registered=False):
    """A ``LowCardinality(String)`` column whose dictionary is built in C.

    The driver builds it a value at a time in Python (about a quarter of a second for
    400,000 values); this gives the same index (values in first-seen order) and keys.
    """

    def _build_lc_dictionary(self, column: Sequence[Any], ctx: Any) -> tuple[list[Any], list[int]]:  # noqa: ANN401
        if self.nullable:
            return super()._build_lc_dictionary(column, ctx)  # type: ignore[no-any-return]
        index = list(dict.fromkeys(column))
        keys = {value: key for key, value in enumerate(index)}
        return index, list(map(keys.__getitem__, column))


_WIDE = decimal.Context(prec=100)
"""Scaling by 10^S in this context is exact for any value a Decimal(76, S) column holds."""


def _scaled(scale: int) -> Callable[[list[Any]], list[int]]:
    """A decimal column's values (``Decimal`` or int) as ints × 10^scale."""

    def encode(value: object) -> int:
        if isinstance(value, int):
            return value * 10**scale
        return int(value.scaleb(scale, _WIDE))  # type: ignore[attr-defined]

    return lambda column: list(map(encode, column))


@lru_cache(maxsize=None)
def _column_plan(
    table: str,
) -> tuple[list[ClickHouseType], list[tuple[int, Callable[[list[Any]], list[int]]]]]:
    """A table's driver types, and how its timestamp and decimal columns are encoded first.

    Timestamps become whole milliseconds since the epoch, as a ``DateTime64(3)`` column
    stores them (``billing.clock.milli_ticks_column``: the driver's own conversion costs a
    microsecond a value).
    """
    types: list[ClickHouseType] = []
    encoders: list[tuple[int, Callable[[list[Any]], list[int]]]] = []
    for index, column in enumerate(schema.table_spec(table).columns):
        driver_type = get_from_name(column.type)
        if column.type == schema.TIMESTAMP:
            encoders.append((index, milli_ticks_column))
        elif column.type == schema.LABEL:
            driver_type = _Label(driver_type.type_def)
        elif isinstance(driver_type, DecimalType) and not driver_type.nullable:
            driver_type = _ScaledDecimal(
                driver_type.type_def, driver_type.prec, driver_type.byte_size * 8, driver_type.scale
            )
            encoders.append((index, _scaled(driver_type.scale)))
        types.append(driver_type)
    return types, encoders


TICKS, SCALED = "ticks", "scaled"


@lru_cache(maxsize=None)
def column_encodings(table: str) -> tuple[tuple[str, int, int] | None, ...]:
    """How ``encode_columns`` sends each column of a table.

    ``(TICKS, 3, 0)`` for timestamps (whole milliseconds since the epoch), ``(SCALED,
    scale, precision)`` for non-null decimals (ints × 10^scale), None for a column sent
    as it is.
    """
    types, encoders = _column_plan(table)
    encoded = {index for index, _ in encoders}
    plan: list[tuple[str, int, int] | None] = []
    for index, driver_type in enumerate(types):
        if index not in encoded:
            plan.append(None)
        elif isinstance(driver_type, _ScaledDecimal):
            plan.append((SCALED, driver_type.scale, driver_type.prec))
        else:
            plan.append((TICKS, 3, 0))
    return tuple(plan)


Columns = list[list[Any]]
"""A table's values column by column, as an insert sends them (``encode_columns``)."""


def encode_columns(
    table: str, values: Sequence[Sequence[object]], *, scaled: bool = False
) -> Columns:
    """Rows in column order (``schema.row_values``) as the columns an insert sends.

    Timestamps become millisecond ticks and decimals scaled ints (``_column_plan``): plain
    ints and strings, which also pickle cheaply when a batch crosses processes. With
    ``scaled``, every decimal of ``values`` is already an int at its column's scale
    (``billing.outputs.ScaledRow.scaled``) and is sent as it is.
    """
    _, encoders = _column_plan(table)
    if not values:
        return [[] for _ in schema.table_spec(table).columns]
    columns: Columns = [list(column) for column in zip(*values, strict=True)]
    for index, encode in encoders:
        if encode is milli_ticks_column or not scaled:
            columns[index] = encode(columns[index])
    return columns


def encode_rows(table: str, rows: Sequence[Row]) -> Columns:
    """Rows the billing core built for one table as the columns an insert sends.

    Its own exact types, not checked again (``tests/unit/test_core_rows.py`` checks them);
    a ``ScaledRow`` gives its scaled integers, every other row its values.
    """
    grouped = rows_by_table(list(rows)).get(table, ([], []))
    return _encode_grouped(table, *grouped)


def _encode_grouped(table: str, scaled: list[tuple[Any, ...]], others: list[Row]) -> Columns:
    """The columns of a table's rows: the others' (checked types) then the scaled ones."""
    if not others:
        return encode_columns(table, scaled, scaled=True)
    built = schema.built_values(table)
    columns = encode_columns(table, [built(row.values) for row in others])
    if scaled:
        for column, more in zip(columns, encode_columns(table, scaled, scaled=True), strict=True):
            column += more
    return columns


def encode_built(rows: Iterable[Row]) -> dict[str, Columns]:
    """Rows the billing core built as columns per table."""
    columns: dict[str, Columns] = {}
    for table, (scaled, others) in rows_by_table(list(rows)).items():
        columns[table] = _encode_grouped(table, scaled, others)
    return columns


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


_CONTEXT_REFERENCES = ("_next_block_data", "_block_columns", "_block_rows", "_data", "_raw_data")
"""What a driver's insert context holds of its data, and the bound method of its own it keeps."""


def _release(context: InsertContext) -> None:
    """Let an insert's columns go as soon as it is done.

    The driver's insert context keeps one of its own bound methods, so it is in a reference
    cycle, and the columns it holds (up to a whole batch of rows) waited for a full
    collection of the garbage collector: with rarer collections a replay's peak memory grew
    by a third. Dropping these references frees the columns at once and ends the cycle
    (``tests/flow/test_clickhouse.py``).
    """
    for name in _CONTEXT_REFERENCES:
        if hasattr(context, name):
            setattr(context, name, None)


def _open_client(dsn: str) -> Client:
    """Open a clickhouse-connect client for a normalized DSN."""
    try:
        # tz_mode="aware": every datetime read back carries a zone, never naive UTC.
        return clickhouse_connect.get_client(dsn=dsn, tz_mode="aware")
    except _DriverError as ex:
        hint = ""
        if dsn.startswith("chdb:"):
            hint = " (is another process using it? a chdb directory is one process's at a time)"
        reason = redact(str(ex), dsn)
        raise ClickHouseError(f"cannot open ClickHouse at {mask_dsn(dsn)}{hint}: {reason}") from ex


class ClickHouseStore:
    """A ClickHouse target: schema migrations, inserts of checked rows, and queries."""

    def __init__(self, dsn: str, *, create: bool = True) -> None:
        """A store for ``dsn``; with ``create=False`` a missing chdb directory is an error."""
        self.dsn = dsn
        self._create = create
        self._key: str | None = None
        self._shared: _Shared | None = None

    def connect(self) -> None:
        """Open (or join this process's) client for the DSN; does nothing if already open."""
        self._connected()

    def _connected(self) -> _Shared:
        if self._shared is not None:
            return self._shared
        key = normalize_dsn(self.dsn, create=self._create)
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
                raise ClickHouseError(redact(str(ex), self.dsn)) from ex

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
            for table in migration.rebuild:
                self.rebuild(table)
            record = {
                "version": migration.version,
                "description": migration.description,
                "applied_at": dt.datetime.now(_SHANGHAI),
            }
            self.insert_rows(schema.SCHEMA_MIGRATIONS.name, [record])
            applied.append(migration.version)
        return applied

    def rebuild(self, table: str) -> None:
        """Give ``table`` its current definition's keys (sorting, partition), rows kept; repeatable.

        The rows are copied into ``{table}__rebuild`` (the current columns, which the old
        table has too) and the two tables are exchanged atomically; the old one's rows are
        copied once more (what a writer added during the first copy; the key collapses the
        rest) before it is dropped. Run again after a stop at any point, it starts the copy
        over (before the exchange) or only drops what is left (after it): the table's keys
        tell which. A second migration exchanging at the same moment would swap the old
        table back: that is detected after the exchange and raised, with nothing dropped,
        so the next run completes it.
        """
        spec = schema.table_spec(table)
        name, staging = spec.name, schema.quote_identifier(f"{spec.name}__rebuild")
        target = schema.quote_identifier(name)
        engine = self._engine(name)
        if engine is not None and engine != "ReplacingMergeTree":
            self._check_cluster_table(spec, engine)
            return
        wanted = (schema.sorting_key(spec), schema.partition_key(spec))
        if self._keys(name) not in (None, wanted):
            names = ", ".join(schema.quote_identifier(c) for c in spec.column_names)
            copy = f"({names}) SELECT {names} FROM"
            self.command(f"DROP TABLE IF EXISTS {staging}")
            self.command(schema.create_table_sql(spec, f"{name}__rebuild"))
            self.command(f"INSERT INTO {staging} {copy} {target}")
            self.command(f"EXCHANGE TABLES {target} AND {staging}")
            if self._keys(name) != wanted:
                raise ClickHouseError(
                    f"{name} was rebuilt by another migration at the same time; run again"
                )
            self.command(f"INSERT INTO {target} {copy} {staging}")
        self.command(f"DROP TABLE IF EXISTS {staging}")

    def _check_cluster_table(self, spec: schema.TableSpec, engine: str) -> None:
        """A table this store did not make (a cluster's): rebuilt by its operators, never here.

        On a cluster (``wattpay migrate --cluster``) ``{table}`` is a Distributed table over
        the shards' ``{table}_local``; copying it into one server's table and exchanging the
        two would take the table off the cluster. The migration passes when this server's
        ``{table}_local`` has the current keys, and raises, changing nothing, otherwise.
        """
        key, partition = schema.sorting_key(spec), schema.partition_key(spec)
        local = f"{spec.name}_local"
        if engine == "Distributed" and self._keys(local) == (key, partition):
            return
        partitioned = f", partitioned by {partition}" if partition else ""
        raise ClickHouseError(
            f"{spec.name} is a {engine} table, which this migration does not rebuild: give"
            f" {local} on every shard the key ({key}){partitioned} first, as `wattpay migrate"
            " --cluster` creates it (a new table, its rows copied on every shard, the two"
            " exchanged on the cluster, the old one dropped; docs/architecture.md), then run"
            " again"
        )

    def _engine(self, table: str) -> str | None:
        """A table's engine as ClickHouse reports it; None when there is no such table."""
        described = self._described(table)
        return None if described is None else described[0]

    def _keys(self, table: str) -> tuple[str, str] | None:
        """A table's sorting and partition keys as ClickHouse reports them; None without it."""
        described = self._described(table)
        return None if described is None else described[1:]

    def _described(self, table: str) -> tuple[str, str, str] | None:
        """A table's engine, sorting and partition keys (``system.tables``); None without it."""
        _, rows = self.query(
            "SELECT engine, sorting_key, partition_key FROM system.tables"
            " WHERE database = currentDatabase() AND name = {name:String}",
            {"name": table},
        )
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Insert row dicts keyed by column name; every value is checked before anything is sent."""
        self.insert_values(table, [schema.row_values(table, row) for row in rows])

    def insert_values(self, table: str, values: Sequence[Sequence[object]]) -> None:
        """Insert rows already checked by `schema.row_values` (tuples in column order)."""
        self.insert_columns(table, encode_columns(table, values))

    def insert_columns(self, table: str, columns: Columns) -> None:
        """Insert columns as `encode_columns` makes them (nothing is sent for no rows)."""
        if not columns or not columns[0]:
            return
        spec = schema.table_spec(table)
        # Passing the types spares the driver a DESCRIBE TABLE round trip per insert;
        # columns spare it the row-by-row encoding.
        types, _ = _column_plan(table)

        def insert(client: Client) -> None:
            context = client.create_insert_context(
                spec.name,
                column_names=spec.column_names,
                column_types=types,
                column_oriented=True,
                data=columns,
                settings=_INSERT_SETTINGS,
            )
            try:
                client.insert(context=context)
            finally:
                _release(context)

        self._call(insert)

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
        self, sql: str, limits: QueryLimits | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one analyst's read statement under `QueryLimits`; RefusedQuery if not allowed.

        The statement that runs is ClickHouse's own formatting of the one that was checked.
        """
        statement = self.checked_statement(sql)
        limits = limits or QueryLimits()
        try:
            return self._query(statement, None, limits.settings())
        except ClickHouseError as err:
            text = str(err)
            if "TIMEOUT_EXCEEDED" in text:
                reason = f"took longer than {limits.max_seconds}s"
            elif "TOO_MANY_ROWS_OR_BYTES" in text:
                reason = f"returns more than {limits.max_result_rows} rows (add LIMIT or GROUP BY)"
            elif "MEMORY_LIMIT_EXCEEDED" in text:
                reason = f"needs more than {limits.max_memory_bytes} bytes of memory"
            else:
                raise
            raise QueryStopped(f"query stopped: it {reason}") from err

    def checked_statement(self, sql: str) -> str:
        """ClickHouse's formatting of ``sql`` if `store.sqlguard` allows it, else RefusedQuery."""
        check_size(sql)
        formatted = self._format_query(sql)
        check_identifiers(formatted)
        if self._format_query(formatted) != formatted:
            raise RefusedQuery("the statement does not format stably; write it more plainly")
        _, rows = self._query(f"EXPLAIN AST {formatted}", None, None)
        check_tree(parse_ast([str(row[0]) for row in rows]), formatted)
        return formatted

    def _format_query(self, sql: str) -> str:
        """ClickHouse's ``formatQuery``: parses exactly one statement, or fails."""
        # Hex keeps the text a plain literal whatever it holds; nothing of it is executed.
        try:
            _, rows = self._query(
                f"SELECT formatQuery(unhex('{sql.encode('utf-8').hex()}'))", None, None
            )
        except ClickHouseError as err:
            reason = str(err).split(": In scope", 1)[0].split("DB::Exception: ")[-1]
            raise RefusedQuery(f"not one valid statement: {reason}") from err
        return str(rows[0][0])

    def query_arrow(self, sql: str, parameters: Mapping[str, object] | None = None) -> Any:
        """Run a read-only query and return its result as an Arrow table (for batch jobs).

        Jobs select money and energy as scaled integers or strings, so nothing passes
        through a float on the way to polars, and the columns reach it without a Python
        object per value. The SQL is the jobs' own (never a user's: that goes through
        `query_readonly`); user values arrive as bound ``parameters``. ``readonly`` rides in
        the statement: the driver applies an Arrow query's settings with ``SET`` and restores
        them after, which a read-only session refuses, leaving the engine read-only.
        """
        params = dict(parameters) if parameters else None
        statement = f"{sql} SETTINGS readonly = 1"
        return self._call(lambda c: c.query_arrow(statement, parameters=params, use_strings=True))

    def _query(
        self,
        sql: str,
        parameters: Mapping[str, object] | None,
        settings: dict[str, Any] | None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        params = dict(parameters) if parameters else None
        result = self._call(lambda c: c.query(sql, parameters=params, settings=settings))
        return list(result.column_names), [tuple(row) for row in result.result_rows]


def open_migrated(dsn: str) -> Future[ClickHouseStore]:
    """Open ``dsn`` and apply its pending migrations on a thread; the future holds the store.

    Opening chdb and the DDL mostly run without the interpreter lock, so a replay reads and
    bills its first lines meanwhile (BENCHMARKS.md, step 14). The store stays open for the
    caller to close; a failure is the future's exception, with the store already closed.
    """
    prepared: Future[ClickHouseStore] = Future()

    def prepare() -> None:
        store = ClickHouseStore(dsn)
        try:
            store.connect()
            store.migrate()
        except BaseException as ex:  # noqa: BLE001 - handed to whoever waits for the store
            store.close()
            prepared.set_exception(ex)
            return
        prepared.set_result(store)

    threading.Thread(target=prepare, name="clickhouse-migrate", daemon=True).start()
    return prepared


class BatchWriter:
    """Buffers rows per table and writes them in batches bounded by size and by age.

    A buffer is written when it reaches ``max_rows`` or when its oldest row is older than
    ``max_seconds`` (checked on `add`; call `flush_if_due` from a timer when input is idle).
    Rows are checked on `add`, so a bad row fails its caller rather than a later batch.
    A failed write keeps the unwritten tables' rows; writes are repeatable (the tables
    deduplicate), so retrying `flush` is safe. With ``auto_flush=False`` the caller decides
    when to write (``due``, then ``flush``): the loader commits its input after each write.
    """

    def __init__(
        self,
        store: ClickHouseStore,
        *,
        max_rows: int = 10_000,
        max_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        auto_flush: bool = True,
    ) -> None:
        if max_rows < 1 or max_seconds < 0:
            raise ValueError("max_rows must be >= 1 and max_seconds >= 0")
        self._store = store
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        self._clock = clock
        self._auto_flush = auto_flush
        self._buffers: dict[str, Columns] = {}
        self._oldest: float | None = None
        self._closed = False
        self._lock = threading.RLock()

    @property
    def pending(self) -> int:
        """Number of buffered rows not yet written."""
        with self._lock:
            return sum(len(columns[0]) for columns in self._buffers.values())

    def add(self, table: str, row: Mapping[str, object]) -> None:
        """Buffer one row, then flush if a bound is reached."""
        self.add_many(table, [row])

    def add_many(self, table: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Check rows from outside for one table, buffer them, then flush if a bound is reached."""
        schema.table_spec(table)
        self._buffer(table, encode_columns(table, [schema.row_values(table, row) for row in rows]))

    def add_values(self, table: str, values: Sequence[tuple[object, ...]]) -> None:
        """Buffer rows already in column order (``schema.row_values``)."""
        self._buffer(table, encode_columns(table, values))

    def add_built(self, table: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Buffer rows the billing core built (its own exact types, not checked again)."""
        self._buffer(table, encode_columns(table, list(map(schema.built_values(table), rows))))

    def add_columns(self, table: str, columns: Columns) -> None:
        """Buffer columns ``encode_columns`` made (elsewhere: another worker or process).

        The writer keeps the lists it is given: the caller does not use them again.
        """
        self._buffer(table, columns)

    def _buffer(self, table: str, columns: Columns) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("BatchWriter is closed")
            if not columns or not columns[0]:
                return
            buffer = self._buffers.get(table)
            if buffer is None:
                buffer = self._buffers[table] = columns
            else:
                for kept, more in zip(buffer, columns, strict=True):
                    kept.extend(more)
            if self._oldest is None:
                self._oldest = self._clock()
            if not self._auto_flush:
                return
            if len(buffer[0]) >= self._max_rows:
                self.flush()
            else:
                self.flush_if_due()

    def due(self) -> bool:
        """A bound is reached: ``max_rows`` rows buffered, or the oldest waited ``max_seconds``."""
        with self._lock:
            if self._oldest is None:
                return False
            waited = self._clock() - self._oldest >= self._max_seconds
            return waited or self.pending >= self._max_rows

    def flush_if_due(self) -> bool:
        """Flush if the oldest buffered row has waited ``max_seconds``; return whether it did."""
        with self._lock:
            if self._oldest is None or self._clock() - self._oldest < self._max_seconds:
                return False
            self.flush()
            return True

    def take(self) -> dict[str, Columns]:
        """Hand over every table's buffer; writing it is the caller's (``insert_columns``).

        The writer is empty afterwards.
        """
        with self._lock:
            taken, self._buffers, self._oldest = self._buffers, {}, None
            return taken

    def flush(self) -> dict[str, int]:
        """Write every table's buffer, in the order first buffered; the rows written per table."""
        written: dict[str, int] = {}
        with self._lock:
            for table in list(self._buffers):
                self._store.insert_columns(table, self._buffers[table])
                written[table] = len(self._buffers.pop(table)[0])
            self._oldest = None
        return written

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
