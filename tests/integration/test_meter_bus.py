"""Meters on Kafka: the poller and the command service on the real embedded broker.

Simulated meters answer over Modbus TCP on 127.0.0.1 in the test's event loop; every Kafka
call that blocks runs in a worker thread so the meters keep answering meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing.clock import LOCAL_ZONE
from bus.kafka import JsonProducer, KafkaPublisher, committed_offsets, consume_json, ensure_topics
from meters.clock import SimClock
from meters.meter_bus import EXECUTOR_GROUP
from meters.modbus import ModbusClient
from meters.poller import Poller
from simulate.simulator import Simulator
from tests.paths import REPO
from wattpay.broker import EmbeddedBroker
from wattpay.executor_service import run_executor

START = datetime(2026, 3, 2, 8, 0, tzinfo=LOCAL_ZONE)
FAST = 3600.0  # one simulated hour per real second
COMMANDS = "wattpay.meter-commands"
RESULTS = "wattpay.meter-command-results"
RESULTS_NAME = "meter-command-results"
ACME_READINGS = "acme.readings"  # a configured prefix other than the default
_TOPICS = ("readings", "meter-commands", RESULTS_NAME)
ROOT = REPO


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        ensure_topics(running.config, [ACME_READINGS, COMMANDS, RESULTS], partitions=3)
        pid = running.pid
        yield running
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the broker is gone


def client() -> ModbusClient:
    return ModbusClient(connections=4, timeout=0.3, retries=1, backoff=0.01)


def test_poller_publishes_readings_under_the_prefix_that_read_back_with_the_same_kwh(
    broker: EmbeddedBroker,
) -> None:
    async def scenario():
        clock = SimClock(START, speed=FAST)
        async with Simulator(3, units_per_port=3, clock=clock) as sim, client() as modbus:
            meters = sim.registry().meters
            await modbus.write_relay(meters[0], False)  # frozen: its kWh is known exactly
            frozen = sim.meter(meters[0].meter_id).energy_kwh
            with KafkaPublisher(broker.config, "acme.") as publisher:
                poller = Poller(meters, modbus, publisher, clock=clock)
                readings = await poller.poll_round(START)
            return meters, frozen, readings

    meters, frozen, readings = asyncio.run(scenario())
    consumed = consume_json(broker.config, ACME_READINGS, timeout=10)
    assert len(readings) == 3
    assert sorted(consumed, key=lambda kv: kv[0]) == [(r["meter_id"], r) for r in readings]
    model = meters[0].model
    by_meter = dict(consumed)
    assert Decimal(by_meter["SM00001"]["energy_kwh"]) == model.decode_energy(
        model.energy_words(frozen)
    )
    assert by_meter["SM00001"]["power_w"] == "0.0"
    assert all(r["ts"] == "2026-03-02T08:00:00+08:00" for _, r in consumed)


def _command(command_id: str, action: str, meter_id: str = "SM00001") -> dict:
    return {
        "command_id": command_id,
        "meter_id": meter_id,
        "account_id": "A1",
        "action": action,
        "ts": "2026-03-02T09:00:00+08:00",
        "reason": "overdraft_exhausted" if action == "disconnect" else "topup",
    }


def _publish(config: dict[str, str], command: dict, topic: str = COMMANDS) -> None:
    with JsonProducer(config) as producer:
        producer.send(topic, command["meter_id"], command)


def _committed(config: dict[str, str]) -> int:
    """Commands committed by the executor's group, over every partition."""
    return sum(committed_offsets(config, EXECUTOR_GROUP, COMMANDS).values())


