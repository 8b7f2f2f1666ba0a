"""ClickHouse table definitions (SPEC S8) as data, and the pure functions that build their SQL.

Nothing here talks to ClickHouse: `store/clickhouse.py` runs what these functions return.

Migrations are numbered and applied once each, in order; `schema_migrations` records the
applied versions. `TABLES` always describes the current schema, and migration 1 creates the
tables from it, so a fresh database gets every column at once. To add a column later:
add it to the table's `columns` below, and append a migration such as
``Migration(2, "readings.quality", (add_column_sql("readings", "quality"),))``; its
``ADD COLUMN IF NOT EXISTS`` upgrades an old database and is a no-op on a fresh one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import lru_cache
from operator import itemgetter

TIMESTAMP = "DateTime64(3, 'Asia/Shanghai')"
DAY = "Date"
MONEY = "Decimal(18, 2)"
ENERGY = "Decimal(18, 3)"
PRICE = "Decimal(18, 4)"
COST = "Decimal(38, 7)"
STRING = "String"
LABEL = "LowCardinality(String)"
MAYBE_ENERGY = f"Nullable({ENERGY})"
MAYBE_MONEY = f"Nullable({MONEY})"
MAYBE_STRING = "Nullable(String)"


@dataclass(frozen=True)
class Column:
    """One column: its name and ClickHouse type."""

    name: str
    type: str


@dataclass(frozen=True)
class TableSpec:
    """A ReplacingMergeTree table: columns in insert order, sorting (dedup) key, version column.

    ``partition_by``: a month of a time column that is part of the sorting key, so the rows of
    one key always share a partition (``FINAL`` stays exact) and a month's reads read that
    month's parts alone.
    """

    name: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    version_column: str | None = None
    partition_by: str | None = None

    @property
    def column_names(self) -> list[str]:
        """Column names in definition order."""
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class Migration:
    """A numbered schema change: statements run in order, then the version is recorded.

    ``rebuild`` names tables whose sorting key changed: each is copied into its current
    definition and swapped in (``ClickHouseStore.rebuild``), unless it already has it.
    """

    version: int
    description: str
    statements: tuple[str, ...]
    rebuild: tuple[str, ...] = ()


def _cols(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, type_) for name, type_ in pairs)


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "readings",
        _cols(
            ("meter_id", STRING),
            ("account_id", STRING),
            ("ts", TIMESTAMP),
            ("energy_kwh", ENERGY),
            ("source", STRING),
        ),
        ("meter_id", "ts"),
    ),
    TableSpec(
        "rejected",
        _cols(
            ("rejection_id", STRING),
            ("topic", LABEL),
            ("key", STRING),
            ("payload", STRING),
            ("payload_base64", "UInt8"),
            ("reason", LABEL),
            ("detail", STRING),
            ("received_at", TIMESTAMP),
        ),
        ("rejection_id",),
    ),
    TableSpec(
        "intervals",
        _cols(
            ("meter_id", STRING),
            ("account_id", STRING),
            ("start", TIMESTAMP),
            ("end", TIMESTAMP),
            ("kwh", ENERGY),
            ("period", LABEL),
            ("tier", "UInt8"),
            ("price", PRICE),
            ("cost", COST),
        ),
        # A rated part is its account's start and tier (ts at the column's milliseconds, as
        # ``readings`` keys a register): no text id to build, send or sort (migration 6).
        ("account_id", "start", "tier"),
        partition_by="toYYYYMM(`start`)",  # migration 7
    ),
    TableSpec(
        "daily_usage",
        _cols(
            ("account_id", STRING),
            ("day", DAY),
            ("kwh", ENERGY),
            ("kwh_peak", ENERGY),
            ("kwh_valley", ENERGY),
            ("kwh_tier1", ENERGY),
            ("kwh_tier2", ENERGY),
            ("kwh_tier3", ENERGY),
            ("charge", MONEY),
            ("ytd_kwh", ENERGY),
            ("closing_balance", MONEY),
        ),
        ("account_id", "day"),
        partition_by="toYYYYMM(`day`)",  # migration 7
    ),
    TableSpec(
        "ledger",
        _cols(
            ("entry_id", STRING),
            ("account_id", STRING),
            ("seq", "UInt64"),
            ("ts", TIMESTAMP),
            ("kind", LABEL),
            ("amount", MONEY),
            ("balance_after", MONEY),
            ("ref", STRING),
        ),
        ("account_id", "entry_id"),
    ),
    TableSpec(
        "points_ledger",
        _cols(
            ("entry_id", STRING),
            ("account_id", STRING),
            ("seq", "UInt64"),
            ("ts", TIMESTAMP),
            ("kind", LABEL),
            ("points", "Int64"),
            ("balance_after", "Int64"),
        ),
        ("account_id", "entry_id"),
    ),
    TableSpec(
        "events",
        _cols(
            ("event_id", STRING),
            ("account_id", STRING),
            ("meter_id", STRING),
            ("ts", TIMESTAMP),
            ("type", LABEL),
            ("data", STRING),
        ),
        ("account_id", "event_id"),
    ),
    TableSpec(
        "accounts",
        _cols(
            ("account_id", STRING),
            ("meter_id", STRING),
            ("plan", STRING),
            ("status", LABEL),
            ("balance", MONEY),
            ("available", MONEY),
            ("overdraft_limit", MONEY),
            ("points", "Int64"),
            ("ytd_kwh", ENERGY),
            ("updated_at", TIMESTAMP),
            ("version", "UInt64"),
            ("opening_balance", MONEY),
            ("landlord_id", STRING),
        ),
        ("account_id",),
        version_column="version",
    ),
    TableSpec(
        "account_events",
        _cols(
            ("event_id", STRING),
            ("account_id", STRING),
            ("ts", TIMESTAMP),
            ("type", LABEL),
            ("meter_id", STRING),
            ("plan", STRING),
            ("payload", STRING),
        ),
        ("account_id", "event_id"),
    ),
    TableSpec(
        "bills",
        _cols(
            ("bill_id", STRING),
            ("account_id", STRING),
            ("month", DAY),
            ("meter_id", STRING),
            ("plan", STRING),
            ("days", "UInt32"),
            ("kwh", ENERGY),
            ("kwh_peak", ENERGY),
            ("kwh_valley", ENERGY),
            ("kwh_tier1", ENERGY),
            ("kwh_tier2", ENERGY),
            ("kwh_tier3", ENERGY),
            ("charge", MONEY),
            ("topups", MONEY),
            ("topup_count", "UInt32"),
            ("rebates", MONEY),
            ("points_redeemed_yuan", MONEY),
            ("refund", MONEY),
            ("opening_balance", MONEY),
            ("closing_balance", MONEY),
            ("points_opening", "Int64"),
            ("points_earned", "Int64"),
            ("points_redeemed", "Int64"),
            ("points_expired", "Int64"),
            ("points_closing", "Int64"),
            ("ytd_kwh", ENERGY),
            ("tier", "UInt8"),
            ("kwh_to_next_tier", MAYBE_ENERGY),
            ("avg_price", f"Nullable({PRICE})"),
            ("kwh_prev_month", MAYBE_ENERGY),
            ("kwh_same_month_last_year", MAYBE_ENERGY),
            ("disconnections", "UInt32"),
            ("invoice_no", MAYBE_STRING),
            ("generated_at", TIMESTAMP),
        ),
        ("account_id", "bill_id"),
    ),
    TableSpec(
        "usage_analysis",
        _cols(
            ("account_id", STRING),
            ("month", DAY),
            ("kwh", ENERGY),
            ("hourly_kwh", f"Array({ENERGY})"),
            ("peak_share", f"Nullable({PRICE})"),
            ("base_load_w", "Nullable(Int64)"),
            ("kwh_change_prev_month", MAYBE_MONEY),
            ("anomaly_days", "UInt32"),
            ("plan", STRING),
            ("charge", MONEY),
            ("alt_plan", STRING),
            ("alt_charge", MONEY),
            ("forecast_kwh", MAYBE_ENERGY),
            ("forecast_charge", MAYBE_MONEY),
            ("generated_at", TIMESTAMP),
        ),
        ("account_id", "month"),
    ),
    TableSpec(
        "invoices",
        _cols(
            ("invoice_no", STRING),
            ("bill_id", STRING),
            ("account_id", STRING),
            ("month", DAY),
            ("issued_at", TIMESTAMP),
            ("amount", MONEY),
            ("amount_excl_tax", MONEY),
            ("tax", MONEY),
            ("tax_rate", MONEY),
            ("item", STRING),
            ("unit", STRING),
            ("quantity_kwh", ENERGY),
            ("unit_price", PRICE),
            ("seller_name", STRING),
            ("seller_tax_id", STRING),
            ("buyer_name", STRING),
            ("pdf_path", STRING),
            ("xml_path", STRING),
        ),
        ("account_id", "invoice_no"),
    ),
    TableSpec(
        "deliveries",
        _cols(
            ("delivery_id", STRING),
            ("event_id", STRING),
            ("type", LABEL),
            ("account_id", STRING),
            ("channel", LABEL),
            ("attempt", "UInt32"),
            ("status", LABEL),
            ("error", STRING),
            ("segments", "UInt8"),
            ("ts", TIMESTAMP),
        ),
        ("event_id", "delivery_id"),
    ),
    TableSpec(
        "tariff_scenarios",
        _cols(
            ("scenario_id", STRING),
            ("account_id", STRING),
            ("period_from", DAY),
            ("period_to", DAY),
            ("plan", STRING),
            ("kwh", ENERGY),
            ("current", MONEY),
            ("proposed", MONEY),
            ("change", MONEY),
            ("generated_at", TIMESTAMP),
        ),
        ("scenario_id", "account_id"),
    ),
)

SCHEMA_MIGRATIONS = TableSpec(
    "schema_migrations",
    _cols(("version", "UInt32"), ("description", STRING), ("applied_at", TIMESTAMP)),
    ("version",),
)

_BY_NAME: dict[str, TableSpec] = {t.name: t for t in (*TABLES, SCHEMA_MIGRATIONS)}


def table_spec(table_name: str) -> TableSpec:
    """Return the definition of a table, or raise ValueError naming the known tables."""
    try:
        return _BY_NAME[table_name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise ValueError(f"unknown table {table_name!r}; known tables: {known}") from None


def quote_identifier(name: str) -> str:
    """Backquote an identifier (``start``/``end`` and friends are keywords)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def sorting_key(table: TableSpec) -> str:
    """The table's sorting key as ClickHouse reports it (``system.tables.sorting_key``)."""
    return ", ".join(table.order_by)


