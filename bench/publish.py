"""Publishing to the durable embedded broker: idempotent vs ``JsonProducer``'s settings.

Usage: .venv/bin/python bench/publish.py [--messages 50000] [--rounds 2]

A fresh durable embedded broker (Tansu on its S3 store, as ``wattpay up`` runs it). In each
round, alternating, an idempotent producer (``enable.idempotence``, acks=all, 5 in flight)
and ``JsonProducer``'s own settings (``bus.kafka.PUBLISHER_SETTINGS``: not idempotent,
acks=all, one request in flight) publish the same readings-shaped messages: once as fast
as they go (then one flush), once as 40-message batches each confirmed by a flush, the way
the meter collector publishes.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bus.kafka import JsonProducer, ensure_topics  # noqa: E402
from wattpay.durable import EmbeddedKafka  # noqa: E402

IDEMPOTENT = {
    "enable.idempotence": "true",
    "acks": "all",
    "max.in.flight.requests.per.connection": "5",
}
BATCH = 40


def reading(i: int) -> dict[str, str]:
    meter = f"M{i % 500:05d}"
    return {"meter_id": meter, "ts": "2026-06-01T00:15:00+08:00", "kwh": f"{i}.125"}


def send(producer: JsonProducer, first: int, count: int) -> None:
    for i in range(first, first + count):
        value = reading(i)
        producer.send("bench-publish", value["meter_id"], value)


def streamed(config: dict[str, str], messages: int) -> float:
    """Messages per second, everything queued then one flush."""
    producer = JsonProducer(config, flush_timeout=120)
    started = time.perf_counter()
    send(producer, 0, messages)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return messages / elapsed


def confirmed_batches(config: dict[str, str], batches: int) -> float:
    """Milliseconds per batch of ``BATCH`` messages sent and flushed."""
    producer = JsonProducer(config, flush_timeout=120)
    started = time.perf_counter()
    for b in range(batches):
        send(producer, b * BATCH, BATCH)
        producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return elapsed / batches * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d} {platform.machine()} Python {platform.python_version()}, "
        f"{args.messages:,} messages, batches of {BATCH}"
    )
    with tempfile.TemporaryDirectory() as work:
        kafka = EmbeddedKafka(Path(work) / "state").start()
        try:
            ensure_topics(kafka.config, ["bench-publish"], 2)
            print("| round | settings | streamed msg/s | batch of 40 + flush, ms |")
            print("|---|---|---|---|")
            for round_ in range(1, args.rounds + 1):
                for name, extra in (("idempotent", IDEMPOTENT), ("JsonProducer", {})):
                    config = {**kafka.config, **extra}
                    rate = streamed(config, args.messages)
                    per_batch = confirmed_batches(config, 100)
                    print(f"| {round_} | {name} | {rate:,.0f} | {per_batch:.1f} |")
        finally:
            kafka.stop()


if __name__ == "__main__":
    main()
