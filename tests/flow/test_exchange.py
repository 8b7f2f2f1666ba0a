"""Whatever crosses workers, the flow gives exactly the sequential reference's outputs.

The first conformance set and a small example set that spans a year end, with 1 and 2 workers
(canonical multisets of rows and messages, as ``test_flow`` compares them).
"""

from datetime import date
from pathlib import Path

import pytest

from billing.rules import BillingRules
from pipelines.replay_files import merged_envelopes
from simulate.example import write_example
from tests.flow.conftest import RunFlow
from tests.flow.test_flow import canonical, flow_and_reference
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
    rows, messages, expected = flow_and_reference(run_flow, envelopes, rules)
    got = canonical(rows + messages)
    assert got == expected, (got - expected, expected - got)
