"""Fact messages round-trip every table's row exactly (decimals, timestamps, nulls, arrays)."""

import json

import pytest

from billing.outputs import Row
from store import schema
from store.clickhouse import encode_columns
from store.facts import (
    FACTS_PER_MESSAGE,
    decode_fact,
    decode_facts,
    encode_fact,
    encode_facts,
    fact_columns,
)
from tests.flow.test_clickhouse import SAMPLE_ROWS


@pytest.mark.parametrize("table", sorted(SAMPLE_ROWS))
def test_fact_round_trip(table: str) -> None:
    row = Row(table, SAMPLE_ROWS[table])
    _, payload = encode_fact(row)
    back = decode_fact(payload)
    assert back == row
    for name, value in row.values.items():
        assert type(back.values[name]) is type(value), name


@pytest.mark.parametrize("table", sorted(SAMPLE_ROWS))
def test_a_batch_round_trips_every_table(table: str) -> None:
    row = Row(table, SAMPLE_ROWS[table])
    [(key, payload)] = encode_facts([row])
    assert key == str(row.values.get("account_id") or row.values.get("meter_id") or table)
    assert decode_facts(payload) == [row]
    # The loader gets what a direct insert of the row sends, and the single form agrees.
    direct = encode_columns(table, [schema.row_values(table, row.values)])
    assert fact_columns(payload) == (table, direct, 1)
    assert fact_columns(encode_fact(row)[1]) == (table, direct, 1)


def test_batches_split_by_table_count_and_size() -> None:
    intervals = Row("intervals", SAMPLE_ROWS["intervals"])
    readings = Row("readings", SAMPLE_ROWS["readings"])
    rows = [intervals, readings] * (FACTS_PER_MESSAGE + 1)
    messages = encode_facts(rows)
    counts = [(json.loads(payload)["table"], fact_columns(payload)[2]) for _, payload in messages]
    assert counts == [
        ("intervals", FACTS_PER_MESSAGE),
        ("intervals", 1),
        ("readings", FACTS_PER_MESSAGE),
        ("readings", 1),
    ]
    assert [row for _, p in messages for row in decode_facts(p)] == sorted(
        rows, key=lambda r: r.table
    )


def test_a_batch_over_a_megabyte_is_split_but_a_single_row_is_not() -> None:
    big = {**SAMPLE_ROWS["rejected"], "payload": "x" * 700_000}
    rows = [Row("rejected", {**big, "rejection_id": f"r{i}"}) for i in range(3)]
    messages = encode_facts(rows)
    assert [fact_columns(p)[2] for _, p in messages] == [1, 1, 1]
    huge = Row("rejected", {**big, "payload": "x" * 3_000_000})
    [(_, payload)] = encode_facts([huge])
    assert decode_facts(payload) == [huge]


def test_facts_published_before_migration_6_still_load_without_their_interval_id() -> None:
    # A facts topic may still hold intervals published with the text id when the loader is
    # upgraded: the column the migration removed is dropped, every other value is kept.
    row = Row("intervals", SAMPLE_ROWS["intervals"])
    [(_, payload)] = encode_facts([row])
    body = json.loads(payload)
    body["columns"] = {"interval_id": ["A-001:2024-03-01T07:45:00+08:00:255"], **body["columns"]}
    old_batch = json.dumps(body).encode()
    assert decode_facts(old_batch) == [row]
    assert fact_columns(old_batch) == fact_columns(payload)
    single = json.loads(encode_fact(row)[1])
    single["row"]["interval_id"] = "A-001:2024-03-01T07:45:00+08:00:255"
    assert decode_fact(json.dumps(single).encode()) == row
    # Any other column that is not the table's is still refused.
    body["columns"]["note"] = ["x"]
    with pytest.raises(ValueError, match="are not"):
        fact_columns(json.dumps(body).encode())
