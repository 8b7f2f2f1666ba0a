"""Fact messages round-trip every table's row exactly (decimals, timestamps, nulls, arrays)."""

import pytest

from billing.outputs import Row
from store.facts import decode_fact, encode_fact
from tests.flow.test_clickhouse import SAMPLE_ROWS


@pytest.mark.parametrize("table", sorted(SAMPLE_ROWS))
def test_fact_round_trip(table: str) -> None:
    row = Row(table, SAMPLE_ROWS[table])
    _, payload = encode_fact(row)
    back = decode_fact(payload)
    assert back == row
    for name, value in row.values.items():
        assert type(back.values[name]) is type(value), name
