import csv
import datetime as dt
import io
import json
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from wattpay.sqlformat import format_result

SHANGHAI = ZoneInfo("Asia/Shanghai")
COLUMNS = ["account_id", "balance", "ts", "day", "note"]
ROWS = [
    (
        "A-001",
        Decimal("93.48"),
        dt.datetime(2024, 3, 1, 20, 30, 15, 123000, tzinfo=SHANGHAI),
        dt.date(2024, 3, 1),
        'said "hi", then left',
    ),
    ("A-002", Decimal("-5.00"), dt.datetime(2024, 3, 1, tzinfo=dt.UTC), None, "two\nlines"),
]


def test_csv_has_a_header_and_rfc4180_quoting() -> None:
    assert format_result(COLUMNS, ROWS, "csv") == (
        "account_id,balance,ts,day,note\r\n"
        'A-001,93.48,2024-03-01T20:30:15.123+08:00,2024-03-01,"said ""hi"", then left"\r\n'
        'A-002,-5.00,2024-03-01T00:00:00.000+00:00,,"two\nlines"\r\n'
    )


def test_csv_round_trips_through_a_csv_reader() -> None:
    parsed = list(csv.reader(io.StringIO(format_result(COLUMNS, ROWS, "csv"), newline="")))
    assert parsed[0] == COLUMNS
    assert parsed[1][4] == 'said "hi", then left'
    assert parsed[2][4] == "two\nlines"


def test_json_is_an_array_of_objects_with_exact_decimals() -> None:
    text = format_result(COLUMNS, ROWS, "json")
    assert json.loads(text) == [
        {
            "account_id": "A-001",
            "balance": "93.48",
            "ts": "2024-03-01T20:30:15.123+08:00",
            "day": "2024-03-01",
            "note": 'said "hi", then left',
        },
        {
            "account_id": "A-002",
            "balance": "-5.00",
            "ts": "2024-03-01T00:00:00.000+00:00",
            "day": None,
            "note": "two\nlines",
        },
    ]
    assert dt.datetime.fromisoformat(json.loads(text)[0]["ts"]) == ROWS[0][2]


def test_json_keeps_numbers_and_unicode() -> None:
    text = format_result(
        ["n", "f", "ok", "name", "tags"], [(3, 0.5, True, "电表", ["a", 1])], "json"
    )
    assert text == '[\n{"n": 3, "f": 0.5, "ok": true, "name": "电表", "tags": ["a", 1]}\n]\n'


def test_table_aligns_columns_under_a_separator() -> None:
    assert format_result(COLUMNS, ROWS, "table") == (
        "account_id  balance  ts                             day         note\n"
        "----------  -------  -----------------------------  ----------  --------------------\n"
        'A-001         93.48  2024-03-01T20:30:15.123+08:00  2024-03-01  said "hi", then left\n'
        "A-002         -5.00  2024-03-01T00:00:00.000+00:00              two\\nlines\n"
    )


def test_table_counts_wide_characters_twice() -> None:
    lines = [
        "name  kwh",
        "----  ---",
        "电表  1.5",
        "m      10",
    ]
    table = format_result(["name", "kwh"], [("电表", Decimal("1.5")), ("m", 10)], "table")
    assert table.splitlines() == lines


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("csv", "a,b\r\n"), ("json", "[]\n"), ("table", "a  b\n-  -\n")],
)
def test_empty_results(fmt: str, expected: str) -> None:
    assert format_result(["a", "b"], [], fmt) == expected


def test_unknown_format_raises() -> None:
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        format_result(["a"], [(1,)], "xml")


def test_row_width_must_match_columns() -> None:
    with pytest.raises(ValueError, match="2 values for 1 columns"):
        format_result(["a"], [(1, 2)], "csv")
