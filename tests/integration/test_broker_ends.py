"""Readers find every partition's end by their own means after the broker's store crashed.

After its S3 store is killed and restarted, the embedded broker answers a ListOffsets query
with an end below what it acknowledged (its fetch responses stay right), and a partition can
end in an offset gap where no end-of-partition event ever comes. Readers must neither stop
before what the publisher was told landed, nor wait for an end that never comes, and their
lag must count from the fetch responses' end.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bus.kafka import JsonProducer, PartitionReader, ensure_topics
from tests.store_crash import kill_store, send_until_confirmed, supervise
from wattpay.durable import EmbeddedKafka

pytestmark = [pytest.mark.live, pytest.mark.slow]
TOPIC = "ends-after-crash"
BATCH = 40


def test_readers_reach_what_was_acknowledged_promptly_and_count_lag_from_it(
    tmp_path: Path,
) -> None:
    kafka = EmbeddedKafka(tmp_path / "state").start()
    stop = threading.Event()
    supervisor = threading.Thread(target=supervise, args=(kafka, stop), daemon=True)
    supervisor.start()
    try:
        ensure_topics(kafka.config, [TOPIC], 4)
        acknowledged = _publish_through_a_store_crash(kafka)
        assert len(acknowledged) == 4

        reader = PartitionReader(kafka.config, TOPIC, None)
        started = time.monotonic()
        records = reader.read_to_end(60.0)
        took = time.monotonic() - started
        reader.close()
        read_ends = {}
        for record in records:
            read_ends[record.partition] = max(read_ends.get(record.partition, 0), record.offset + 1)
        assert read_ends == acknowledged, "a reader stopped before what was acknowledged"
        assert took < 15.0, f"reading to the end took {took:.1f} s"

        # A group that committed half of each partition: its lag is the other half, counted
        # from the fetch responses, whatever the broker's ListOffsets answer says.
        half = {p: end // 2 for p, end in acknowledged.items()}
        committer = PartitionReader(kafka.config, TOPIC, "half-way")
        committer.commit(half)
        committer.close()
        behind = PartitionReader(kafka.config, TOPIC, "half-way")
        deadline = time.monotonic() + 20
        lag = behind.lag()
        while len(lag) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
            lag = behind.lag()
        behind.close()
        assert lag == {p: acknowledged[p] - half[p] for p in acknowledged}
    finally:
        stop.set()
        supervisor.join(10)
        kafka.stop()


def _publish_through_a_store_crash(kafka: EmbeddedKafka) -> dict[int, int]:
    """Publish batches, the store killed after the eighth; return the acknowledged ends."""
    producer = JsonProducer(kafka.config, flush_timeout=15.0)
    deadline = time.monotonic() + 120
    for number in range(24):
        batch = [{"i": number * BATCH + i} for i in range(BATCH)]
        send_until_confirmed(producer, TOPIC, batch, deadline)
        if number == 8:
            threading.Timer(0.2, kill_store, (kafka,)).start()
        time.sleep(0.05)
    producer.close()
    return {p: end for (topic, p), end in producer.acknowledged.items() if topic == TOPIC}
