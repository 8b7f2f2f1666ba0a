"""Analytics rows as JSON fact messages and back, typed by the ClickHouse schema (SPEC S8).

The billing flow publishes every row it produces to the facts topic; the loader turns the
messages back into typed rows and writes them to ClickHouse. Both sides use the table
definitions in `store.schema`, so a round trip is exact (decimals as strings, timestamps as
ISO-8601 with their offset).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from billing.decoding import decode_json
from billing.outputs import Row
from store import schema

# Columns added by a later migration, with the value a fact published before it means.
_ADDED_LATER: dict[str, dict[str, object]] = {"rejected": {"payload_base64": 0}}


def encode_fact(row: Row) -> tuple[str, bytes]:
    """A row as (key, JSON bytes): ``{"table": …, "row": {…}}`` keyed by account when it has one."""
    key = str(row.values.get("account_id") or row.values.get("meter_id") or row.table)
    body = {"table": row.table, "row": {k: _plain(v) for k, v in row.values.items()}}
    return key, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _plain(value: object) -> object:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def decode_fact(payload: bytes) -> Row:
    """A fact message back into a typed row; raises ValueError when it does not fit."""
    try:
        # The input decoder: deep nesting or a lone surrogate (which would reach ClickHouse)
        # is refused like any other fact that does not fit.
        body, problem = decode_json(payload.decode("utf-8"))
        if problem:
            raise ValueError(problem)
        table = str(body["table"])
        raw = body["row"]
        converters = _converters(table)
        raw = {**_ADDED_LATER.get(table, {}), **raw}
        return Row(table, {name: converters[name](raw[name]) for name in converters})
    except (KeyError, TypeError, ValueError, ArithmeticError) as err:
        raise ValueError(f"not a fact message: {err}") from err


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
