"""Every flow test runs the dataflow with one worker and with two (Bytewax's own practice)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

RunFlow = Callable[[Dataflow], None]


@pytest.fixture(params=["1-worker", "2-workers"])
def run_flow(request: pytest.FixtureRequest) -> RunFlow:
    """Runs a flow to completion: ``run_main``, or ``cluster_main`` with two worker threads."""
    if request.param == "1-worker":
        return run_main
    return partial(cluster_main, addresses=[], proc_id=0, worker_count_per_proc=2)
