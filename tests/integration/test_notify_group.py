"""Notification workers in one consumer group: they share the partitions, never deliver an event
twice between them, and take over the partitions of a worker that left."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bus.kafka import JsonProducer, consume_json
from config.settings import load_settings
from notify.channels import LogChannel
from notify.worker import NotifyWorker
from tests.live_harness import start_broker, wait_until

pytestmark = [pytest.mark.live]
ZONE = ZoneInfo("Asia/Shanghai")
DAYTIME = datetime(2026, 3, 2, 10, 0, tzinfo=ZONE)


def notice(number: int) -> dict:
    return {
        "event_id": f"low_balance:A{number}:t{number}",
        "type": "low_balance",
        "account_id": f"A{number}",
        "ts": "2026-03-02T09:15:00+08:00",
        "locale": "zh-CN",
        "phone": "13800002222",
        "data": {"available": "9.00", "threshold": "20.00"},
    }


class Worker:
    """A notification worker on its own thread, delivering to its own log file."""

    def __init__(self, broker_config: dict, tmp_path: Path, name: str) -> None:
        self.log = tmp_path / f"{name}.log"
        settings = load_settings(None, env={})
        self.worker = NotifyWorker(
            settings, broker_config, channels={"log": LogChannel(self.log)}, clock=lambda: DAYTIME
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), name=name)
        self.thread.start()

    def delivered(self) -> list[str]:
        if not self.log.exists():
            return []
        return [line.split()[1] for line in self.log.read_text(encoding="utf-8").splitlines()]

    def leave(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def publish(config: dict, numbers: range) -> None:
    with JsonProducer(config) as producer:
        for number in numbers:
            event = notice(number)
            producer.send("wattpay.notifications", event["account_id"], event)


def test_two_workers_share_the_partitions_and_one_takes_over_when_the_other_leaves(
    tmp_path: Path,
) -> None:
    broker = start_broker(partitions=4)
    first = second = None
    try:
        first = Worker(broker.config, tmp_path, "first")
        publish(broker.config, range(0, 20))
        wait_until(lambda: len(first.delivered()) == 20, 60, "the first worker alone")
        second = Worker(broker.config, tmp_path, "second")
        # Both hold partitions once the group has rebalanced; then new events split.
        wait_until(
            lambda: second.worker.events_done > 0 or _both_assigned(first, second),
            60,
            "the second worker to join the group",
        )
        publish(broker.config, range(20, 60))
        everyone = lambda: Counter(first.delivered() + second.delivered())  # noqa: E731
        wait_until(lambda: len(everyone()) == 60, 60, "every event, once")
        assert first.delivered()[20:] and second.delivered(), "the partitions were not shared"
        first.leave()
        publish(broker.config, range(60, 80))
        wait_until(lambda: len(everyone()) == 80, 60, "the second worker to take over")
        assert set(everyone()) == {notice(n)["event_id"] for n in range(80)}
        assert max(everyone().values()) == 1, everyone().most_common(3)
        assert consume_json(broker.config, "wattpay.notification-failures", timeout=10) == []
    finally:
        for worker in (first, second):
            if worker is not None and worker.thread.is_alive():
                worker.leave()
        broker.stop()


def _both_assigned(first: Worker, second: Worker) -> bool:
    readers = [getattr(w.worker, "_reader", None) for w in (first, second)]
    return all(r is not None and r.assigned for r in readers)
