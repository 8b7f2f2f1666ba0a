"""Analytics rows as JSON fact messages and back, typed by the ClickHouse schema (SPEC S8).

The billing flow publishes every row it produces to the facts topic; the loader turns the
messages back into typed rows and writes them to ClickHouse. Both sides use the table
definitions in `store.schema`, so a round trip is exact. Two forms share the topic:

- a **batch** (``encode_facts``, the billing flow): up to ``FACTS_PER_MESSAGE`` rows of one
  table as columns, each encoded as an insert sends it (``store.clickhouse.encode_columns``:
  timestamps as milliseconds since the epoch, decimals as ints scaled by their column's
  scale, the rest as JSON values), so neither side formats or parses a value per row;
- a **single row** (``encode_fact``: decimals as strings, timestamps as ISO-8601 with their
  offset), as other writers publish them.

Every row carries its table's id, so a batch written twice collapses under FINAL like rows.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from billing.clock import LOCAL_ZONE
from billing.decoding import decode_json
from billing.excerpt import excerpt
from billing.outputs import Row, ScaledRow
from store import schema
from store.clickhouse import TICKS, Columns, column_encodings, encode_columns, encode_rows

FACTS_PER_MESSAGE = 1_000
"""Rows of one table in one batch message."""
MESSAGE_BYTES = 1 << 20
"""A batch larger than this is split in two until it fits (a single row goes as it is)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# DateTime64(3) holds 1900-01-01 to 2299-12-31: the ticks a batch may carry.
_TICKS_LOW, _TICKS_HIGH = -2_208_988_800_000, 10_413_791_999_999
_WIDE = decimal.Context(prec=100)
"""Exact for any value a Decimal(76, S) column holds."""
_NOT_JSON = re.compile(r"Decimal|Date")
"""Column types whose values a batch carries as text (the others are JSON values already)."""

# Columns added by a later migration, with the value a fact published before it means.
_ADDED_LATER: dict[str, dict[str, object]] = {"rejected": {"payload_base64": 0}}
# Columns a later migration removed: a fact published before it carries them, and they go.
_DROPPED_LATER: dict[str, tuple[str, ...]] = {"intervals": ("interval_id",)}


def encode_fact(row: Row) -> tuple[str, bytes]:
    """A row as (key, JSON bytes): ``{"table": …, "row": {…}}`` keyed by account when it has one."""
    body = {"table": row.table, "row": {k: _plain(v) for k, v in row.values.items()}}
    return _key(row), json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _plain(value: object) -> object:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def encode_facts(rows: Iterable[Row]) -> list[tuple[str, bytes]]:
    """Rows as batch fact messages ``(key, JSON bytes)``: per table, in the order given.

    A message is keyed by the account (or meter) of its first row; the loader needs no
    order between messages, since every table deduplicates by id (accounts by version).
    """
    by_table: dict[str, list[Row]] = {}
    for row in rows:
        by_table.setdefault(row.table, []).append(row)
    messages: list[tuple[str, bytes]] = []
    for table, table_rows in by_table.items():
        for start in range(0, len(table_rows), FACTS_PER_MESSAGE):
            messages += _batch(table, table_rows[start : start + FACTS_PER_MESSAGE])
    return messages


def _batch(table: str, rows: list[Row]) -> list[tuple[str, bytes]]:
    columns = encode_rows(table, rows)
    names = schema.table_spec(table).column_names
    body = {"table": table, "columns": dict(zip(names, columns, strict=True))}
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_plain_value)
    data = payload.encode("utf-8")
    if len(data) > MESSAGE_BYTES and len(rows) > 1:
        half = len(rows) // 2
        return _batch(table, rows[:half]) + _batch(table, rows[half:])
    return [(_key(rows[0]), data)]


def _key(row: Row) -> str:
    """A fact message's key: its (first) row's account, or meter, or table."""
    if type(row) is ScaledRow and row.scaled[1]:
        return str(row.scaled[1])  # account_id: the second column of every scaled table
    values = row.values
    return str(values.get("account_id") or values.get("meter_id") or row.table)