def test_commands_switch_relays_and_report_results(broker: EmbeddedBroker) -> None:
    config = broker.config

    async def latest(count: int, meter_id: str = "SM00001") -> dict:
        """The last of ``count`` results so far that concerns ``meter_id``."""
        pairs = await asyncio.to_thread(
            consume_json, config, RESULTS, timeout=10, max_messages=count
        )
        assert len(pairs) == count, pairs
        assert all(key == value["meter_id"] for key, value in pairs)
        return [value for key, value in pairs if key == meter_id][-1]  # one key: in order

    async def send(command: dict) -> None:
        await asyncio.to_thread(_publish, config, command)

    async def scenario():
        clock = SimClock(START, speed=FAST)
        async with Simulator(2, units_per_port=2, clock=clock) as sim, client() as modbus:
            meter = sim.meter("SM00001")
            entry = sim.registry().by_id()["SM00001"]
            writes: list[bool] = []
            switch = meter.set_relay
            meter.set_relay = lambda closed: (writes.append(closed), switch(closed))[1]
            stop = asyncio.Event()
            service = asyncio.create_task(
                run_executor(config, sim.registry(), stop=stop, client=modbus, backoff=0.01)
            )
            seen = {}
            await send(_command("C1", "disconnect"))
            seen["cut"] = await latest(1)
            first = await modbus.read_sample(entry)
            await asyncio.sleep(0.3)  # 18 simulated minutes
            seen["frozen"] = (first, await modbus.read_sample(entry), meter.relay_closed())
            await send(_command("C1", "disconnect"))  # redelivered: no second write
            seen["again"] = await latest(2)
            seen["writes_after_repeat"] = list(writes)
            await send(_command("C2", "reconnect"))
            seen["back"] = await latest(3)
            seen["closed"] = (meter.relay_closed(), await modbus.read_relay(entry))
            await send(_command("C3", "disconnect", "NOPE"))
            seen["unknown"] = await latest(4, "NOPE")
            stop.set()
            stats = await asyncio.wait_for(service, 10)
            return seen, writes, stats

    seen, writes, stats = asyncio.run(scenario())
    cut = seen["cut"]
    assert (cut["command_id"], cut["meter_id"], cut["ok"]) == ("C1", "SM00001", True)
    assert cut["ts"].endswith("+08:00") and "error" not in cut
    first, later, closed = seen["frozen"]
    assert closed is False
    assert later.energy_kwh == first.energy_kwh and later.power_w == Decimal("0.0")
    assert (seen["again"]["command_id"], seen["again"]["ok"]) == ("C1", True)
    assert seen["writes_after_repeat"] == [False]
    assert (seen["back"]["command_id"], seen["back"]["ok"]) == ("C2", True)
    assert seen["closed"] == (True, True)
    assert writes == [False, True]
    unknown = seen["unknown"]
    assert (unknown["command_id"], unknown["meter_id"], unknown["ok"]) == ("C3", "NOPE", False)
    assert unknown["error"] == "unknown_meter"
    assert (stats.commands, stats.ok, stats.failed, stats.committed) == (4, 3, 1, 4)
    assert _committed(config) == 4  # every command's offset, after its result


def test_cli_polls_into_kafka_and_executes_until_sigterm(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    prefix = "cli."
    ensure_topics(broker.config, [prefix + t for t in _TOPICS], partitions=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTPAY_")}
    env |= {"WATTPAY_TOPIC_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    wattpay = [sys.executable, "-m", "wattpay.cli"]
    registry = tmp_path / "meters.toml"

    started: list[asyncio.subprocess.Process] = []

    async def run(*args: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *wattpay,
            *args,
            "--registry",
            str(registry),
            "--brokers",
            broker.bootstrap,
            cwd=tmp_path,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(process)
        return process

    async def scenario():
        try:
            return await steps()
        finally:  # a failed step leaves no process behind
            for process in started:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def steps():
        clock = SimClock(START, speed=FAST)
        async with Simulator(2, units_per_port=2, clock=clock) as sim:
            sim.write_registry(registry)  # with the clock: readings carry simulated time
            executor = await run("execute")
            poller = await run("ingest", "modbus", "--rounds", "2")
            _, polled = await asyncio.wait_for(poller.communicate(), 20)
            command = _command("K1", "disconnect")
            await asyncio.to_thread(_publish, broker.config, command, prefix + "meter-commands")
            outcome = await asyncio.to_thread(
                consume_json, broker.config, prefix + RESULTS_NAME, timeout=15, max_messages=1
            )
            opened = not sim.meter("SM00001").relay_closed()
            executor.send_signal(signal.SIGTERM)
            _, executed = await asyncio.wait_for(executor.communicate(), 10)
            return poller, polled.decode(), executor, executed.decode(), outcome, opened

    poller, polled, executor, executed, outcome, opened = asyncio.run(scenario())
    assert poller.returncode == 0, polled
    assert f"Kafka {broker.bootstrap} topic cli.readings" in polled
    readings = consume_json(broker.config, prefix + "readings", timeout=10)
    assert sorted(key for key, _ in readings) == ["SM00001", "SM00001", "SM00002", "SM00002"]
    assert not (tmp_path / ".wattpay").exists()  # nothing went to JSONL
    assert executor.returncode == 0, executed
    assert [(k, v["command_id"], v["ok"]) for k, v in outcome] == [("SM00001", "K1", True)]
    assert opened
    assert json.loads(executed.strip().splitlines()[-1])["committed"] == 1
