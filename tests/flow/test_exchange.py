"""Whatever crosses workers, the flow gives exactly the sequential reference's outputs.

The first conformance set and a small example set that spans a year end, with 1 and 2 workers
(canonical multisets of rows and messages, as ``test_flow`` compares them).
"""

from datetime import date
from pathlib import Path

import pytest
from bytewax.testing import TestingSource

from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.billing import build_billing_flow, full_topic_names
from pipelines.replay_files import merged_envelopes
from simulate.example import write_example
from tests.flow.conftest import BatchesSink, RunFlow
from tests.flow.test_flow import canonical
from tests.paths import CONFORMANCE


@pytest.fixture(scope="module")
def year_end(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("year-end")
    write_example(directory, households=4, days=24, seed=5, start=date(2026, 12, 14))
    return directory


@pytest.mark.parametrize("name", ["sample1", "year-end"])
def test_flow_outputs_equal_the_sequential_reference(
    run_flow: RunFlow, name: str, year_end: Path
) -> None:
    directory = year_end if name == "year-end" else CONFORMANCE / name
    rules = BillingRules()
    envelopes = list(merged_envelopes(directory))
    rows: list = []
    messages: list = []
    flow = build_billing_flow(
        rules,
        source=TestingSource(envelopes),
        rows=BatchesSink(rows),
        messages=BatchesSink(messages),
    )
    run_flow(flow)
    expected = canonical(full_topic_names(o, "wattpay.") for o in run_sequential(envelopes, rules))
    got = canonical(rows + messages)
    assert got == expected, (got - expected, expected - got)
