"""Route and order buckets spread evenly over Bytewax's workers (its own key placement)."""

from collections import Counter

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from pipelines.routing import LIFECYCLE_KEY, ORDER_KEYS, ROUTE_KEYS


class _WorkerOf(DynamicSink):
    """Records, for every key that reaches the sink, the index of the worker it was on."""

    def __init__(self) -> None:
        self.found: dict[str, int] = {}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        found = self.found

        class _Partition(StatelessSinkPartition):
            def write_batch(self, items: list[tuple[str, None]]) -> None:
                for key, _ in items:
                    found[key] = worker_index

        return _Partition()


def placement(keys: list[str], workers: int) -> dict[str, int]:
    """The worker Bytewax gives each key of a keyed step, with ``workers`` workers."""
    flow = Dataflow("placement")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda key: key)
    sink = _WorkerOf()
    op.output("out", op.stateful_map("state", keyed, lambda _, __: (None, None)), sink)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return sink.found


@pytest.mark.parametrize("workers", [2, 3, 4, 8])
def test_bucket_b_is_on_worker_b_mod_n(workers: int) -> None:
    found = placement([*ROUTE_KEYS, *ORDER_KEYS, LIFECYCLE_KEY], workers)
    for keys in (ROUTE_KEYS, ORDER_KEYS):
        assert [found[key] for key in keys] == [b % workers for b in range(len(keys))]
        shares = Counter(found[key] for key in keys)
        assert max(shares.values()) - min(shares.values()) <= 1
        assert len(shares) == min(workers, len(keys))


def test_the_old_names_were_uneven() -> None:
    # What the names above fix: 6 of 8 route buckets on one of two workers.
    found = placement([f"route-{b}" for b in range(8)], 2)
    assert sorted(Counter(found.values()).values()) == [2, 6]
