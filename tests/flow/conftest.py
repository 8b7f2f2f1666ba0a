"""Every flow test runs the dataflow with one worker and with two (Bytewax's own practice)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import cluster_main, run_main

RunFlow = Callable[[Dataflow], None]


@pytest.fixture(params=["1-worker", "2-workers"])
def run_flow(request: pytest.FixtureRequest) -> RunFlow:
    """Runs a flow to completion: ``run_main``, or ``cluster_main`` with two worker threads."""
    if request.param == "1-worker":
        return run_main
    return partial(cluster_main, addresses=[], proc_id=0, worker_count_per_proc=2)


class _Flattening(StatelessSinkPartition[tuple[str, list[object]]]):
    def __init__(self, found: list[tuple[str, object]]) -> None:
        self.found = found

    def write_batch(self, items: list[tuple[str, list[object]]]) -> None:
        self.found.extend((key, output) for key, batch in items for output in batch)


class BatchesSink(DynamicSink[tuple[str, list[object]]]):
    """Collects the flow's ``(key, [output, …])`` batches as ``(key, output)`` pairs."""

    def __init__(self, found: list[tuple[str, object]]) -> None:
        self.found = found

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Flattening:
        return _Flattening(self.found)
