"""Every row the billing core builds passes the strict checks its sink no longer repeats."""

from __future__ import annotations

import pickle
import re
from decimal import Decimal

import pytest
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.insert import InsertContext
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.directory import MeterDirectory
from billing.engine import Routed, apply_all, route
from billing.outputs import SCALED_COLUMNS, Row, ScaledRow, ScaledRows
from billing.rejections import Ignored, Rejected
from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.replay_files import merged_envelopes
from store import schema
from store.clickhouse import _Label, _wide_ints, encode_built, encode_columns, encode_rows
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


def _scaled_rows(table: str) -> list[ScaledRow]:
    rows = run_sequential(merged_envelopes(CONFORMANCE / "sample1"), BillingRules())
    found = [o for o in rows if type(o) is ScaledRow and o.table == table]
    assert len(found) > 100
    return found


def test_scaled_columns_are_the_tables_columns_at_their_scales() -> None:
    for table, columns in SCALED_COLUMNS.items():
        spec = schema.table_spec(table)
        assert [name for name, _ in columns] == spec.column_names
        assert [name for name, _ in columns][1] == "account_id"  # the fact messages' key
        for (name, places), column in zip(columns, spec.columns, strict=True):
            decimal = re.fullmatch(r"Decimal\(\d+, (\d+)\)", column.type)
            assert places == (int(decimal.group(1)) if decimal else None), name


def test_interval_rows_keep_integers_that_are_exactly_their_decimal_values() -> None:
    for row in _scaled_rows("intervals"):
        values = row.values
        names = [name for name, _ in SCALED_COLUMNS["intervals"]]
        assert values["kwh"] == Decimal(row.scaled[names.index("kwh")]) / 1000
        assert values["price"] == Decimal(row.scaled[names.index("price")]) / 10_000
        assert values["cost"] == values["kwh"] * values["price"]  # exact, to 10^-7 yuan
        assert row == Row("intervals", values) and Row("intervals", values) == row
        assert pickle.loads(pickle.dumps(row)) == row  # noqa: S301
    for row in _scaled_rows("readings"):
        assert row.values["energy_kwh"] == Decimal(row.scaled[3]) / 1000
        assert row != Row("intervals", row.values)


@pytest.mark.parametrize("table", sorted(SCALED_COLUMNS))
def test_integer_rows_encode_as_their_decimal_values_do(table: str) -> None:
    """Columns from the integers equal the columns of the same rows' checked values."""
    scaled = _scaled_rows(table)
    as_values = [Row(table, row.values) for row in scaled]
    checked = encode_columns(table, [schema.row_values(table, r.values) for r in as_values])
    assert encode_rows(table, scaled) == checked
    assert encode_built(scaled) == {table: checked}
    # Mixed with rows built as values (another writer), each row is still sent exactly once.
    mixed = encode_rows(table, as_values[:5] + scaled[5:])
    assert sorted(zip(*mixed, strict=True)) == sorted(zip(*checked, strict=True))


@pytest.mark.parametrize("table", sorted(SCALED_COLUMNS))
def test_integer_rows_make_the_same_fact_messages(table: str) -> None:
    scaled = _scaled_rows(table)
    as_values = [Row(table, row.values) for row in scaled]
    assert encode_facts(scaled) == encode_facts(as_values)
    assert [fact_columns(p) for _, p in encode_facts(scaled)] == [
        fact_columns(p) for _, p in encode_facts(as_values)
    ]


WIDE = st.integers(min_value=-(2**127), max_value=2**127 - 1)
EDGES = st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**127 - 1, -(2**127)])


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), EDGES, WIDE), max_size=30))
def test_a_wide_decimal_column_is_each_value_in_its_bytes(values: list[int]) -> None:
    # Int128 (a cost's Decimal(38, 7)) and Int256, written in C when the values fit 64 bits.
    for size in (16, 32):
        expected = b"".join(v.to_bytes(size, "little", signed=True) for v in values)
        assert _wide_ints(values, size) == expected


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.sampled_from(["peak", "valley", "flat", "", "é", "peak "]), max_size=40))
def test_a_label_column_gets_the_drivers_dictionary(values: list[str]) -> None:
    driver = get_from_name(schema.LABEL)
    ours = _Label(driver.type_def)
    assert ours._build_lc_dictionary(values, None) == driver._build_lc_dictionary(values, None)
    ours_bytes, theirs = bytearray(), bytearray()
    ours.write_column(values, ours_bytes, InsertContext("t", ["c"], [ours]))
    driver.write_column(values, theirs, InsertContext("t", ["c"], [driver]))
    assert ours_bytes == theirs


def _batches(sample: str, size: int) -> list[list[tuple[str, Routed]]]:
    """The routed messages of a conformance set, in input order, in batches of ``size``."""
    directory, routed = MeterDirectory(), []
    for envelope in merged_envelopes(CONFORMANCE / sample):
        item = route(envelope, directory, BillingRules())
        if not isinstance(item, Rejected | Ignored):
            routed.append(item)
    return [routed[i : i + size] for i in range(0, len(routed), size)]


@pytest.mark.parametrize("sample", ["sample1", "sample2"])
@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_a_batchs_scaled_rows_are_its_rows_without_the_objects(sample: str, size: int) -> None:
    """``apply_all`` with ``scaled_rows``: the same outputs, readings and intervals as one batch."""
    rules = BillingRules()
    plain_states: dict = {}
    scaled_states: dict = {}
    for batch in _batches(sample, size):
        plain = apply_all(plain_states, batch, rules)
        scaled = apply_all(scaled_states, batch, rules, scaled_rows=True)
        assert [o for o in plain if type(o) is not ScaledRow] == [
            o for o in scaled if type(o) is not ScaledRows
        ]
        kept = [o for o in scaled if type(o) is ScaledRows]
        expected: dict[str, list[tuple]] = {}
        for row in plain:
            if type(row) is ScaledRow:
                expected.setdefault(row.table, []).append(row.scaled)
        assert [k.tables for k in kept] == ([expected] if expected else [])
        assert encode_built([o for o in scaled if isinstance(o, Row)]) == encode_built(
            [o for o in plain if isinstance(o, Row)]
        )
    assert plain_states == scaled_states


def test_a_batch_of_scaled_rows_is_not_a_row() -> None:
    batch = ScaledRows({"readings": [("M1", "A1", None, 1, "")]})
    with pytest.raises(TypeError, match="no values of its own"):
        _ = batch.values
