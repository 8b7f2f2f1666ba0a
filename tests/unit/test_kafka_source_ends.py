"""The billing input's partition ends around a broker restart (pipelines.kafka_source)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from pipelines.kafka_source import FIRST_ANSWER_SECONDS, GAP_SECONDS, _MergedPartition
from tests.live_harness import start_broker

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def broker() -> Iterator[dict[str, str]]:
    embedded = start_broker(partitions=1)
    try:
        yield embedded.config
    finally:
        embedded.stop()


def _partition(config: dict[str, str]) -> _MergedPartition:
    topics = {"readings": "wattpay.readings", "payments": "wattpay.payments"}
    return _MergedPartition(config, topics, None)


def test_ends_reported_before_a_lost_broker_are_asked_again(broker: dict[str, str]) -> None:
    part = _partition(broker)
    try:
        for _ in range(200):  # both empty partitions report their end
            part.next_batch()
            if part._ends.all_at_end:
                break
        assert part._ends.all_at_end
        part._client_error(KafkaError(KafkaError._PARTITION_EOF))
        part.next_batch()
        assert part._ends.all_at_end  # not a broker error
        part._client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
        part.next_batch()
        # Each partition must report again (its end is not repeated at the same offset):
        # until then it holds the merge, for the ordinary quiet time at most.
        assert not any(part._ends.at_end(key) for key in part._buffers)
        assert part._ends.quiet == GAP_SECONDS < FIRST_ANSWER_SECONDS == part._ends.first_quiet
    finally:
        part.close()
