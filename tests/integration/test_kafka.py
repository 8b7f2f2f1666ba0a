"""The embedded Tansu broker, the Kafka helpers and the publishing CLI, with real clients."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing.messages import Envelope, TopUp, parse_message
from bus.kafka import (
    DeliveryError,
    JsonProducer,
    cluster_info,
    consume_json,
    ensure_topics,
    kafka_config,
    topic_names,
)
from bus.ports import free_port, port_is_free
from config.settings import Settings, load_settings
from tests.paths import REPO
from wattpay.broker import BrokerError, EmbeddedBroker
from wattpay.cli import main

ROOT = REPO
LOCAL_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00")


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        pid = running.pid
        yield running
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
def settings(broker: EmbeddedBroker) -> Settings:
    """Settings on the test broker with a topic prefix of the test's own."""
    base = load_settings(env={}, brokers=broker.bootstrap)
    return replace(base, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")


def run_cli(settings: Settings, *args: str, brokers: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTPAY_")}
    env["WATTPAY_TOPIC_PREFIX"] = settings.topic_prefix
    env["PYTHONPATH"] = str(ROOT)
    extra = ["--brokers", settings.brokers] if brokers else []
    return subprocess.run(
        [sys.executable, "-m", "wattpay.cli", *args, *extra],
        cwd=ROOT / "tests",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_topics_created_with_four_partitions_are_visible(
    broker: EmbeddedBroker, settings: Settings
) -> None:
    names = topic_names(settings)
    assert names[:3] == [settings.topic(t) for t in ("readings", "payments", "accounts")]
    assert settings.topic("meter-command-results") in names

    assert broker.create_topics(names, partitions=4) == names
    topics = cluster_info(broker.config).topics
    assert {name: topics[name] for name in names} == dict.fromkeys(names, 4)
    # Idempotent: nothing new, nothing changed (also through the client-side helper).
    assert broker.create_topics(names, partitions=4) == []
    assert ensure_topics(broker.config, names[:2], partitions=8) == []
    assert cluster_info(broker.config).topics[names[0]] == 4


def test_json_round_trip_keeps_text_decimals_and_key_order(
    broker: EmbeddedBroker, settings: Settings
) -> None:
    topic = settings.topic("notifications")
    broker.create_topics([topic], partitions=4)
    first = {
        "event_id": "low_balance:A1:1",
        "type": "low_balance",
        "account_id": "A1",
        "ts": datetime(2026, 3, 1, 0, 15, tzinfo=UTC),
        "locale": "zh-CN",
        "data": {
            "available": Decimal("12.30"),
            "threshold": "20.00",
            "备注": "余额不足，请及时充值",
        },
    }
    second = {"z": "1234.560", "a": Decimal("0.001"), "m": "电表 M0001"}
    with JsonProducer(broker.config) as producer:
        producer.send(topic, "A1", first)
        producer.send(topic, "A1", second)

    pairs = consume_json(broker.config, topic, max_messages=2, timeout=10)
    assert pairs == [
        (
            "A1",
            {
                "event_id": "low_balance:A1:1",
                "type": "low_balance",
                "account_id": "A1",
                "ts": "2026-03-01T00:15:00+00:00",
                "locale": "zh-CN",
                "data": {
                    "available": "12.30",
                    "threshold": "20.00",
                    "备注": "余额不足，请及时充值",
                },
            },
        ),
        ("A1", {"z": "1234.560", "a": "0.001", "m": "电表 M0001"}),
    ]
    assert list(pairs[1][1]) == ["z", "a", "m"]
    # Read to the end without a group: the same two; with a group, committed offsets resume.
    assert consume_json(broker.config, topic) == pairs
    assert consume_json(broker.config, topic, group="g1") == pairs
    assert consume_json(broker.config, topic, group="g1") == []


def test_flush_raises_when_delivery_fails() -> None:
    dead = {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": "300"}
    producer = JsonProducer(dead)
    producer.send("wattpay.notifications", "A1", {"type": "low_balance"})
    with pytest.raises(DeliveryError) as failed:
        producer.flush(5)
    producer.close()
    assert len(failed.value.failures) == 1
    assert "wattpay.notifications key='A1'" in failed.value.failures[0]


def test_cli_topup_publishes_exactly_the_validated_message(settings: Settings) -> None:
    explicit = run_cli(
        settings,
        *("topup", "A1", "500.00", "--channel", "alipay", "--payment-id", "P1"),
        *("--ts", "2026-03-01T08:15:00+08:00"),
    )
    assert explicit.returncode == 0, explicit.stderr
    defaulted = run_cli(settings, "topup", "A2", "20")
    assert defaulted.returncode == 0, defaulted.stderr

    pairs = consume_json(kafka_config(settings), settings.topic("payments"), max_messages=2)
    by_key = dict(pairs)
    assert by_key["A1"] == {
        "type": "topup",
        "payment_id": "P1",
        "account_id": "A1",
        "amount": "500.00",
        "channel": "alipay",
        "ts": "2026-03-01T08:15:00+08:00",
    }
    assert json.loads(explicit.stdout) == by_key["A1"]
    assert list(by_key["A1"]) == list(json.loads(explicit.stdout))

    second = by_key["A2"]
    assert json.loads(defaulted.stdout) == second
    assert second["payment_id"].startswith("cli-") and len(second["payment_id"]) == 36
    assert second["channel"] == "app" and second["amount"] == "20"
    assert LOCAL_SECONDS.fullmatch(second["ts"])
    envelope = Envelope.decode("payments", "t", json.dumps(second), datetime.now(UTC))
    parsed = parse_message(envelope, settings.rules)
    assert isinstance(parsed, TopUp) and parsed.amount == Decimal(20)


def test_cli_account_events_are_published_keyed_by_account(settings: Settings) -> None:
    opened = run_cli(
        settings,
        *("account", "open", "A7", "--meter", "M7", "--plan", "zhejiang-tou"),
        *("--opening-balance", "100.00", "--threshold", "30.00", "--auto-topup", "200.00"),
        *("--phone", "13800000000", "--ts", "2026-03-01T00:00:00+08:00"),
    )
    assert opened.returncode == 0, opened.stderr
    updated = run_cli(
        settings, "account", "update", "A7", "--auto-topup", "off", "--email", "a7@example.cn"
    )
    assert updated.returncode == 0, updated.stderr
    closed = run_cli(settings, "account", "close", "A7", "--final-kwh", "1300.5")
    assert closed.returncode == 0, closed.stderr

    pairs = consume_json(kafka_config(settings), settings.topic("accounts"), max_messages=3)
    assert [key for key, _ in pairs] == ["A7", "A7", "A7"]
    assert pairs[0][1] == {
        "type": "open",
        "account_id": "A7",
        "meter_id": "M7",
        "plan": "zhejiang-tou",
        "ts": "2026-03-01T00:00:00+08:00",
        "opening_balance": "100.00",
        "low_balance_threshold": "30.00",
        "phone": "13800000000",
        "auto_topup_amount": "200.00",
    }
    assert pairs[1][1] == {
        "type": "update",
        "account_id": "A7",
        "ts": pairs[1][1]["ts"],
        "email": "a7@example.cn",
        "auto_topup_amount": None,
    }
    assert pairs[2][1]["type"] == "close" and pairs[2][1]["final_kwh"] == "1300.5"
    assert [json.loads(p.stdout) for p in (opened, updated, closed)] == [v for _, v in pairs]


@pytest.mark.parametrize("amount", ["12.345", "0", "10000.01"])
def test_cli_refuses_an_invalid_amount_and_publishes_nothing(
    broker: EmbeddedBroker, settings: Settings, amount: str
) -> None:
    topic = settings.topic("payments")
    broker.create_topics([topic], partitions=4)
    refused = run_cli(settings, "topup", "A1", amount)
    assert refused.returncode == 2
    assert "refused, nothing published: invalid_amount" in refused.stderr
    assert refused.stdout == ""
    assert consume_json(broker.config, topic) == []


def test_cli_refuses_malformed_events_and_missing_brokers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WATTPAY_BROKERS", raising=False)
    monkeypatch.delenv("WATTPAY_CONFIG", raising=False)
    assert main(["topup", "A1", "10.00", "--ts", "2026-03-01T08:00:00"]) == 2
    assert "ts: timestamp without offset" in capsys.readouterr().err
    assert main(["account", "open", "A1", "--meter", "M1", "--plan", "nope"]) == 2
    assert "unknown plan 'nope'" in capsys.readouterr().err
    assert main(["account", "update", "A1"]) == 2
    assert "nothing to update" in capsys.readouterr().err
    assert main(["topup", "A1", "10.00"]) == 2
    assert "no Kafka brokers configured" in capsys.readouterr().err


def test_stop_frees_the_port_and_a_restart_starts_empty(tmp_path: Path) -> None:
    first = EmbeddedBroker().start()
    port, pid = first.port, first.pid
    assert pid is not None and not port_is_free(port)
    first.create_topics(["wattpay.readings"], partitions=2)
    first.stop()
    first.stop()
    assert not first.running and port_is_free(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    with EmbeddedBroker(port=port) as again:
        assert again.bootstrap == f"127.0.0.1:{port}"
        assert "wattpay.readings" not in cluster_info(again.config).topics
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(port=port).start()
    assert port_is_free(port)


def test_a_broker_that_dies_is_reported_with_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'listener: bad address' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError) as failed:
        EmbeddedBroker(binary=str(fake), start_timeout=5).start()
    message = str(failed.value)
    assert "exited (exit code 3)" in message and "listener: bad address" in message
