"""The worker on the real embedded broker: failure topic, quiet hours, metrics, commits."""

from __future__ import annotations

import base64
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bus.kafka import JsonProducer, consume_json
from config.settings import load_settings
from notify.metrics import create_notify_metrics
from notify.worker import NotifyWorker
from tests.live_harness import start_broker, wait_until
from tests.notify_servers import FlakyHttp

pytestmark = [pytest.mark.live]
SECRET = "whsec_" + base64.b64encode(b"worker-test-signing-key-32bytes!").decode()
ZONE = ZoneInfo("Asia/Shanghai")


def notification(kind: str, account: str, data: dict) -> dict:
    return {
        "event_id": f"{kind}:{account}:t1",
        "type": kind,
        "account_id": account,
        "ts": "2026-03-01T22:15:00+08:00",
        "locale": "zh-CN",
        "phone": "13800002222",
        "data": data,
    }


EVENTS = [
    notification("low_balance", "A1", {"available": "9.00", "threshold": "20.00"}),
    notification("disconnected", "A2", {"available": "-51.00", "overdraft_limit": "50.00"}),
    notification(
        "topup_received",
        "A3",
        {
            "amount": "50.00",
            "payment_id": "P1",
            "channel": "app",
            "rebate": "0.00",
            "points": 50,
            "balance": "1.00",
            "available": "1.00",
        },
    ),
]


def settings_for(tmp_path: Path, sms_url: str, hook_url: str):
    config = tmp_path / "wattpay.toml"
    config.write_text(
        f"""
[notify]
max_attempts = 3
backoff_seconds = 0.01
backoff_max_seconds = 0.02
[notify.routes]
default = ["sms", "webhook"]
[notify.sms]
url = "{sms_url}"
[notify.webhook]
url = "{hook_url}"
secret = "{SECRET}"
""",
        encoding="utf-8",
    )
    return load_settings(str(config), env={})


def test_refused_sms_goes_to_the_failure_topic_and_reminders_wait_for_morning(
    tmp_path: Path,
) -> None:
    broker = start_broker(partitions=1)
    try:
        with FlakyHttp(status=400) as sms, FlakyHttp(key_header="webhook-id") as hook:
            settings = settings_for(tmp_path, sms.url, hook.url)
            with JsonProducer(broker.config) as producer:
                for event in EVENTS:
                    producer.send("wattpay.notifications", event["account_id"], event)
                producer.send("wattpay.notifications", "A9", {"type": "lottery_win"})
            metrics = create_notify_metrics()
            late = datetime(2026, 3, 1, 22, 30, tzinfo=ZONE)  # quiet hours: 21:00–08:00
            worker = NotifyWorker(
                settings, broker.config, metrics=metrics, clock=lambda: late, max_in_flight=1
            )
            stop = threading.Event()
            thread = threading.Thread(target=worker.run, args=(stop,))
            thread.start()
            try:
                wait_until(lambda: len(hook.log.accepted) == 3, 30, "three webhooks")
                wait_until(lambda: sum(sms.log.hits.values()) == 2, 30, "two SMS refused")
                wait_until(lambda: worker.events_done == 4, 30, "every event done or held")
            finally:
                stop.set()
                thread.join(30)
            # The low-balance SMS is held until 08:00 on the held topic; every event is done.
            assert set(sms.log.hits) == {"disconnected:A2:t1", "topup_received:A3:t1"}
            assert all(count == 1 for count in sms.log.hits.values())  # 400: no retry
            failures = consume_json(broker.config, "wattpay.notification-failures", timeout=20)
            by_event = {value["event_id"]: value for _, value in failures}
            assert by_event["disconnected:A2:t1"]["channel"] == "sms"
            assert by_event["disconnected:A2:t1"]["error"] == "HTTP 400"
            assert by_event["disconnected:A2:t1"]["attempts"] == 1
            assert by_event[None]["error"].startswith("unrenderable:")
            assert "lottery_win" in by_event[None]["payload"]
            facts = consume_json(broker.config, "wattpay.facts", timeout=20)
            rows = [value["row"] for _, value in facts]
            held = [r for r in rows if r["status"] == "held"]
            assert [(r["event_id"], r["channel"]) for r in held] == [("low_balance:A1:t1", "sms")]
            assert held[0]["error"] == "quiet hours until 08:00"
            statuses = sorted((r["event_id"], r["channel"], r["status"]) for r in rows)
            assert ("topup_received:A3:t1", "sms", "failed") in statuses
            assert ("low_balance:A1:t1", "webhook", "delivered") in statuses
            assert metrics.delivered.labels("webhook", "low_balance")._value.get() == 1
            assert metrics.failed.labels("sms", "disconnected")._value.get() == 1
            assert metrics.held.labels("sms", "low_balance")._value.get() == 1
            assert worker.events_done == 4  # the held reminder waits on its own topic
            again = consume_json(
                broker.config, "wattpay.notifications", group="wattpay-notify", timeout=20
            )
            assert again == []  # committed past the held reminder: a restart re-sends nothing
            held_topic = consume_json(broker.config, "wattpay.notification-held", timeout=20)
            assert [(v["event_id"], v["channel"]) for _, v in held_topic] == [
                ("low_balance:A1:t1", "sms")
            ]
            assert held_topic[0][1]["release_at"] == "2026-03-02T08:00:00+08:00"
            # Another worker meeting the same events (here: a group with no progress yet)
            # fails the same SMS again, but reports no failure a second time.
            later = NotifyWorker(
                settings, broker.config, clock=lambda: late, group="wattpay-notify-again"
            )
            stop_later = threading.Event()
            thread = threading.Thread(target=later.run, args=(stop_later,))
            thread.start()
            try:
                wait_until(lambda: sum(sms.log.hits.values()) == 4, 30, "the SMS refused again")
                wait_until(lambda: later.events_done >= 4, 30, "the second worker's events")
            finally:
                stop_later.set()
                thread.join(30)
            repeated = consume_json(broker.config, "wattpay.notification-failures", timeout=20)
            assert sorted(map(str, repeated)) == sorted(map(str, failures))
    finally:
        broker.stop()
