"""``wattpay notify`` SIGKILLed three times against receivers that fail at random.

A small ``wattpay example`` replay gives the notifications; they go onto the real embedded
broker with the example's accounts (half of them with an email address). The worker sends
to an SMS gateway and a webhook receiver that fail at random (500, 429 with Retry-After,
answers slower than the timeout, dropped connections) and to an SMTP server that answers
451 at random. Every notification must reach every channel it is routed to; a receiver may
see an event twice only if it was in flight (past the committed position) at a kill, and
always with the same key; the ``deliveries`` table explains every request the receivers saw.
A low per-channel rate limit keeps each run a few seconds long, so every kill lands mid-run
(after some commits, before the last).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from standardwebhooks.webhooks import Webhook

from bus.ports import free_port
from tests.live_harness import WATTPAY, start_broker, stop, wait_until
from tests.notify_servers import FlakyHttp, SmtpReceiver
from wattpay.broker import EmbeddedBroker

pytestmark = [pytest.mark.live]
SECRET = "whsec_" + base64.b64encode(b"kill-test-signing-key-32-bytes!!").decode()
GROUP = "wattpay-notify"
TOPIC = "wattpay.notifications"


def replay_notifications(work: Path) -> tuple[list[dict], list[dict]]:
    """The notifications and account events of a small example replay."""
    data = work / "example"
    run = [
        *WATTPAY,
        "example",
        str(data),
        "--households",
        "30",
        "--days",
        "40",
        "--seed",
        "11",
        "--start",
        "2026-03-01",
    ]
    subprocess.run(run, check=True, capture_output=True)
    replay = [*WATTPAY, "replay", str(data), "--quiet", "--clickhouse", f"chdb://{work}/replay"]
    subprocess.run(replay, check=True, capture_output=True, env={**os.environ, "CI": ""})
    lines = (data / "out" / "wattpay.notifications.jsonl").read_text(encoding="utf-8")
    notifications = [json.loads(line) for line in lines.splitlines()]
    accounts = []
    for line in (data / "accounts.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "open":
            if int(str(event.get("account_id", "A0"))[1:] or 0) % 2 == 0:
                event["email"] = f"{event['account_id'].lower()}@example.test"
        accounts.append(event)
    return notifications, accounts


def produce(broker: EmbeddedBroker, topic: str, values: list[dict]) -> None:
    producer = Producer({**broker.config, "linger.ms": "10"})
    for value in values:
        key = str(value.get("account_id", "")).encode()
        producer.produce(topic, json.dumps(value, ensure_ascii=False).encode(), key)
    assert producer.flush(30) == 0


def committed(broker: EmbeddedBroker, topic: str = TOPIC, group: str = GROUP) -> dict[int, int]:
    consumer = Consumer({**broker.config, "group.id": group, "enable.auto.commit": "false"})
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        return {
            tp.partition: max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=10)
        }
    finally:
        consumer.close()


def ends_of(broker: EmbeddedBroker, topic: str) -> dict[int, int]:
    """The next offset of each partition, found by reading it to its end."""
    consumer = Consumer({**broker.config, "group.id": "ends", "enable.partition.eof": "true"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    ends, ended = dict.fromkeys(range(3), 0), set()
    try:
        while len(ended) < 3:
            message = consumer.poll(5)
            assert message is not None, f"{topic} did not reach its end"
            if message.error():
                ended.add(message.partition())
            else:
                ends[message.partition()] = message.offset() + 1
    finally:
        consumer.close()
    return ends


def topic_positions(broker: EmbeddedBroker) -> dict[str, tuple[int, int]]:
    """event_id -> (partition, offset) on the notifications topic."""
    consumer = Consumer({**broker.config, "group.id": "positions", "enable.partition.eof": "true"})
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(3)])
    found, ended = {}, set()
    try:
        while len(ended) < 3:
            message = consumer.poll(5)
            assert message is not None, "notifications topic did not reach its end"
            if message.error():
                ended.add(message.partition())
                continue
            value = json.loads(message.value())
            found[value["event_id"]] = (message.partition(), message.offset())
    finally:
        consumer.close()
    return found


def write_config(path: Path, sms: FlakyHttp, hook: FlakyHttp, smtp: SmtpReceiver) -> None:
    path.write_text(
        f"""
