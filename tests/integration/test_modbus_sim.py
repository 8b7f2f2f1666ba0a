"""The poller and the command executor against the simulator, over real TCP on 127.0.0.1."""

import asyncio
import itertools
import socket
from datetime import datetime, timedelta
from decimal import Decimal

from billing.clock import LOCAL_ZONE
from bus.topics import RESULTS
from meters.clock import SimClock
from meters.executor import CommandExecutor
from meters.modbus import MeterServer, ModbusClient
from meters.poller import READINGS_TOPIC, MemoryPublisher, Poller, next_tick
from meters.registers import MODELS, MeterEntry, Relay
from simulate.simulator import Simulator

START = datetime(2026, 3, 2, 8, 0, tzinfo=LOCAL_ZONE)  # a Monday morning
FAST = 3600.0  # one simulated hour per real second
STEADY = 1800.0  # a quarter hour per half second: a round never overruns its tick
QUARTER = timedelta(minutes=15)


def client() -> ModbusClient:
    return ModbusClient(connections=4, timeout=0.3, retries=1, backoff=0.01)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_poller_reads_30_meters_on_2_ports_every_round() -> None:
    async def scenario():
        clock = SimClock(START, speed=STEADY)
        async with Simulator(30, units_per_port=20, clock=clock) as sim, client() as modbus:
            registry = sim.registry()
            publisher = MemoryPublisher()
            poller = Poller(registry.meters, modbus, publisher, interval=QUARTER, clock=clock)
            await poller.run(rounds=3)
            return registry, publisher.values(READINGS_TOPIC), poller.stats

    registry, readings, stats = asyncio.run(scenario())
    ports = list(dict.fromkeys(m.port for m in registry.meters))  # in registry order
    assert len(ports) == 2
    for port, units in zip(ports, (20, 10), strict=True):
        assert [m.unit for m in registry.meters if m.port == port] == list(range(1, units + 1))
    assert (stats.rounds, stats.polls, stats.readings, stats.failures) == (3, 90, 90, {})
    assert len(readings) == 90
    for meter in registry.meters:
        mine = [r for r in readings if r["meter_id"] == meter.meter_id]
        assert len(mine) == 3
        stamps = [datetime.fromisoformat(r["ts"]) for r in mine]
        assert all(r["ts"].endswith("+08:00") and r["source"] == "modbus" for r in mine)
        assert all(ts.minute % 15 == 0 and ts.second == 0 for ts in stamps)
        assert [b - a for a, b in itertools.pairwise(stamps)] == [QUARTER, QUARTER]
        energies = [Decimal(r["energy_kwh"]) for r in mine]
        assert all(len(r["energy_kwh"].split(".")[1]) == 3 for r in mine)
        assert energies == sorted(energies) and energies[-1] > energies[0]
        assert all(Decimal(r["power_w"]) > 0 for r in mine)


def test_open_relay_freezes_the_register_while_a_closed_one_advances() -> None:
    async def scenario():
        clock = SimClock(START, speed=FAST)
        async with Simulator(4, units_per_port=4, clock=clock) as sim, client() as modbus:
            opened, closed = sim.registry().meters[:2]
            await modbus.write_relay(opened, False)
            assert await modbus.read_relay(opened) is False
            assert sim.meter(opened.meter_id).relay_closed() is False
            before = [await modbus.read_sample(m) for m in (opened, closed)]
            await asyncio.sleep(0.6)  # 36 simulated minutes
            after = [await modbus.read_sample(m) for m in (opened, closed)]
            await modbus.write_relay(opened, True)
            await asyncio.sleep(0.6)
            resumed = await modbus.read_sample(opened)
            return before, after, resumed

    (open_1, closed_1), (open_2, closed_2), resumed = asyncio.run(scenario())
    assert open_2.energy_kwh == open_1.energy_kwh
    assert open_1.power_w == open_2.power_w == Decimal("0.0")
    assert closed_2.energy_kwh > closed_1.energy_kwh and closed_2.power_w > 0
    assert resumed.energy_kwh > open_2.energy_kwh and resumed.power_w > 0


