"""Hostile messages on the live input topics: billing keeps running, each one rejected (S9, S10).

The hostile corpus (tests/data/hostile) and messages near the broker's size limit are published
with hostile keys between valid messages; the billing process must not die or restart, count
every message in = applied + rejected, put each hostile one on the DLQ with its original bytes,
and the loader must store those bytes in ``rejected``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from bus.kafka import consume_json
from tests.hostile import BASE, corpus, original_bytes
from tests.live_harness import (
    free_port,
    metric,
    start_billing,
    start_broker,
    start_loader,
    stop,
)

pytestmark = pytest.mark.live
KEYS = [None, b"", b"\xff\xfe", b"\xed\xa0\x80", b"\x00" * 3, b"M1"]
# Control characters are escaped six-fold in JSON: a DLQ or facts message wrapping this is
# several times larger than the input message itself.
CONTROLS = b'{"meter_id": "M1", "note": "' + b"\x01" * 600_000 + b'"}'
INVALID = b"\xff" * 700_000


def _produce(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    producer.produce(f"wattpay.{topic}", value=value, key=key)
    producer.poll(0)


def test_hostile_messages_are_rejected_and_billing_keeps_running(tmp_path: Path) -> None:
    broker = start_broker(partitions=1)
    billing = loader = None
    try:
        producer = Producer({**broker.config, "linger.ms": "5", "message.max.bytes": "2000000"})
        for topic in ("accounts", "payments", "readings"):
            for line in (BASE / f"{topic}.jsonl").read_bytes().splitlines():
                _produce(producer, topic, line, b"A1" if topic != "readings" else b"M1")
        hostile: dict[str, list[bytes]] = {}
        for topic in ("accounts", "payments", "readings"):
            hostile[topic] = corpus(topic) + ([CONTROLS, INVALID] if topic == "readings" else [])
            for n, line in enumerate(hostile[topic]):
                _produce(producer, topic, line, KEYS[n % len(KEYS)])
            producer.produce(f"wattpay.{topic}", value=None, key=b"A1")  # a tombstone
            hostile[topic].append(b"")
        assert producer.flush(60) == 0
        port = free_port()
        dsn = f"chdb://{tmp_path / 'clickhouse'}"
        billing = start_billing(broker, tmp_path / "recovery", port)
        loader = start_loader(broker, dsn)
        total = sum(len(v) for v in hostile.values()) + 4
        _wait(lambda: metric(port, "wattpay_messages_in_total") >= total, billing, "all input")
        # A valid message after all of them is still applied.
        _produce(
            producer,
            "payments",
            b'{"type": "topup", "payment_id": "P9", "account_id": "A1", "amount": "5.00",'
            b' "channel": "app", "ts": "2026-03-01T05:00:00+08:00"}',
            b"A1",
        )
        assert producer.flush(30) == 0
        _wait(lambda: metric(port, "wattpay_messages_in_total") >= total + 1, billing, "the last")
        time.sleep(2)
        assert billing.poll() is None, "the billing flow died"
        applied = metric(port, "wattpay_messages_applied_total")
        rejected = metric(port, "wattpay_messages_rejected_total")
        assert (applied, rejected) == (5, total - 4)
        dlq = consume_json(broker.config, "wattpay.dlq", timeout=60)
        got = sorted(original_bytes(v["payload"], v["payload_base64"]) for _, v in dlq)
        assert got == sorted(line for lines in hostile.values() for line in lines)
        stop(billing, signal.SIGINT)
        stop(loader)
        assert loader.returncode == 0
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, json\n"
                "from store.clickhouse import ClickHouseStore\n"
                f"s = ClickHouseStore({dsn!r})\n"
                "_, rows = s.query('SELECT payload, payload_base64 FROM rejected FINAL')\n"
                "print(json.dumps(rows))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        stored = sorted(original_bytes(p, b) for p, b in json.loads(done.stdout))
        assert stored == got
    finally:
        for process in (billing, loader):
            if process is not None:
                stop(process, signal.SIGKILL)
        broker.stop()


def _wait(condition, process: subprocess.Popen[bytes], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the billing flow died waiting for {what}"
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