def _plain_value(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fact_columns(payload: bytes) -> tuple[str, Columns, int]:
    """A fact message of either form as ``(table, columns as an insert sends them, rows)``.

    Every value is checked against its column as the single-row form checks it; raises
    ValueError for a message that does not fit, naming why.
    """
    try:
        body, problem = decode_json(payload.decode("utf-8"))
        if problem:
            raise ValueError(problem)
        if "row" in body:
            row = _row(body)
            return (
                row.table,
                encode_columns(row.table, [schema.row_values(row.table, row.values)]),
                1,
            )
        table = _fact_table(body["table"])
        raw = body["columns"]
        if not isinstance(raw, dict):
            raise ValueError("columns is not an object")
        return table, *_checked_columns(table, raw)
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as err:
        raise ValueError(f"not a fact message: {err}") from err


def _checked_columns(table: str, raw: dict[str, Any]) -> tuple[Columns, int]:
    spec = schema.table_spec(table)
    raw = {**{k: None for k in _ADDED_LATER.get(table, {})}, **raw}
    for dropped in _DROPPED_LATER.get(table, ()):
        raw.pop(dropped, None)
    if set(raw) != set(spec.column_names):
        raise ValueError(f"{table}: columns {sorted(raw)} are not {list(spec.column_names)}")
    count = len(raw[spec.column_names[0]]) if isinstance(raw[spec.column_names[0]], list) else 0
    if count == 0:
        raise ValueError(f"{table}: a batch without rows")
    columns: Columns = []
    converters = _converters(table)
    checks = dict(schema.column_checks(table))
    for column, encoding in zip(spec.columns, column_encodings(table), strict=True):
        values = raw[column.name]
        if values is None and column.name in _ADDED_LATER.get(table, {}):
            values = [_ADDED_LATER[table][column.name]] * count
        if not isinstance(values, list) or len(values) != count:
            raise ValueError(f"{table}.{column.name}: not a list of {count} values")
        if encoding is None:
            check = checks[column.name]
            if _NOT_JSON.search(column.type):  # decimals and days travel as text
                convert = converters[column.name]
                values = [convert(value) for value in values]
            for value in values:
                check(value)
        else:
            kind, _, precision = encoding
            low, high = (
                (_TICKS_LOW, _TICKS_HIGH)
                if kind == TICKS
                else (1 - 10**precision, 10**precision - 1)
            )
            for value in values:
                if type(value) is not int or not low <= value <= high:
                    raise ValueError(f"{table}.{column.name}: {value!r} is not an int in range")
        columns.append(values)
    return columns, count


def decode_facts(payload: bytes) -> list[Row]:
    """A fact message of either form as typed rows (what the billing core built)."""
    table, columns, count = fact_columns(payload)
    spec = schema.table_spec(table)
    typed: Columns = []
    for values, encoding in zip(columns, column_encodings(table), strict=True):
        if encoding is None:
            typed.append(values)
        elif encoding[0] == TICKS:
            typed.append(
                [(_EPOCH + timedelta(milliseconds=t)).astimezone(LOCAL_ZONE) for t in values]
            )
        else:
            typed.append([Decimal(value).scaleb(-encoding[1], _WIDE) for value in values])
    names = spec.column_names
    return [Row(table, dict(zip(names, row, strict=True))) for row in zip(*typed, strict=True)]


def decode_fact(payload: bytes) -> Row:
    """A fact message back into a typed row; raises ValueError when it does not fit."""
    try:
        # The input decoder: deep nesting or a lone surrogate (which would reach ClickHouse)
        # is refused like any other fact that does not fit.
        body, problem = decode_json(payload.decode("utf-8"))
        if problem:
            raise ValueError(problem)
        return _row(body)
    except (KeyError, TypeError, ValueError, ArithmeticError) as err:
        raise ValueError(f"not a fact message: {err}") from err


def _row(body: dict[str, Any]) -> Row:
    """The typed row of a decoded single-row fact; raises what its values raise."""
    table = _fact_table(body["table"])
    raw = body["row"]
    converters = _converters(table)
    raw = {**_ADDED_LATER.get(table, {}), **raw}
    return Row(table, {name: converters[name](raw[name]) for name in converters})


_FACT_TABLES = frozenset(t.name for t in schema.TABLES)
"""The tables a fact may fill: every analytics table, never the migrations' own."""


def _fact_table(name: object) -> str:
    if name not in _FACT_TABLES:
        raise ValueError(f"{excerpt(str(name))} is not a table facts fill")
    return str(name)


@lru_cache(maxsize=None)
def _converters(table: str) -> dict[str, Callable[[Any], Any]]:
    return {c.name: _converter(c.type) for c in schema.table_spec(table).columns}


def _converter(column_type: str) -> Callable[[Any], Any]:
    if column_type.startswith("Nullable(") and column_type.endswith(")"):
        inner = _converter(column_type[len("Nullable(") : -1])
        return lambda value: None if value is None else inner(value)
    if column_type.startswith("Array(") and column_type.endswith(")"):
        item = _converter(column_type[len("Array(") : -1])
        return lambda values: [item(v) for v in values]
    if column_type == schema.TIMESTAMP:
        return datetime.fromisoformat
    if column_type == schema.DAY:
        return date.fromisoformat
    if column_type.startswith("Decimal"):
        return lambda value: Decimal(str(value))
    if "Int" in column_type:
        return int
    return str