def partition_key(table: TableSpec) -> str:
    """The table's partition key as ClickHouse reports it (``system.tables.partition_key``)."""
    return (table.partition_by or "").replace("`", "")


def create_table_sql(table: TableSpec, name: str | None = None) -> str:
    """Return the ``CREATE TABLE IF NOT EXISTS`` statement for one table (named ``name``)."""
    columns = ",\n".join(f"    {quote_identifier(c.name)} {c.type}" for c in table.columns)
    engine = "ReplacingMergeTree"
    if table.version_column is not None:
        engine += f"({quote_identifier(table.version_column)})"
    keys = [quote_identifier(k) for k in table.order_by]
    order_by = keys[0] if len(keys) == 1 else "(" + ", ".join(keys) + ")"
    partition = f"\nPARTITION BY {table.partition_by}" if table.partition_by else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(name or table.name)}\n(\n{columns}\n)\n"
        f"ENGINE = {engine}{partition}\nORDER BY {order_by}"
    )


def add_column_sql(table_name: str, column_name: str) -> str:
    """Return ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` for a column of the current schema."""
    table = table_spec(table_name)
    names = table.column_names
    if column_name not in names:
        raise ValueError(f"table {table_name!r} has no column {column_name!r}")
    column = table.columns[names.index(column_name)]
    index = names.index(column_name)
    position = "FIRST" if index == 0 else f"AFTER {quote_identifier(names[index - 1])}"
    return (
        f"ALTER TABLE {quote_identifier(table.name)} ADD COLUMN IF NOT EXISTS "
        f"{quote_identifier(column.name)} {column.type} {position}"
    )


