"""Notification workers in one consumer group: they share the partitions, never deliver an event
twice between them, take over the partitions of a worker that left, and a kill during quiet
hours re-sends nothing that had finished."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bus.kafka import JsonProducer, committed_offsets, consume_json
from config.settings import load_settings
from notify.channels import LogChannel
from notify.worker import NotifyWorker
from tests.live_harness import WATTPAY, start_broker, wait_until
from tests.notify_servers import FlakyHttp

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
    readers = [w.worker.notices.reader for w in (first, second)]
    return all(r is not None and r.assigned for r in readers)


def test_a_kill_during_quiet_hours_resends_nothing_that_had_finished(tmp_path: Path) -> None:
    """Reminders wait on their own topic, so the position moves past them: killed and started
    again twice, the worker sends no urgent SMS twice and no reminder before the morning."""
    broker = start_broker(partitions=4)
    now = datetime.now(ZONE)
    quiet_from = (now - timedelta(hours=1)).strftime("%H:%M")  # quiet from an hour ago ...
    quiet_until = (now + timedelta(hours=2)).strftime("%H:%M")  # ... to two hours from now
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with FlakyHttp(status=200) as sms:
            config = tmp_path / "wattpay.toml"
            config.write_text(
                f"""
[notify]
backoff_seconds = 0.05
[notify.quiet_hours]
enabled = true
from = "{quiet_from}"
until = "{quiet_until}"
types = ["low_balance"]
[notify.routes]
default = ["sms"]
[notify.sms]
url = "{sms.url}"
""",
                encoding="utf-8",
            )
            urgent: list[dict] = []
            reminders: list[dict] = []
            command = [*WATTPAY, "--config", str(config), "notify", "--brokers", broker.bootstrap]
            log = (tmp_path / "notify.log").open("ab")
            for round_ in range(3):
                numbers = range(round_ * 20, round_ * 20 + 10)
                cut = [_cut(n) for n in numbers]
                remind = [notice(n + 10) for n in numbers]
                urgent += cut
                reminders += remind
                with JsonProducer(broker.config) as producer:
                    for event in [x for pair in zip(remind, cut, strict=True) for x in pair]:
                        producer.send("wattpay.notifications", event["account_id"], event)
                workers.append(subprocess.Popen(command, stdout=log, stderr=log))
                sent = {e["event_id"] for e in urgent}
                total = len(urgent) + len(reminders)
                wait_until(
                    lambda s=sent, n=total: (
                        set(sms.log.hits) == s and _committed(broker.config) == n
                    ),
                    60,
                    "every urgent SMS sent and the notifications committed",
                )
                workers[-1].send_signal(signal.SIGKILL)  # a reminder of each round is held
                workers[-1].wait(30)
            held = consume_json(broker.config, "wattpay.notification-held", timeout=20)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        broker.stop()
    assert all(count == 1 for count in sms.log.hits.values()), sms.log.hits
    assert sorted(v["event_id"] for _, v in held) == sorted(e["event_id"] for e in reminders)


def _cut(number: int) -> dict:
    """An urgent notification: never held for quiet hours."""
    event = dict(notice(number), type="disconnected", event_id=f"disconnected:A{number}:t1")
    event["data"] = {"available": "-51.00", "overdraft_limit": "50.00"}
    return event


def _committed(config: dict) -> int:
    """How many notifications the group has committed past, over every partition."""
    offsets = committed_offsets(config, "wattpay-notify", "wattpay.notifications")
    return sum(offsets.values())
