"""Interoperability with a third-party Kafka client: kcat produces and consumes S2 JSON.

Debian 12's kcat links librdkafka 2.0.2, which cannot parse the tagged fields in Tansu's
ApiVersions v3 response ("Read underflow", fixed in librdkafka 2.1.1, confluentinc/librdkafka
#4278). With such an old library, kcat runs here on the librdkafka bundled in the
confluent-kafka wheel; kcat itself (its options, key splitting, JSON envelope) is unchanged.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.messages import Envelope, Reading, parse_message
from bus.kafka import JsonProducer, consume_json
from config.settings import load_settings
from tests.tools import kcat_command
from wattpay.broker import EmbeddedBroker

Kcat = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="module")
def kcat(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Kcat:
    path, env = kcat_command(tmp_path_factory.mktemp("kcat"))

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [path, "-b", broker.bootstrap, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    return run


def test_kcat_readings_are_decoded_by_consume_json(broker: EmbeddedBroker, kcat: Kcat) -> None:
    broker.create_topics(["wattpay.readings"], partitions=4)
    readings = [
        {"meter_id": "M0001", "ts": "2026-03-01T08:15:00+08:00", "energy_kwh": "1234.56"},
        {"meter_id": "M0002", "ts": "2026-03-01T08:15:00+08:00", "energy_kwh": "7.000"},
        {
            "meter_id": "M0001",
            "ts": "2026-03-01T08:30:00+08:00",
            "energy_kwh": "1234.987",
            "source": "抄表:modbus",
            "power_w": "812.5",
        },
    ]
    lines = "".join(f"{r['meter_id']}:{json.dumps(r, ensure_ascii=False)}\n" for r in readings)
    produced = kcat("-P", "-t", "wattpay.readings", "-K:", stdin=lines)
    assert produced.returncode == 0, produced.stderr

    pairs = consume_json(broker.config, "wattpay.readings", max_messages=3, timeout=10)
    assert sorted(pairs, key=lambda p: (p[0], p[1]["ts"])) == [
        (r["meter_id"], r) for r in sorted(readings, key=lambda r: (r["meter_id"], r["ts"]))
    ]
    # One key, one partition: a meter's readings keep their order.
    assert [v["ts"] for k, v in pairs if k == "M0001"] == [readings[0]["ts"], readings[2]["ts"]]
    rules = load_settings(env={}).rules
    for key, value in pairs:
        envelope = Envelope.decode("readings", "kcat", json.dumps(value), datetime.now(UTC))
        reading = parse_message(envelope, rules)
        assert isinstance(reading, Reading) and reading.meter_id == key
    assert (
        parse_message(
            Envelope.decode("readings", "kcat", json.dumps(readings[2]), datetime.now(UTC)), rules
        ).milli
        == 1_234_987
    )


def test_notifications_from_json_producer_are_read_by_kcat(
    broker: EmbeddedBroker, kcat: Kcat
) -> None:
    broker.create_topics(["wattpay.notifications"], partitions=4)
    notifications = [
        {
            "event_id": "topup_received:A1:P1",
            "type": "topup_received",
            "account_id": "A1",
            "ts": datetime(2026, 3, 1, 0, 15, tzinfo=UTC),
            "locale": "zh-CN",
            "phone": "13800000000",
            "data": {"payment_id": "P1", "amount": Decimal("500.00"), "rebate": "30.00"},
        },
        {
            "event_id": "low_balance:A2:9",
            "type": "low_balance",
            "account_id": "A2",
            "ts": "2026-03-02T09:00:00+08:00",
            "locale": "zh-CN",
            "data": {"available": "12.30", "threshold": "20.00", "说明": "余额不足"},
        },
    ]
    sent_at = time.time()
    with JsonProducer(broker.config) as producer:
        for notification in notifications:
            producer.send("wattpay.notifications", str(notification["account_id"]), notification)

    consumed = kcat("-C", "-t", "wattpay.notifications", "-e", "-J", "-q")
    assert consumed.returncode == 0, consumed.stderr
    envelopes = [json.loads(line) for line in consumed.stdout.splitlines() if line.strip()]
    by_key = {e["key"]: e for e in envelopes}
    assert sorted(by_key) == ["A1", "A2"]
    assert json.loads(by_key["A1"]["payload"]) == {
        **notifications[0],
        "ts": "2026-03-01T00:15:00+00:00",
        "data": {"payment_id": "P1", "amount": "500.00", "rebate": "30.00"},
    }
    assert json.loads(by_key["A2"]["payload"]) == notifications[1]
    assert list(json.loads(by_key["A2"]["payload"])) == list(notifications[1])
    for envelope in envelopes:
        assert envelope["topic"] == "wattpay.notifications"
        assert envelope["tstype"] == "create"
        assert abs(envelope["ts"] / 1000 - sent_at) < 60
