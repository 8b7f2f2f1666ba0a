"""The durable broker's S3 store SIGKILLed under a publisher: nothing lost, the publisher goes on.

Tansu writes a produce request to its store in steps (for an idempotent producer: the
sequence, then the offsets, then the batch). A store that dies between them leaves an
idempotent producer fenced for good, or tells it a batch landed that never did. wattpay's
publishers (``JsonProducer``: meters, notifications, the CLI) therefore send without
idempotence, one request in flight, and send again what was not confirmed.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from bus.kafka import JsonProducer, consume_json, ensure_topics
from tests.store_crash import kill_store, send_until_confirmed, supervise
from wattpay.durable import EmbeddedKafka

pytestmark = [pytest.mark.live, pytest.mark.slow]
TOPIC = "store-crash"
BATCH = 40


def test_publisher_survives_its_brokers_store_killed_and_loses_nothing(tmp_path: Path) -> None:
    kafka = EmbeddedKafka(tmp_path / "state").start()
    restarted, stop = threading.Event(), threading.Event()
    supervisor = threading.Thread(target=supervise, args=(kafka, stop, restarted), daemon=True)
    supervisor.start()
    try:
        ensure_topics(kafka.config, [TOPIC], 2)
        producer = JsonProducer(kafka.config, flush_timeout=15.0)
        sent = failed_batches = after_restart = 0
        deadline = time.monotonic() + 120
        while after_restart < 10:
            assert time.monotonic() < deadline, (
                f"the publisher still fails after the store came back ({failed_batches} failures)"
            )
            batch = [{"i": i} for i in range(sent, sent + BATCH)]
            failed_batches += send_until_confirmed(producer, TOPIC, batch, deadline)
            sent += BATCH
            after_restart += restarted.is_set()
            if sent == 10 * BATCH:  # killed while the next batches are on their way
                threading.Timer(0.3, kill_store, (kafka,)).start()
            time.sleep(0.01)
        producer.close()
        values = Counter(
            json.dumps(v, sort_keys=True) for _, v in consume_json(kafka.config, TOPIC, timeout=60)
        )
    finally:
        stop.set()
        supervisor.join(10)
        kafka.stop()
    expected = {json.dumps({"i": i}, sort_keys=True) for i in range(sent)}
    assert not expected - set(values), "confirmed messages missing from the topic"
    assert set(values) == expected
    # A copy can only come from a batch sent again after a reported failure.
    assert sum(n - 1 for n in values.values()) <= failed_batches * BATCH