def test_every_model_over_tcp_matches_its_register_map() -> None:
    async def scenario(name: str):
        clock = SimClock(START, speed=FAST)
        async with Simulator(2, model=name, units_per_port=2, clock=clock) as sim:
            async with client() as modbus:
                frozen, live = sim.registry().meters
                await modbus.write_relay(frozen, False)
                sample = await modbus.read_sample(frozen)
                expected = sim.meter(frozen.meter_id).energy_kwh
                return sample, expected, await modbus.read_sample(live)

    for name, model in MODELS.items():
        sample, expected, live = asyncio.run(scenario(name))
        assert sample.energy_kwh == model.decode_energy(model.energy_words(expected)), name
        assert abs(sample.energy_kwh - expected) <= Decimal("0.002"), name  # float32 steps
        assert sample.power_w == Decimal("0.0"), name
        assert Decimal(0) < live.power_w < Decimal(40_000), name


class _BrokenMeter:
    """A served meter whose energy register holds a negative value."""

    unit = 1
    model = MODELS["sdm120"]
    relay = None

    def sample(self):
        return Decimal(-5), Decimal(0)

    def relay_closed(self) -> bool:
        return True

    def set_relay(self, closed: bool) -> None:
        raise AssertionError("no relay")


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept a connection and never answer."""
    await reader.read()
    writer.close()


def test_failed_polls_publish_nothing_and_are_counted_by_model_and_kind() -> None:
    async def scenario():
        clock = SimClock(START, speed=FAST)
        stopped = Simulator(1, clock=clock)
        await stopped.start()
        stopped_meter = stopped.registry().meters[0]
        await stopped.stop()  # its port is closed now: nothing may be left listening
        silent = await asyncio.start_server(_silent, "127.0.0.1", 0)
        silent_port = silent.sockets[0].getsockname()[1]
        broken = MeterServer([_BrokenMeter()])
        async with Simulator(2, units_per_port=2, clock=clock) as sim:
            await broken.start()
            live = list(sim.registry().meters)
            dead = [
                MeterEntry("DEAD", "127.0.0.1", free_port(), 1, MODELS["sdm630"], Relay(0)),
                stopped_meter,
                MeterEntry("GHOST", "127.0.0.1", sim.ports[0], 99, MODELS["sdm120"]),
                MeterEntry("MUTE", "127.0.0.1", silent_port, 1, MODELS["ddsu666"]),
                MeterEntry("NEG", "127.0.0.1", broken.port, 1, MODELS["sdm120"]),
            ]
            publisher = MemoryPublisher()
            async with client() as modbus:
                poller = Poller([*live, *dead], modbus, publisher, clock=clock)
                readings = await poller.poll_round(next_tick(clock.now(), QUARTER))
            await broken.stop()
        silent.close()
        await silent.wait_closed()
        return live, readings, publisher, poller.stats

    live, readings, publisher, stats = asyncio.run(scenario())
    assert [r["meter_id"] for r in readings] == [m.meter_id for m in live]
    assert publisher.values(READINGS_TOPIC) == readings
    assert stats.failures == {
        ("sdm630", "connection"): 1,
        ("sdm120", "connection"): 1,
        ("sdm120", "exception_response"): 1,
        ("ddsu666", "timeout"): 1,
        ("sdm120", "decode"): 1,
    }
    assert (stats.polls, stats.readings, stats.failed_polls) == (7, 2, 5)


def _command(command_id: str, action: str, meter_id: str = "SM00001") -> dict:
    return {
        "command_id": command_id,
        "meter_id": meter_id,
        "account_id": "A1",
        "action": action,
        "ts": "2026-03-02T09:00:00+08:00",
        "reason": "overdraft_exhausted" if action == "disconnect" else "topup",
    }


def test_executor_opens_and_closes_relays_and_repeats_are_harmless() -> None:
    async def scenario():
        clock = SimClock(START, speed=FAST)
        async with Simulator(2, units_per_port=2, clock=clock) as sim, client() as modbus:
            meter = sim.meter("SM00001")
            writes: list[bool] = []
            switch = meter.set_relay
            meter.set_relay = lambda closed: (writes.append(closed), switch(closed))[1]
            publisher = MemoryPublisher()
            executor = CommandExecutor(
                sim.registry().meters,
                modbus,
                publisher,
                topic=RESULTS.name,
                clock=clock,
                attempts=3,
                backoff=0.01,
            )
            entry = sim.registry().by_id()["SM00001"]
            cut = await executor.apply(_command("C1", "disconnect"))
            states = [meter.relay_closed(), await modbus.read_relay(entry)]
            again = await executor.apply(_command("C1", "disconnect"))
            states.append(meter.relay_closed())
            back = await executor.apply(_command("C2", "reconnect"))
            states.append(meter.relay_closed())
            stale = await executor.apply(_command("C1", "disconnect"))  # after the reconnect
            states += [meter.relay_closed(), await modbus.read_relay(entry)]
            return cut, again, back, stale, states, writes, publisher.values(RESULTS.name)

    cut, again, back, stale, states, writes, published = asyncio.run(scenario())
    assert set(cut) == {"command_id", "meter_id", "ok", "ts"}
    assert (cut["command_id"], cut["meter_id"], cut["ok"]) == ("C1", "SM00001", True)
    assert cut["ts"].endswith("+08:00")
    assert again["ok"] and back["ok"]
    assert stale == again  # superseded: the remembered outcome, the relay left alone
    assert states == [False, False, False, True, True, True]
    assert writes == [False, True]  # the repeats wrote nothing
    assert published == [cut, again, back, stale]


def test_executor_reports_failures() -> None:
    async def scenario():
        clock = SimClock(START, speed=FAST)
        async with Simulator(1, units_per_port=1, clock=clock, relay=None) as sim:
            gone = MeterEntry("GONE", "127.0.0.1", free_port(), 1, MODELS["sdm120"], Relay(0))
            async with client() as modbus:
                executor = CommandExecutor(
                    [*sim.registry().meters, gone], modbus, clock=clock, attempts=3, backoff=0.01
                )
                return [
                    await executor.apply(_command("C1", "disconnect", "GONE")),
                    await executor.apply(_command("C2", "disconnect", "SM00001")),
                    await executor.apply(_command("C3", "disconnect", "NOPE")),
                    await executor.apply(_command("C4", "explode")),
                    await executor.apply({"meter_id": "GONE", "action": "reconnect"}),
                ], executor

    results, executor = asyncio.run(scenario())
    assert [r["ok"] for r in results] == [False] * 5
    assert [r["error"] for r in results] == [
        "connection",
        "no_relay",
        "unknown_meter",
        "malformed",
        "malformed",
    ]
    assert "GONE" in results[0]["detail"]
    assert not executor.applied  # failures are not remembered: a redelivery tries again


def test_poll_failures_are_exported_by_model_and_kind() -> None:
    """S13: failed polls are counted in metrics by meter model and error kind."""
    from prometheus_client import CollectorRegistry

    from meters.poller import PollStats
    from pipelines.metrics import PollStatsCollector

    stats = PollStats()
    stats.polls = 3
    stats.failed("sdm120", "timeout")
    stats.failed("sdm120", "timeout")
    stats.failed("dtsu666", "connection")
    registry = CollectorRegistry()
    registry.register(PollStatsCollector(stats))
    sample = registry.get_sample_value
    labels = {"model": "sdm120", "kind": "timeout"}
    assert sample("wattpay_meter_poll_failures_total", labels) == 2
    labels = {"model": "dtsu666", "kind": "connection"}
    assert sample("wattpay_meter_poll_failures_total", labels) == 1
    assert sample("wattpay_meter_polls_total") == 3
