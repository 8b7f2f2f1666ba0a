"""Interop with a real Modbus master: mbpoll (Debian package ``mbpoll``) against the simulator.

mbpoll references are 1-based by default (``-r 73`` is PDU address 0x0048, like the "30073"
of Eastron's manual); ``-B`` reads float32 high word first; ``-t 3`` is the input register
table, ``-t 4`` the holding registers, ``-t 0`` the coils; ``-1`` polls once.
"""

import asyncio
import re
import struct
from datetime import datetime
from decimal import Decimal

import pytest

from billing.clock import LOCAL_ZONE
from meters.clock import SimClock
from meters.modbus import ModbusClient
from meters.registers import MODELS, READ_INPUT, MeterEntry, decode_float32
from simulate.simulator import Simulator
from tests.tools import require_tool

START = datetime(2026, 3, 2, 8, 0, tzinfo=LOCAL_ZONE)
_VALUE = re.compile(r"^\[(\d+)\]:\s+(\S+)$", re.MULTILINE)


async def mbpoll(meter: MeterEntry, *args: str, write: str | None = None) -> dict[int, str]:
    """Run mbpoll once against ``meter`` (writing ``write`` if given); values by reference."""
    command = [require_tool("mbpoll"), "-m", "tcp", "-a", str(meter.unit), "-p", str(meter.port)]
    command += ["-1", "-o", "2", *args, meter.host, *([write] if write is not None else [])]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return {int(ref): value for ref, value in _VALUE.findall(out.decode())}


def energy_args(meter: MeterEntry, kind: str) -> list[str]:
    """mbpoll arguments reading the energy register as a float (``kind="float"``) or words."""
    table = "3" if meter.model.function == READ_INPUT else "4"
    if kind == "float":
        return ["-t", f"{table}:float", "-B", "-r", str(meter.model.energy_address + 1)]
    return ["-t", f"{table}:hex", "-c", "2", "-r", str(meter.model.energy_address + 1)]


def client() -> ModbusClient:
    return ModbusClient(timeout=0.5, retries=1, backoff=0.01)


@pytest.mark.parametrize("model", ["sdm120", "dtsu666"])
def test_mbpoll_reads_the_same_kwh_as_the_poller(model: str) -> None:
    require_tool("mbpoll")

    async def scenario():
        async with Simulator(3, model=model, units_per_port=3, clock=SimClock(START)) as sim:
            frozen, live = sim.registry().meters[1:]
            async with client() as modbus:
                await modbus.write_relay(frozen, False)
                polled = await modbus.read_energy(frozen)
                as_float = await mbpoll(frozen, *energy_args(frozen, "float"))
                as_words = await mbpoll(frozen, *energy_args(frozen, "words"))
                first = await modbus.read_energy(live)
                live_words = await mbpoll(live, *energy_args(live, "words"))
                last = await modbus.read_energy(live)
        return frozen, polled, as_float, as_words, (first, live_words, last)

    frozen, polled, as_float, as_words, (first, live_words, last) = asyncio.run(scenario())
    reference = frozen.model.energy_address + 1
    hi, lo = int(as_words[reference], 16), int(as_words[reference + 1], 16)
    assert decode_float32(hi, lo) == polled
    (wire,) = struct.unpack(">f", struct.pack(">HH", hi, lo))
    assert as_float == {reference: format(wire, "g")}  # mbpoll prints %g of the same float
    assert abs(Decimal(as_float[reference]) - polled) < Decimal("0.01")
    seen = decode_float32(int(live_words[reference], 16), int(live_words[reference + 1], 16))
    assert first <= seen <= last


def test_mbpoll_switches_the_relay_coil_and_the_register_freezes() -> None:
    require_tool("mbpoll")

    async def scenario():
        clock = SimClock(START, speed=3600.0)  # one simulated hour per real second
        async with Simulator(2, units_per_port=2, clock=clock) as sim, client() as modbus:
            meter = sim.registry().meters[0]
            coil = ["-t", "0", "-r", str(meter.relay.coil + 1)]
            states = [await mbpoll(meter, *coil)]
            await mbpoll(meter, *coil, write="0")  # cut the supply
            states.append(await mbpoll(meter, *coil))
            cut = sim.meter(meter.meter_id).relay_closed()
            frozen = [await modbus.read_sample(meter)]
            await asyncio.sleep(0.5)  # half a simulated hour
            frozen.append(await modbus.read_sample(meter))
            await mbpoll(meter, *coil, write="1")  # reconnect
            states.append(await mbpoll(meter, *coil))
            await asyncio.sleep(0.5)
            resumed = await modbus.read_sample(meter)
            return states, cut, frozen, resumed

    states, cut, (before, after), resumed = asyncio.run(scenario())
    assert states == [{1: "1"}, {1: "0"}, {1: "1"}]
    assert cut is False
    assert before.energy_kwh == after.energy_kwh and after.power_w == Decimal("0.0")
    assert resumed.energy_kwh > after.energy_kwh and resumed.power_w > 0


def test_unknown_unit_answers_like_a_gateway() -> None:
    require_tool("mbpoll")

    async def scenario():
        async with Simulator(1, clock=SimClock(START)) as sim:
            meter = sim.registry().meters[0]
            ghost = MeterEntry("GHOST", meter.host, meter.port, 200, MODELS["sdm120"])
            command = [require_tool("mbpoll"), "-m", "tcp", "-a", "200", "-p", str(ghost.port)]
            command += ["-1", "-o", "2", *energy_args(ghost, "float"), ghost.host]
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            _, err = await process.communicate()
            return process.returncode, err.decode()

    returncode, err = asyncio.run(scenario())
    assert returncode != 0
    assert "Target device failed to respond" in err  # exception 0x0B