[notify]
max_attempts = 12
backoff_seconds = 0.05
backoff_max_seconds = 0.4
concurrency = 2
rate_per_second = 8
quiet_hours = false
[notify.routes]
default = ["sms", "email", "webhook"]
[notify.sms]
url = "{sms.url}"
token = "gateway-token-not-to-be-printed"
timeout = 0.45
[notify.email]
host = "127.0.0.1"
port = {smtp.port}
sender = "billing@example.test"
[notify.webhook]
url = "{hook.url}"
secret = "{SECRET}"
timeout = 0.45
""",
        encoding="utf-8",
    )


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return b"wattpay_notification_delivery_seconds" in response.read()
    except OSError:
        return False


def sql(dsn: str, query: str) -> list[dict]:
    done = subprocess.run(
        [*WATTPAY, "sql", query, "--clickhouse", dsn, "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "WATTPAY_CLICKHOUSE_DSN": ""},
    )
    return json.loads(done.stdout)


@pytest.mark.slow
def test_every_notification_reaches_every_channel_across_three_kills(tmp_path: Path) -> None:
    notifications, accounts = replay_notifications(tmp_path)
    emails = {a["account_id"]: a["email"] for a in accounts if "email" in a}
    expected = {
        "sms": {n["event_id"] for n in notifications if n.get("phone")},
        "email": {n["event_id"] for n in notifications if n["account_id"] in emails},
        "webhook": {n["event_id"] for n in notifications},
    }
    assert len(notifications) >= 40 and expected["sms"] and expected["email"]
    assert len({n["event_id"] for n in notifications}) == len(notifications)
    log = (tmp_path / "notify.log").open("ab")
    broker = start_broker(partitions=3)
    started: list[subprocess.Popen[bytes]] = []  # stopped at the end, whatever happens

    def spawn(command: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdout=log, stderr=log)
        started.append(process)
        return process

    flaky = {"failure_rate": 0.3, "slow_seconds": 0.6}
    try:
        with (
            FlakyHttp(**flaky, seed=7) as sms,
            FlakyHttp(**flaky, key_header="webhook-id", seed=8) as hook,
            SmtpReceiver(failure_rate=0.2, seed=9) as smtp,
        ):
            receivers = {"sms": sms, "email": smtp, "webhook": hook}
            produce(broker, "wattpay.accounts", accounts)
            produce(broker, TOPIC, notifications)
            where = topic_positions(broker)
            config = tmp_path / "notify.toml"
            write_config(config, sms, hook, smtp)
            command = [*WATTPAY, "--config", str(config), "notify", "--brokers", broker.bootstrap]

            in_flight: set[str] = set()
            # one client asks for the group's position: a quick question, so the kill
            # follows the check closely
            progress = Consumer({**broker.config, "group.id": GROUP})
            partitions = [TopicPartition(TOPIC, p) for p in range(3)]
            done_at_kills: list[int] = []
            for kill in range(3):
                worker = spawn(command)
                goal = len(notifications) * (kill + 1) // 5
                wait_until(
                    lambda g=goal: (
                        sum(max(tp.offset, 0) for tp in progress.committed(partitions, timeout=10))
                        >= g
                    ),
                    60,
                    f"{goal} events done",
                    interval=0.05,
                )
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                positions = committed(broker)
                done_at_kills.append(sum(positions.values()))
                in_flight |= {
                    event for event, (p, offset) in where.items() if offset >= positions[p]
                }
            progress.close()
            port = free_port()
            worker = spawn([*command, "--metrics-port", str(port)])
            wait_until(lambda: _up(port), 30, "the worker to serve metrics")
            ends = {p: sum(1 for q, _ in where.values() if q == p) for p in range(3)}
            wait_until(lambda: committed(broker) == ends, 90, "the whole topic committed")
            stop(worker)
            assert worker.returncode == 0

            assert len(in_flight) < len(notifications)  # kills came after some commits
            print("events done at the kills:", done_at_kills, "of", len(notifications))
            assert max(done_at_kills) < len(notifications)  # every kill came mid-run
            for name, receiver in receivers.items():
                keys = receiver.log.accepted_keys()
                assert set(keys) == expected[name], name
                twice = {key for key, count in keys.items() if count > 1}
                assert twice <= in_flight, (name, twice - in_flight)
            locales = {n["event_id"]: n.get("locale") for n in notifications}
            for received in sms.log.accepted:
                body = received.json()
                assert body["idempotency_key"] == received.key
                zh = locales[received.key] == "zh-CN"
                assert body["text"].startswith(
                    "【国网示例供电】" if zh else "[State Grid Example] "
                )
            for received in hook.log.accepted:
                headers = {k.lower(): v for k, v in received.headers.items()}
                payload = Webhook(SECRET).verify(received.body, headers)
                assert payload["data"]["event_id"] == received.key
            for received in smtp.log.accepted:
                account = received.key.split(":")[1]
                assert received.headers["To"] == emails[account]
            assert "gateway-token-not-to-be-printed" not in (tmp_path / "notify.log").read_text()
            outcomes = {name: r.log.outcomes for name, r in receivers.items()}
            assert all(outcomes["sms"][f] for f in ("500", "429", "slow", "drop")), outcomes
            hits = {name: r.log.hits for name, r in receivers.items()}

        dsn = f"chdb://{tmp_path}/clickhouse"
        loader = spawn([*WATTPAY, "load", "--brokers", broker.bootstrap, "--clickhouse", dsn])
        facts = ends_of(broker, "wattpay.facts")
        wait_until(
            lambda: committed(broker, "wattpay.facts", "wattpay-loader") == facts,
            60,
            "facts loaded",
        )
        stop(loader)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        broker.stop()
    rows = sql(
        dsn,
        "SELECT event_id, channel, attempt, status, error FROM deliveries FINAL "
        "ORDER BY event_id, channel, ts",
    )
    by_key: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_key.setdefault((row["event_id"], row["channel"]), []).append(row)
    for name, ids in expected.items():
        for event in ids:
            attempts = [r for r in by_key[(event, name)] if int(r["attempt"]) > 0]
            assert attempts[-1]["status"] == "delivered" or event in in_flight, (event, name)
            assert any(r["status"] == "delivered" for r in attempts), (event, name)
            assert all(r["status"] == "retrying" for r in attempts[:-1] if event not in in_flight)
            if event in in_flight:  # a request cut short by the kill may have no row
                assert len(attempts) <= hits[name][event]
            else:
                assert len(attempts) == hits[name][event], (event, name)
    skipped = Counter(r["channel"] for r in rows if r["status"] == "skipped")
    assert skipped["sms"] >= len(expected["webhook"] - expected["sms"])
    assert skipped["email"] >= len(expected["webhook"] - expected["email"])
