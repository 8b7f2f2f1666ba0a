"""Render a query result as CSV, JSON or an aligned text table (``wattpay sql --format``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from typing import Any

FORMATS = ("csv", "json", "table")


def format_result(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Return the result rendered as ``fmt``, one of `FORMATS`; anything else raises ValueError."""
    renderers: dict[str, Callable[[Sequence[str], Sequence[Sequence[Any]]], str]] = {
        "csv": _csv,
        "json": _json,
        "table": _table,
    }
    try:
        render = renderers[fmt]
    except KeyError:
        raise ValueError(
            f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}"
        ) from None
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} values for {len(columns)} columns")
    return render(columns, rows)


def json_value(value: Any) -> Any:
    """Return a JSON-ready value: Decimal as a string (exact), datetimes and dates as ISO-8601.

    Aware datetimes keep their UTC offset (``2024-03-01T20:30:15.123+08:00``); non-finite floats,
    which JSON cannot carry, become the strings ``"nan"``, ``"inf"`` and ``"-inf"``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return _iso_datetime(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(v) for v in value]
    if isinstance(value, (uuid.UUID, IPv4Address, IPv6Address)):
        return str(value)
    return str(value)


def text_value(value: Any) -> str:
    """Return a cell as plain text: empty for NULL, ISO-8601 for dates, JSON for containers."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return json.dumps(json_value(value), ensure_ascii=False)
    rendered = json_value(value)
    return rendered if isinstance(rendered, str) else json.dumps(rendered)


def _iso_datetime(value: dt.datetime) -> str:
    """ISO-8601 with milliseconds (microseconds if present); aware values keep their offset."""
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.isoformat(timespec=spec)


def _csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: CRLF, quotes doubled
    writer.writerow(columns)
    writer.writerows([text_value(v) for v in row] for row in rows)
    return out.getvalue()


def _json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render a JSON array with one object per line."""
    if not rows:
        return "[]\n"
    objects = (
        json.dumps(
            {name: json_value(v) for name, v in zip(columns, row, strict=True)},
            ensure_ascii=False,
        )
        for row in rows
    )
    return "[\n" + ",\n".join(objects) + "\n]\n"


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_one_line(text_value(v)) for v in row] for row in rows]
    header = [_one_line(c) for c in columns]
    widths = [_width(h) for h in header]
    for row in cells:
        widths = [max(w, _width(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(_is_number(row[i]) for row in rows if row[i] is not None)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            " " * (w - _width(v)) + v if right else v + " " * (w - _width(v))
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(header), "  ".join("-" * w for w in widths)]
    lines.extend(line(row) for row in cells)
    return "\n".join(lines) + "\n"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _one_line(text: str) -> str:
    """Show line breaks and tabs as escapes so each row stays on one line of the table."""
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _width(text: str) -> int:
    """Terminal columns the text takes: wide (CJK) characters count two, combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )
