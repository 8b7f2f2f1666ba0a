"""Every row the billing core builds passes the strict checks its sink no longer repeats."""

from __future__ import annotations

import pytest

from billing.outputs import Row
from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.replay_files import merged_envelopes
from store import schema
from tests.paths import CONFORMANCE


@pytest.mark.parametrize("sample", ["sample1", "sample2"])
def test_core_rows_have_exactly_the_columns_and_types_of_their_table(sample: str) -> None:
    rows = [o for o in run_sequential(merged_envelopes(CONFORMANCE / sample), BillingRules())]
    rows = [o for o in rows if isinstance(o, Row)]
    assert {r.table for r in rows} >= {"readings", "intervals", "ledger", "accounts", "rejected"}
    for row in rows:
        checked = schema.row_values(row.table, row.values)
        assert schema.built_values(row.table)(row.values) == checked
