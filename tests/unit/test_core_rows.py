"""Every row the billing core builds passes the strict checks its sink no longer repeats."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from billing.outputs import IntervalRow, Row
from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.replay_files import merged_envelopes
from store import schema
from store.clickhouse import encode_built, encode_columns, encode_rows
from store.facts import encode_facts, fact_columns
from tests.paths import CONFORMANCE


@pytest.mark.parametrize("sample", ["sample1", "sample2"])
def test_core_rows_have_exactly_the_columns_and_types_of_their_table(sample: str) -> None:
    rows = [o for o in run_sequential(merged_envelopes(CONFORMANCE / sample), BillingRules())]
    rows = [o for o in rows if isinstance(o, Row)]
    assert {r.table for r in rows} >= {"readings", "intervals", "ledger", "accounts", "rejected"}
    for row in rows:
        checked = schema.row_values(row.table, row.values)
        assert schema.built_values(row.table)(row.values) == checked


def _interval_rows() -> list[IntervalRow]:
    rows = run_sequential(merged_envelopes(CONFORMANCE / "sample1"), BillingRules())
    found = [o for o in rows if type(o) is IntervalRow]
    assert len(found) > 100
    return found


def test_interval_rows_keep_integers_that_are_exactly_their_decimal_values() -> None:
    for row in _interval_rows():
        values = row.values
        assert values["kwh"] == Decimal(row.scaled[5]) / 1000
        assert values["price"] == Decimal(row.scaled[8]) / 10_000
        assert values["cost"] == values["kwh"] * values["price"]  # exact, to 10^-7 yuan
        assert row == Row("intervals", values) and Row("intervals", values) == row
        assert pickle.loads(pickle.dumps(row)) == row  # noqa: S301


def test_integer_rows_encode_as_their_decimal_values_do() -> None:
    """Columns from the integers equal the columns of the same rows' checked values."""
    intervals = _interval_rows()
    as_values = [Row("intervals", row.values) for row in intervals]
    checked = encode_columns(
        "intervals", [schema.row_values("intervals", r.values) for r in as_values]
    )
    assert encode_rows("intervals", intervals) == checked
    assert encode_built(intervals) == {"intervals": checked}
    # Mixed with rows built as values (another writer), each row is still sent exactly once.
    mixed = encode_rows("intervals", as_values[:5] + intervals[5:])
    assert sorted(zip(*mixed, strict=True)) == sorted(zip(*checked, strict=True))


def test_integer_rows_make_the_same_fact_messages() -> None:
    intervals = _interval_rows()
    as_values = [Row("intervals", row.values) for row in intervals]
    assert encode_facts(intervals) == encode_facts(as_values)
    assert [fact_columns(p) for _, p in encode_facts(intervals)] == [
        fact_columns(p) for _, p in encode_facts(as_values)
    ]