_JOB_TABLES = ("account_events", "bills", "usage_analysis", "invoices")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables", tuple(create_table_sql(t) for t in TABLES)),
    Migration(
        2,
        "rejected.payload_base64: 1 when payload holds the base64 of bytes that are not UTF-8",
        (add_column_sql("rejected", "payload_base64"),),
    ),
    Migration(
        3,
        "accounts.opening_balance and landlord_id; account_events, bills, usage_analysis, invoices",
        (
            add_column_sql("accounts", "opening_balance"),
            add_column_sql("accounts", "landlord_id"),
            *(create_table_sql(table_spec(name)) for name in _JOB_TABLES),
        ),
    ),
    Migration(4, "deliveries table (S16)", (create_table_sql(_BY_NAME["deliveries"]),)),
    Migration(
        5,
        "tariff_scenarios table (tariff what-if)",
        (create_table_sql(_BY_NAME["tariff_scenarios"]),),
    ),
    Migration(
        6,
        "intervals keyed by (account_id, start, tier): the interval_id text column is gone",
        (),
        rebuild=("intervals",),
    ),
    Migration(
        7,
        "intervals and daily_usage partitioned by month: a month's reads read that month alone",
        (),
        rebuild=("intervals", "daily_usage"),
    ),
)


def pending_migrations(applied: Iterable[int]) -> list[Migration]:
    """Return the migrations not yet applied, in version order."""
    done = set(applied)
    return [m for m in sorted(MIGRATIONS, key=lambda m: m.version) if m.version not in done]


