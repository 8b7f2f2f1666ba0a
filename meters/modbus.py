"""The Modbus TCP adapter: every pymodbus call in wattpay lives here (SPEC S13).

``ModbusClient`` reads meters and switches relays over a bounded pool of connections per
host:port, with a timeout per request and retries with backoff; failures surface as
``ModbusError`` with a bounded ``kind``. ``MeterServer`` serves up to 247 meters on one TCP
port for the simulator.

pymodbus 3.16 notes: a client connection carries one request at a time (``execute`` holds a
lock), so concurrency needs several connections. On the server side ``ModbusServerContext`` /
``ModbusDeviceContext`` and the data blocks are deprecated shims that are copied into
``SimDevice`` objects when the server starts, so writing to a block afterwards changes
nothing; live values come from a ``SimDevice`` ``action`` hook, called on every access.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Protocol

from pymodbus import ModbusException
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meters.registers import (
    MAX_UNIT_ID,
    READ_HOLDING,
    MeterEntry,
    MeterModel,
    RegisterDecodeError,
    Relay,
)

TIMEOUT = "timeout"
CONNECTION = "connection"
EXCEPTION_RESPONSE = "exception_response"
DECODE = "decode"
ERROR_KINDS = (TIMEOUT, CONNECTION, EXCEPTION_RESPONSE, DECODE)
# Exception codes worth another try: the device or the gateway may answer next time.
_TRANSIENT_CODES = frozenset(
    {ExcCodes.DEVICE_BUSY, ExcCodes.GATEWAY_PATH_UNAVIABLE, ExcCodes.GATEWAY_NO_RESPONSE}
)
_READ_COILS, _WRITE_COIL, _WRITE_COILS = 1, 5, 15


def quiet_modbus_logs(level: int = logging.CRITICAL) -> None:
    """Silence pymodbus' own log lines; failures are counted and reported by wattpay."""
    logging.getLogger("pymodbus").setLevel(level)


class ModbusError(Exception):
    """A failed Modbus request; ``kind`` is one of ``ERROR_KINDS``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One reading of a meter's registers."""

    energy_kwh: Decimal
    power_w: Decimal | None


class _Endpoint:
    """Up to ``size`` connections to one host:port, lent out one request at a time."""

    def __init__(self, host: str, port: int, size: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[AsyncModbusTcpClient] = []
        self._all: set[AsyncModbusTcpClient] = set()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncModbusTcpClient]:
        async with self._slots:
            client = self._idle.pop() if self._idle else self._new()
            try:
                if not client.connected and not await client.connect():
                    raise ModbusError(CONNECTION, "cannot connect")
                yield client
            except BaseException:
                client.close()  # a timed-out connection may still deliver a stale answer
                raise
            finally:
                self._idle.append(client)

    def _new(self) -> AsyncModbusTcpClient:
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout, retries=0, reconnect_delay=0
        )
        self._all.add(client)
        return client

    def close(self) -> None:
        for client in self._all:
            client.close()
        self._all.clear()
        self._idle.clear()


