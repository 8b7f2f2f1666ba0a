"""The billing input's partition ends around a broker restart (pipelines.kafka_source)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from bus.kafka import JsonProducer
from pipelines.kafka_source import FIRST_ANSWER_SECONDS, GAP_SECONDS, _MergedPartition
from tests.live_harness import start_broker

pytestmark = pytest.mark.live
TOPICS = {"readings": "wattpay.readings", "payments": "wattpay.payments"}


@pytest.fixture
def broker() -> Iterator[dict[str, str]]:
    embedded = start_broker(partitions=1)
    try:
        yield embedded.config
    finally:
        embedded.stop()


def _at_end(part: _MergedPartition) -> None:
    for _ in range(200):  # every partition reports its end
        part.next_batch()
        if part._ends.all_at_end:
            return
    raise AssertionError("the partitions never reported their ends")


def _reading(config: dict[str, str]) -> None:
    with JsonProducer(config) as producer:
        reading = {"meter_id": "M1", "ts": "2026-06-01T00:15:00+08:00", "energy_kwh": "1.000"}
        producer.send("wattpay.readings", "M1", reading)


def _answer(part: _MergedPartition) -> None:
    for _ in range(200):
        part.next_batch()
        if not part._buffers["wattpay.readings:0"] and part._positions.get("wattpay.readings:0"):
            return
    raise AssertionError("the reading never came")


def test_ends_reported_before_every_broker_was_lost_are_asked_again(
    broker: dict[str, str],
) -> None:
    part = _MergedPartition(broker, TOPICS, None)
    try:
        _at_end(part)
        part._client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
        part.next_batch()
        assert part._ends.all_at_end  # nothing answered since: the ends wait for one
        _reading(broker)
        _answer(part)
        # The first answer makes every partition report again; the payments partition's
        # end is not repeated at the same offset, so it holds the merge until it falls
        # silent for the ordinary quiet time (the reading can take that long to come).
        payments = "wattpay.payments:0"
        assert not part._ends.at_end(payments) or part._ends.silent(payments)
        assert part._ends.quiet == GAP_SECONDS < FIRST_ANSWER_SECONDS == part._ends.first_quiet
    finally:
        part.close()


def test_one_closed_connection_leaves_the_ends_alone(broker: dict[str, str]) -> None:
    """A broker closes an idle client's connection: not a reason to hold billing."""
    part = _MergedPartition(broker, TOPICS, None)
    try:
        _at_end(part)
        part._client_error(KafkaError(KafkaError._TRANSPORT))
        _reading(broker)
        _answer(part)
        payments = "wattpay.payments:0"
        assert part._ends.at_end(payments) and not part._ends.silent(payments)  # its end kept
    finally:
        part.close()
