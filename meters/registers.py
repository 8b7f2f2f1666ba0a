"""Meter register maps, float32 register codecs and the meter registry (SPEC S13).

Pure: no pymodbus here, so maps and codecs are testable without a socket. Addresses are
0-based PDU addresses, as sent on the wire (a manual's "30073" is input register 0x0048).
Values are IEEE-754 float32 in two 16-bit registers, high word first ("big" word order), each
word big-endian. Floats exist only on the wire: decoded values are ``Decimal``, rounded half
up to a fixed number of places.

Register maps and where they come from:

- ``sdm120`` — Eastron SDM120-Modbus, function 04 (input registers): active power W at 0x000C
  (30013), import active energy kWh at 0x0048 (30073), total active energy kWh at 0x0156
  (30343). Source: Eastron's "SDM120-Modbus" protocol manual as transcribed in
  volkszaehler/mbmd ``meters/rs485/sdm120.go`` (which cites the manual; read with
  ``ReadInputReg``, ``RTUIeee754ToFloat64``); evcc's ``eastron-sdm120`` template uses it.
- ``sdm630`` — Eastron SDM630, function 04: import 0x0048 and total 0x0156 kWh as above; the
  total system active power W is 0x0034 (30053), while 0x000C (30013) is phase 1 power.
  Source: Eastron "SDM630 Modbus protocol" register list as transcribed in volkszaehler/mbmd
  ``meters/rs485/sdm.go`` (``Power: 0x0034``, ``PowerL1: 0x000C``, ``Import: 0x0048``,
  ``Sum: 0x0156``). The simulator serves the same power at both addresses (one-phase homes).
- ``ddsu666`` — Chint DDSU666 single phase, function 04: active power at 0x2004 in **kW**,
  import active energy kWh at 0x4000. Source: Tasmota ``xnrg_11_ddsu666.ino`` (arendst/Tasmota,
  reads each value with function 0x04, two registers, high word first; power × 1000 = W).
- ``dtsu666`` — Chint DTSU666 three phase, function 03 (holding registers): total active power
  Pt at 0x2012 in units of 0.1 W, import active energy ImpEp kWh at 0x401E. Sources: the
  DTSU666 register table published by AGGSOFT (offset 16414 = 0x401E "positive active total
  energy", 8210 = 0x2012 "conjunction active power"), and volkszaehler/mbmd
  ``meters/rs485/dtsu666.go`` for function 03 and the ÷10 power scaling. mbmd reads ImpEp at
  0x101E instead: Chint firmware revisions differ, so check the meter's own manual.

Relay: a coil (function 05 to write, 01 to read), ``relay = "coil:N"``; on = supply
connected, as on AcuRev-style meters with a load-control relay.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

READ_HOLDING = 3
READ_INPUT = 4
WORD_ORDERS = ("big", "little")
DEFAULT_REGISTER_MAX_KWH = Decimal(1_000_000)
MAX_UNIT_ID = 247
ENERGY_PLACES = 3
POWER_PLACES = 1
REGISTRY_FIELDS = ("meter_id", "host", "port", "unit", "model", "relay")


class RegisterDecodeError(ValueError):
    """Registers that do not hold a usable value (NaN, infinity, negative or out of range)."""


@dataclass(frozen=True, slots=True)
class MeterModel:
    """Where one meter model keeps its values, and how to turn registers into kWh and W."""

    name: str
    manufacturer: str
    function: int  # 3 = holding registers, 4 = input registers (energy and power alike)
    energy_address: int  # import active energy, float32
    power_address: int | None = None  # total active power, float32
    total_address: int | None = None  # total (import + export) active energy, float32
    phase_power_address: int | None = None  # phase 1 active power, float32
    power_scale: Decimal = Decimal(1)  # register value × power_scale = W
    energy_scale: Decimal = Decimal(1)  # register value × energy_scale = kWh
    word_order: str = "big"
    register_max_kwh: Decimal = DEFAULT_REGISTER_MAX_KWH  # the energy register wraps here
    source: str = ""

    def energy_words(self, kwh: Decimal) -> tuple[int, int]:
        """The two registers (wire order) holding ``kwh``, wrapped at the register maximum."""
        return _order(encode_float32(kwh % self.register_max_kwh / self.energy_scale), self)

    def power_words(self, watts: Decimal) -> tuple[int, int]:
        """The two registers (wire order) holding an active power of ``watts``."""
        return _order(encode_float32(watts / self.power_scale), self)

    def decode_energy(self, registers: Sequence[int]) -> Decimal:
        """Import energy in kWh (3 decimals) from the two energy registers in wire order."""
        hi, lo = _order(_pair(registers), self)
        value = _decode_exact(hi, lo) * self.energy_scale
        if value < 0 or value > self.register_max_kwh:
            raise RegisterDecodeError(f"energy {value} kWh outside 0…{self.register_max_kwh}")
        return _quantize(value, ENERGY_PLACES)

    def decode_power(self, registers: Sequence[int]) -> Decimal:
        """Active power in W (1 decimal) from the two power registers in wire order."""
        hi, lo = _order(_pair(registers), self)
        return _quantize(_decode_exact(hi, lo) * self.power_scale, POWER_PLACES)


_EASTRON_SDM120 = "Eastron SDM120-Modbus manual; volkszaehler/mbmd meters/rs485/sdm120.go"
_EASTRON_SDM630 = "Eastron SDM630 Modbus register list; volkszaehler/mbmd meters/rs485/sdm.go"
_CHINT_DDSU666 = "Tasmota tasmota_xnrg_energy/xnrg_11_ddsu666.ino (function 04)"
_CHINT_DTSU666 = "AGGSOFT DTSU666 register map (0x401E); volkszaehler/mbmd meters/rs485/dtsu666.go"

MODELS: dict[str, MeterModel] = {
    "sdm120": MeterModel(
        name="sdm120",
        manufacturer="Eastron",
        function=READ_INPUT,
        energy_address=0x0048,
        power_address=0x000C,
        total_address=0x0156,
        source=_EASTRON_SDM120,
    ),
    "sdm630": MeterModel(
        name="sdm630",
        manufacturer="Eastron",
        function=READ_INPUT,
        energy_address=0x0048,
        power_address=0x0034,
        total_address=0x0156,
        phase_power_address=0x000C,
        source=_EASTRON_SDM630,
    ),
    "ddsu666": MeterModel(
        name="ddsu666",
        manufacturer="Chint",
        function=READ_INPUT,
        energy_address=0x4000,
        power_address=0x2004,
        power_scale=Decimal(1000),  # the register holds kW
        source=_CHINT_DDSU666,
    ),
    "dtsu666": MeterModel(
        name="dtsu666",
        manufacturer="Chint",
        function=READ_HOLDING,
        energy_address=0x401E,
        power_address=0x2012,
        power_scale=Decimal("0.1"),  # the register holds 0.1 W steps
        source=_CHINT_DTSU666,
    ),
}


def encode_float32(value: Decimal | int | float | str) -> tuple[int, int]:
    """IEEE-754 float32 of ``value`` as (high word, low word); 1234.56 → (0x449A, 0x51EC)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", float(value)))
    return hi, lo


def decode_float32(hi: int, lo: int, places: int = ENERGY_PLACES) -> Decimal:
    """The float32 in (high word, low word) as a Decimal rounded half up to ``places``."""
    return _quantize(_decode_exact(hi, lo), places)


def _decode_exact(hi: int, lo: int) -> Decimal:
    if not (0 <= hi <= 0xFFFF and 0 <= lo <= 0xFFFF):
        raise RegisterDecodeError(f"registers must be 16-bit words, got {hi!r}, {lo!r}")
    (value,) = struct.unpack(">f", struct.pack(">HH", hi, lo))
    if not math.isfinite(value):
        raise RegisterDecodeError(f"register value is {value} (0x{hi:04X} 0x{lo:04X})")
    return Decimal(value)  # exact: every float32 is a finite binary fraction


def _quantize(value: Decimal, places: int) -> Decimal:
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return rounded + 0  # turns -0.0 into 0.0


def _pair(registers: Sequence[int]) -> tuple[int, int]:
    if len(registers) != 2:
        raise RegisterDecodeError(f"expected 2 registers, got {len(registers)}")
    return registers[0], registers[1]


def _order(words: tuple[int, int], model: MeterModel) -> tuple[int, int]:
    """Swap between (high, low) and wire order for little-word-order models."""
    return words if model.word_order == "big" else (words[1], words[0])


@dataclass(frozen=True, slots=True)
class Relay:
    """The supply relay of a meter: a coil, on = supply connected."""

    coil: int

    def __str__(self) -> str:
        return f"coil:{self.coil}"


def parse_relay(text: str | None) -> Relay | None:
    """``"coil:N"`` → ``Relay(N)``; empty or None → no relay."""
    if text is None or not str(text).strip():
        return None
    kind, _, address = str(text).strip().partition(":")
    if kind != "coil" or not address.isdigit() or int(address) > 0xFFFF:
        raise ValueError(f"relay must be 'coil:N' with N in 0…65535, got {text!r}")
    return Relay(int(address))


@dataclass(frozen=True, slots=True)
class MeterEntry:
    """One meter in the registry: where it answers and what it is."""

    meter_id: str
    host: str
    port: int
    unit: int
    model: MeterModel
    relay: Relay | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.host, self.port

    def row(self) -> dict[str, str | int]:
        """The registry row of this meter (CSV / TOML field values)."""
        return {
            "meter_id": self.meter_id,
            "host": self.host,
            "port": self.port,
            "unit": self.unit,
            "model": self.model.name,
            "relay": str(self.relay) if self.relay else "",
        }


@dataclass(frozen=True, slots=True)
class ClockSpec:
    """A simulated clock: it reads ``start`` at wall time ``anchor`` (Unix s), × ``speed``."""

    start: datetime
    speed: float
    anchor: float


@dataclass(frozen=True, slots=True)
class Registry:
    """The meters to poll and, for simulated meters, the clock they run on."""

    meters: tuple[MeterEntry, ...]
    clock: ClockSpec | None = None

    def by_id(self) -> dict[str, MeterEntry]:
        return {m.meter_id: m for m in self.meters}


class RegistryError(ValueError):
    """Every problem found in a registry file, reported at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid meter registry:\n  - " + "\n  - ".join(problems))
        self.problems = problems


def load_registry(path: str | Path) -> Registry:
    """Read a registry file: ``.toml`` (``[[meters]]`` tables) or CSV (with a header row)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RegistryError([f"{path}: {err}"]) from err
    if path.suffix.lower() == ".toml":
        return parse_registry_toml(text, str(path))
    return parse_registry_csv(text, str(path))


def parse_registry_csv(text: str, source: str = "registry.csv") -> Registry:
    """Parse CSV with the columns ``meter_id, host, port, unit, model, relay``."""
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    header = [name.strip() for name in rows.fieldnames or []]
    missing = [name for name in REGISTRY_FIELDS[:5] if name not in header]
    if missing:
        raise RegistryError([f"{source}: header lacks {', '.join(missing)}"])
    records = [
        (f"{source} line {rows.line_num}", {k.strip(): v for k, v in row.items() if k})
        for row in rows
    ]
    return Registry(_validate(records))


def parse_registry_toml(text: str, source: str = "registry.toml") -> Registry:
    """Parse ``[[meters]]`` tables and an optional ``[clock]`` table."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RegistryError([f"{source}: {err}"]) from err
    meters = raw.get("meters", [])
    if not isinstance(meters, list):
        raise RegistryError([f"{source}: 'meters' must be an array of tables ([[meters]])"])
    records = [(f"{source} meters[{i}]", row) for i, row in enumerate(meters)]
    problems: list[str] = []
    clock = _clock(raw.get("clock"), f"{source} [clock]", problems)
    try:
        entries = _validate(records)
    except RegistryError as err:
        raise RegistryError(problems + err.problems) from None
    if problems:
        raise RegistryError(problems)
    return Registry(entries, clock)


def _clock(raw: Any, where: str, problems: list[str]) -> ClockSpec | None:
    if raw is None:
        return None
    try:
        start = raw["start"]
        start = start if isinstance(start, datetime) else datetime.fromisoformat(str(start))
        if start.tzinfo is None:
            raise ValueError("start needs an offset")
        speed, anchor = float(raw["speed"]), float(raw["anchor"])
        if not speed > 0:
            raise ValueError("speed must be > 0")
    except (KeyError, TypeError, ValueError) as err:
        problems.append(f"{where}: needs start (ISO with offset), speed > 0, anchor: {err}")
        return None
    return ClockSpec(start, speed, anchor)


def _validate(records: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[MeterEntry, ...]:
    """Turn raw rows into entries, collecting every problem before raising."""
    problems: list[str] = []
    entries: list[MeterEntry] = []
    seen_ids: dict[str, str] = {}
    seen_units: dict[tuple[str, int, int], str] = {}
    for where, row in records:
        found: list[str] = []
        meter_id = str(row.get("meter_id") or "").strip()
        host = str(row.get("host") or "").strip()
        if not meter_id:
            found.append("meter_id is empty")
        elif meter_id in seen_ids:
            found.append(f"meter_id {meter_id!r} already used at {seen_ids[meter_id]}")
        if not host:
            found.append("host is empty")
        port = _number(row.get("port"), "port", 1, 65535, found)
        unit = _number(row.get("unit"), "unit", 1, MAX_UNIT_ID, found)
        model = MODELS.get(str(row.get("model") or "").strip().lower())
        if model is None:
            found.append(f"model {row.get('model')!r} is not one of {', '.join(MODELS)}")
        relay = None
        try:
            relay = parse_relay(row.get("relay"))
        except ValueError as err:
            found.append(str(err))
        slot = (host, port, unit)
        if not found and slot in seen_units:
            found.append(f"{host}:{port} unit {unit} already used at {seen_units[slot]}")
        if found:
            problems.extend(f"{where}: {problem}" for problem in found)
            continue
        assert model is not None
        seen_ids[meter_id] = seen_units[slot] = where
        entries.append(MeterEntry(meter_id, host, port, unit, model, relay))
    if problems:
        raise RegistryError(problems)
    return tuple(entries)


def _number(value: Any, name: str, low: int, high: int, problems: list[str]) -> int:
    text = str(value if value is not None else "").strip()
    if isinstance(value, bool) or not text.isdigit() or not low <= int(text) <= high:
        problems.append(f"{name} must be an integer in {low}…{high}, got {value!r}")
        return 0
    return int(text)


def registry_csv(meters: Iterable[MeterEntry]) -> str:
    """The registry as CSV text, header first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REGISTRY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(m.row() for m in meters)
    return out.getvalue()


def registry_toml(registry: Registry) -> str:
    """The registry as TOML text: an optional ``[clock]`` table, then ``[[meters]]``."""
    lines: list[str] = []
    if registry.clock is not None:
        clock = registry.clock
        lines += [
            "[clock]",
            f"start = {json.dumps(clock.start.isoformat())}",
            f"speed = {clock.speed!r}",
            f"anchor = {clock.anchor!r}",
            "",
        ]
    for meter in registry.meters:
        lines.append("[[meters]]")
        for key, value in meter.row().items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


def write_registry(path: str | Path, registry: Registry) -> None:
    """Write ``registry`` as TOML or CSV, chosen by the file suffix (CSV has no clock)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    is_toml = path.suffix.lower() == ".toml"
    text = registry_toml(registry) if is_toml else registry_csv(registry.meters)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # readers never see a half-written registry