class ModbusClient:
    """Reads meters and switches relays; one connection pool per host:port.

    ``timeout`` bounds each request (and each connect), ``retries`` is the number of further
    attempts after a timeout, a connection failure or a busy device, ``backoff`` the first
    pause between attempts (doubling each time).
    """

    def __init__(
        self,
        *,
        connections: int = 4,
        timeout: float = 1.0,
        retries: int = 2,
        backoff: float = 0.05,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.connections = connections
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}

    async def __aenter__(self) -> ModbusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection."""
        for endpoint in self._endpoints.values():
            endpoint.close()
        self._endpoints.clear()
        await asyncio.sleep(0)  # let the transports finish closing

    async def read_sample(self, meter: MeterEntry) -> MeterSample:
        """Energy (kWh) and, where the model maps it, power (W) of one meter."""
        energy = await self.read_energy(meter)
        power = await self.read_power(meter)
        return MeterSample(energy, power)

    async def read_energy(self, meter: MeterEntry) -> Decimal:
        """The import active energy register in kWh (3 decimals)."""
        words = await self._read_registers(meter, meter.model.energy_address)
        return _decoded(meter.model.decode_energy, words)

    async def read_power(self, meter: MeterEntry) -> Decimal | None:
        """Active power in W (1 decimal), or None if the model does not map it."""
        if meter.model.power_address is None:
            return None
        words = await self._read_registers(meter, meter.model.power_address)
        return _decoded(meter.model.decode_power, words)

    async def write_relay(self, meter: MeterEntry, closed: bool) -> None:
        """Switch the relay coil: on (True) connects the supply, off cuts it."""
        coil = _relay(meter).coil
        await self._request(meter, lambda c: c.write_coil(coil, closed, device_id=meter.unit))

    async def read_relay(self, meter: MeterEntry) -> bool:
        """Whether the relay coil is on (supply connected)."""
        coil = _relay(meter).coil
        response = await self._request(
            meter, lambda c: c.read_coils(coil, count=1, device_id=meter.unit)
        )
        if not response.bits:
            raise ModbusError(DECODE, f"{_where(meter)}: empty coil response")
        return bool(response.bits[0])

    async def _read_registers(self, meter: MeterEntry, address: int) -> list[int]:
        if meter.model.function == READ_HOLDING:

            def call(c: AsyncModbusTcpClient) -> Awaitable[ModbusPDU]:
                return c.read_holding_registers(address, count=2, device_id=meter.unit)
        else:

            def call(c: AsyncModbusTcpClient) -> Awaitable[ModbusPDU]:
                return c.read_input_registers(address, count=2, device_id=meter.unit)

        response = await self._request(meter, call)
        if len(response.registers) != 2:
            raise ModbusError(DECODE, f"{_where(meter)}: {len(response.registers)} registers")
        return list(response.registers)

    async def _request(
        self, meter: MeterEntry, call: Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        """Run one request with retries; raise ``ModbusError`` when it cannot succeed."""
        endpoint = self._endpoint(meter)
        failure = ModbusError(CONNECTION, f"{_where(meter)}: not attempted")
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                async with endpoint.connection() as client:
                    response = await asyncio.wait_for(call(client), self.timeout * 2 + 1)
            except ModbusError as err:
                failure = ModbusError(err.kind, f"{_where(meter)}: {err.detail}")
                continue
            except (TimeoutError, ModbusIOException) as err:
                failure = _failure(meter, err)
                if failure.kind == TIMEOUT:
                    continue
                raise failure from err
            except (ConnectionException, OSError) as err:
                failure = ModbusError(CONNECTION, f"{_where(meter)}: {err}")
                continue
            except ModbusException as err:
                raise ModbusError(DECODE, f"{_where(meter)}: {err}") from err
            if not response.isError():
                return response
            code = getattr(response, "exception_code", 0)
            failure = ModbusError(EXCEPTION_RESPONSE, f"{_where(meter)}: exception code {code}")
            if code not in _TRANSIENT_CODES:
                break
        raise failure

    def _endpoint(self, meter: MeterEntry) -> _Endpoint:
        key = meter.endpoint
        if key not in self._endpoints:
            self._endpoints[key] = _Endpoint(*key, self.connections, self.timeout)
        return self._endpoints[key]


def _where(meter: MeterEntry) -> str:
    return f"{meter.meter_id} at {meter.host}:{meter.port} unit {meter.unit}"


def _relay(meter: MeterEntry) -> Relay:
    if meter.relay is None:
        raise ValueError(f"meter {meter.meter_id} has no relay in the registry")
    return meter.relay


def _failure(meter: MeterEntry, err: Exception) -> ModbusError:
    """A timeout, or a reply that does not belong to the request (decode)."""
    text = str(err)
    if isinstance(err, TimeoutError) or "No response" in text:
        return ModbusError(TIMEOUT, f"{_where(meter)}: no response")
    return ModbusError(DECODE, f"{_where(meter)}: {text}")


def _decoded(decode: Callable[[Sequence[int]], Decimal], words: Sequence[int]) -> Decimal:
    try:
        return decode(words)
    except RegisterDecodeError as err:
        raise ModbusError(DECODE, str(err)) from err


class ServedMeter(Protocol):
    """What ``MeterServer`` needs from a meter: identity, live values and the relay."""

    unit: int
    model: MeterModel
    relay: Relay | None

    def sample(self) -> tuple[Decimal, Decimal]:
        """Energy (kWh) and power (W) at this instant."""

    def relay_closed(self) -> bool:
        """Whether the supply is connected."""

    def set_relay(self, closed: bool) -> None:
        """Connect (True) or cut (False) the supply."""


class MeterServer:
    """A Modbus TCP server for up to 247 meters (unit ids 1…247) on one port.

    Registers are filled from ``ServedMeter.sample()`` whenever they are read, so a client
    always sees the meter's value at that instant. An unknown unit id gets exception 0x0B
    (gateway target failed to respond), as from a Modbus TCP gateway. ``latency`` delays
    every answer by that many seconds, like the round trip to a remote gateway (requests on
    different connections wait concurrently).
    """

    def __init__(
        self,
        meters: Sequence[ServedMeter],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        units = [m.unit for m in meters]
        if not meters or len(set(units)) != len(units) or len(units) > MAX_UNIT_ID:
            raise ValueError("a port serves 1…247 meters with distinct unit ids")
        if not all(1 <= unit <= MAX_UNIT_ID for unit in units):
            raise ValueError("unit ids must be in 1…247")
        self.meters = list(meters)
        self.host = host
        self.port = port
        self.latency = latency
        self._server: ModbusTcpServer | None = None

    async def start(self) -> int:
        """Listen; return the bound port (useful with ``port=0``)."""
        devices = [_device(m, partial(_on_access, m, self.latency), m.unit) for m in self.meters]
        devices.append(_device(self.meters[0], _absent, 0))  # every other unit id
        server = ModbusTcpServer(devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:  # pymodbus' way of saying the address is taken
            raise OSError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        self._server = server
        sockets = server.transport.sockets  # an asyncio.Server while listening
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop every client connection."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
            await asyncio.sleep(0)


def _device(meter: ServedMeter, action: Callable[..., Awaitable[ExcCodes | None]], unit: int):
    """A ``SimDevice`` with the model's float32 registers and, if any, the relay coil."""
    model = meter.model
    addresses = [
        address
        for address in (
            model.energy_address,
            model.total_address,
            model.power_address,
            model.phase_power_address,
        )
        if address is not None
    ]
    registers = [
        SimData(a, count=2, values=0, datatype=DataType.REGISTERS, readonly=True)
        for a in sorted(addresses)
    ]
    unused = [SimData(0, datatype=DataType.INVALID)]
    holding, inputs = (registers, unused) if model.function == READ_HOLDING else (unused, registers)
    coil = meter.relay.coil if meter.relay else 0
    closed = meter.relay_closed() if meter.relay else False
    coils = [SimData(coil, values=closed, datatype=DataType.BITS)]
    discrete = [SimData(0, values=False, datatype=DataType.BITS)]
    return SimDevice(id=unit, simdata=(coils, discrete, holding, inputs), action=action)


async def _on_access(
    meter: ServedMeter,
    latency: float,
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Bring the registers up to this instant, and apply relay writes to the meter."""
    if latency:
        await asyncio.sleep(latency)
    if function_code in (_READ_COILS, _WRITE_COIL, _WRITE_COILS):
        if meter.relay is None:
            return ExcCodes.ILLEGAL_ADDRESS
        bit = meter.relay.coil
        if set_values and address <= bit < address + len(set_values):
            meter.set_relay(bool(set_values[bit - address]))
        index, mask = bit // 16 - start_address, 1 << (bit % 16)  # coils: bit 0 first
        word = registers[index]
        registers[index] = word | mask if meter.relay_closed() else word & ~mask
        return None
    model = meter.model
    energy, power = meter.sample()
    values = {model.energy_address: model.energy_words(energy)}
    if model.total_address is not None:
        values[model.total_address] = values[model.energy_address]
    for power_address in (model.power_address, model.phase_power_address):
        if power_address is not None:
            values[power_address] = model.power_words(power)
    for register_address, (first, second) in values.items():
        offset = register_address - start_address
        registers[offset : offset + 2] = [first, second]
    return None


async def _absent(*_access: object) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE
