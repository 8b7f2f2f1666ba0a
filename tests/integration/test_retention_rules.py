"""One janitor round on the real durable broker: what goes and what stays (wattpay/retention.py).

A facts partition a group committed on loses its batches below the commit and keeps the rest;
the partition it has not committed on yet keeps everything; readings go only below the
recovery snapshot's position; account events stay; a reader from the start skips the gap.
"""

from __future__ import annotations

import pickle
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from bus.kafka import ensure_topics
from config.retention import RetentionSettings
from tests.crash_harness import read_values
from wattpay.durable import BUCKET, EmbeddedKafka
from wattpay.retention import BatchObjects, Janitor

pytestmark = [pytest.mark.live]
TOPICS = ("wattpay.facts", "wattpay.readings", "wattpay.accounts", "wattpay.notifications")


def publish(config: dict[str, str], topic: str, partition: int, batches: int) -> None:
    """``batches`` batches of 5 messages each, one flush per batch."""
    producer = Producer({**config, "linger.ms": "50"})
    for batch in range(batches):
        for i in range(5):
            producer.produce(topic, value=f"{batch}-{i}".encode(), partition=partition)
        assert producer.flush(10) == 0


def snapshot(recovery: Path, positions: dict[str, int]) -> None:
    """A recovery store whose input source is at ``positions``."""
    recovery.mkdir()
    connection = sqlite3.connect(recovery / "part-0.sqlite3")
    connection.execute(
        "CREATE TABLE snaps (step_id TEXT, state_key TEXT, snap_epoch INT, ser_change BLOB)"
    )
    blob = pickle.dumps((positions, sum(positions.values())))
    connection.execute("INSERT INTO snaps VALUES ('x.input', 'merged-input', 1, ?)", (blob,))
    connection.commit()
    connection.close()


def test_one_round_removes_only_what_every_reader_is_past(tmp_path: Path) -> None:
    kafka = EmbeddedKafka(tmp_path / "state").start()
    try:
        config = dict(kafka.config)
        ensure_topics(config, list(TOPICS), 2)
        for topic in TOPICS:
            for partition in (0, 1):
                publish(config, topic, partition, 4)  # offsets 0, 5, 10, 15
        loader = Consumer({**config, "group.id": "wattpay-loader"})
        loader.commit(offsets=[TopicPartition("wattpay.facts", 0, 10)], asynchronous=False)
        loader.close()
        snapshot(tmp_path / "recovery", {"wattpay.readings:0": 15, "wattpay.readings:1": 4})
        store = kafka.store
        assert store is not None
        janitor = Janitor(
            RetentionSettings(derived_hours=0, input_days=0),
            "wattpay.",
            config,
            lambda: BatchObjects(store.endpoint, BUCKET, kafka.cluster_id),
            tmp_path / "recovery",
            vacuum=store.vacuum,
        )
        objects = BatchObjects(store.endpoint, BUCKET, kafka.cluster_id)

        def firsts(topic: str) -> dict[int, list[int]]:
            found = objects.partitions(topic)
            return {p: sorted(b.offset for b in found[p]) for p in sorted(found)}

        assert firsts("wattpay.facts") == {0: [0, 5, 10, 15], 1: [0, 5, 10, 15]}
        young = janitor.round(now=datetime.now(UTC) - timedelta(hours=1))
        assert young.total == 0  # nothing is older than now, an hour ago

        done = janitor.round(now=datetime.now(UTC) + timedelta(seconds=5))
        assert firsts("wattpay.facts") == {0: [10, 15], 1: [0, 5, 10, 15]}
        assert firsts("wattpay.readings") == {0: [15], 1: [0, 5, 10, 15]}
        assert firsts("wattpay.accounts") == {0: [0, 5, 10, 15], 1: [0, 5, 10, 15]}
        # No group reads the notifications here: age alone, and each partition's last batch stays.
        assert firsts("wattpay.notifications") == {0: [15], 1: [15]}
        assert done.removed == {"facts": 2, "readings": 3, "notifications": 6}

        left = read_values(config["bootstrap.servers"], ("wattpay.facts",), settle=3.0)
        assert sorted(left) == sorted(
            [f"{b}-{i}".encode() for b in (2, 3) for i in range(5)]
            + [f"{b}-{i}".encode() for b in range(4) for i in range(5)]
        )
        publish(config, "wattpay.facts", 0, 1)  # the broker carries on after the gap
        assert firsts("wattpay.facts")[0] == [10, 15, 20]
    finally:
        kafka.stop()