def migration_statements() -> list[str]:
    """Return every statement that builds the schema on an empty database, in order."""
    statements = [create_table_sql(SCHEMA_MIGRATIONS)]
    for migration in pending_migrations(()):
        statements.extend(migration.statements)
    return statements


def insert_columns(table_name: str) -> list[str]:
    """Return the column names an insert into the table supplies, in order."""
    return table_spec(table_name).column_names


_DECIMAL = re.compile(r"Decimal\((\d+),\s*(\d+)\)")
_INT_RANGES: dict[str, tuple[int, int]] = {
    "UInt8": (0, 2**8 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}


def _check_value(table: str, column: Column, value: object) -> object:
    """Return the value if it fits the column exactly, else raise ValueError."""
    try:
        return _checker(column.type)(value)
    except ValueError as err:
        raise ValueError(f"{table}.{column.name} ({column.type}): {err}") from None


def _check_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError(f"expected str, got {type(value).__name__}")
    return value


def _check_timestamp(value: object) -> object:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
    # The column keeps milliseconds; finer digits are dropped by ClickHouse.
    return value


def _check_day(value: object) -> object:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ValueError(f"expected a date, got {value!r}")
    return value


def _int_checker(low: int, high: int) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"expected an int in [{low}, {high}], got {value!r}")
        return value

    return check


def _decimal_checker(precision: int, scale: int) -> Callable[[object], object]:
    def check(value: object) -> object:
        # The driver truncates extra digits silently (1.005 -> 1.00), so refuse them here.
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"expected a finite Decimal, got {value!r}")
        exponent = value.as_tuple().exponent
        if (
            isinstance(exponent, int)
            and exponent >= -scale
            and value.adjusted() < precision - scale
        ):
            return value  # the common case: no more decimals written than the column keeps
        with localcontext() as ctx:
            ctx.prec = 100  # wide enough that these checks never round (Decimal(38, 7) included)
            scaled = value.scaleb(scale)
            if scaled != scaled.to_integral_value():
                raise ValueError(f"{value} has more than {scale} decimal places")
            if abs(value) >= Decimal(10) ** (precision - scale):
                raise ValueError(f"{value} is out of range")
        return value

    return check


def _array_checker(inner: Callable[[object], object]) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        for item in value:
            inner(item)
        return value

    return check


@lru_cache(maxsize=None)
def _checker(column_type: str) -> Callable[[object], object]:
    """The value check for one column type, built once."""
    if column_type in (STRING, LABEL):
        return _check_text
    if column_type == TIMESTAMP:
        return _check_timestamp
    if column_type == DAY:
        return _check_day
    if column_type.startswith("Nullable(") and column_type.endswith(")"):
        inner = _checker(column_type[len("Nullable(") : -1])
        return lambda value: value if value is None else inner(value)
    if column_type.startswith("Array(") and column_type.endswith(")"):
        return _array_checker(_checker(column_type[len("Array(") : -1]))
    if column_type in _INT_RANGES:
        return _int_checker(*_INT_RANGES[column_type])
    match = _DECIMAL.fullmatch(column_type)
    if match is None:
        raise ValueError(f"{column_type}: no value check for this type")
    return _decimal_checker(int(match.group(1)), int(match.group(2)))


@lru_cache(maxsize=None)
def _row_plan(table_name: str) -> tuple[tuple[str, ...], frozenset[str], tuple, tuple[str, ...]]:
    """Column names, their set, (name, check) pairs and text columns of a table, built once."""
    table = table_spec(table_name)
    names = tuple(table.column_names)
    texts = tuple(c.name for c in table.columns if c.type in (STRING, LABEL))
    checks = tuple((c.name, _checker(c.type)) for c in table.columns if c.name not in texts)
    return names, frozenset(names), checks, texts


def column_checks(table_name: str) -> tuple[tuple[str, Callable[[object], object]], ...]:
    """Every column's value check, ``(name, check)``: what `row_values` applies per row."""
    names, _, checks, texts = _row_plan(table_name)
    return (*checks, *((name, _check_text) for name in texts))


@lru_cache(maxsize=None)
def built_values(table_name: str) -> Callable[[Mapping[str, object]], tuple[object, ...]]:
    """The tuple in `insert_columns` order of a row the billing core built, unchecked.

    The core's rows have its own exact types (tests check them all with `row_values`);
    rows from outside (facts, files) go through `row_values`.
    """
    getter = itemgetter(*table_spec(table_name).column_names)
    return getter if len(table_spec(table_name).column_names) > 1 else lambda r: (getter(r),)


def row_values(table_name: str, row: Mapping[str, object]) -> tuple[object, ...]:
    """Return a row dict as a tuple in `insert_columns` order, checking keys and value types."""
    names, name_set, checks, texts = _row_plan(table_name)
    if len(row) != len(names) or not name_set.issuperset(row):
        missing = [n for n in names if n not in row]
        extra = sorted(k for k in row if k not in name_set)
        raise ValueError(f"{table_name}: row lacks columns {missing}, has unknown columns {extra}")
    try:
        for name, check in checks:
            check(row[name])
        for name in texts:
            if type(row[name]) is not str:
                raise ValueError(name)
    except ValueError:
        for column in table_spec(table_name).columns:  # name the offending column
            _check_value(table_name, column, row[column.name])
        raise
    return tuple([row[name] for name in names])


def as_stored(table_name: str, row: Mapping[str, object]) -> dict[str, object]:
    """A row's values as reading it back gives them: decimals at their column's scale.

    What is rendered from a row (an invoice PDF) is then the same whether the row comes
    from the job that wrote it or from the table.
    """
    stored = dict(row)
    for column in table_spec(table_name).columns:
        match = _DECIMAL.fullmatch(column.type.removeprefix("Nullable(").removesuffix(")"))
        value = stored.get(column.name)
        if match is not None and isinstance(value, Decimal):
            with localcontext() as ctx:
                ctx.prec = 100
                stored[column.name] = value.quantize(Decimal(1).scaleb(-int(match.group(2))))
    return stored
