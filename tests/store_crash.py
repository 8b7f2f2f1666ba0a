"""Killing the durable broker's S3 store under a publisher, as the store-crash tests do."""

from __future__ import annotations

import os
import signal
import threading
import time

from bus.kafka import DeliveryError, JsonProducer
from wattpay.durable import EmbeddedKafka


def send_until_confirmed(
    producer: JsonProducer, topic: str, batch: list[dict[str, int]], deadline: float
) -> int:
    """Send a batch until one flush confirms it all, as wattpay's publishers do; the failures."""
    failures = 0
    while True:
        for value in batch:
            producer.send(topic, f"k{value['i']}", value)
        try:
            producer.flush()
            return failures
        except DeliveryError:  # what wattpay's publishers do: send it again
            failures += 1
            time.sleep(0.5)
            assert time.monotonic() < deadline, "the publisher never recovered"


def kill_store(kafka: EmbeddedKafka) -> None:
    """SIGKILL the S3 store (the supervisor starts it again)."""
    pid = kafka.pids()["store"]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def supervise(
    kafka: EmbeddedKafka, stop: threading.Event, restarted: threading.Event | None = None
) -> None:
    """What `up` does every second: start a dead store or broker again."""
    while not stop.wait(1.0):
        lines = kafka.check()
        if restarted is not None and any("S3 store restarted" in line for line in lines):
            restarted.set()
