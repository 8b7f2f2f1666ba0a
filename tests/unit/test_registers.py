"""Register maps and float32 codecs against fixed register tables; the meter registry."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from meters.registers import (
    MODELS,
    READ_HOLDING,
    READ_INPUT,
    ClockSpec,
    MeterEntry,
    RegisterDecodeError,
    Registry,
    RegistryError,
    Relay,
    decode_float32,
    encode_float32,
    load_registry,
    parse_registry_csv,
    parse_registry_toml,
    parse_relay,
    registry_csv,
    registry_toml,
)

# 1234.56 = 1.2056… × 2^10: sign 0, exponent 127 + 10 = 137 (0x89), mantissa 0x1A51EC, so
# the float32 is 0x449A51EC = 1234.56005859375, high word first on the wire.
KWH_1234_56 = (0x449A, 0x51EC)

# (model, function, energy address, power address, total address, phase-1 power address)
MAPS = [
    ("sdm120", READ_INPUT, 0x0048, 0x000C, 0x0156, None),
    ("sdm630", READ_INPUT, 0x0048, 0x0034, 0x0156, 0x000C),
    ("ddsu666", READ_INPUT, 0x4000, 0x2004, None, None),
    ("dtsu666", READ_HOLDING, 0x401E, 0x2012, None, None),
]

# (model, watts, register words for that power, decoded W):
# sdm: W as is, 456.3 → 0x43E42666 (456.29998779…) → 456.3;
# ddsu666 holds kW: 0.4563 → 0x3EE9A027 (0.45629999…) × 1000 → 456.3;
# dtsu666 holds 0.1 W steps: 4563 → 0x458E9800 (exact) × 0.1 → 456.3.
POWER_TABLE = [
    ("sdm120", "456.3", (0x43E4, 0x2666)),
    ("sdm630", "456.3", (0x43E4, 0x2666)),
    ("ddsu666", "456.3", (0x3EE9, 0xA027)),
    ("dtsu666", "456.3", (0x458E, 0x9800)),
]


@pytest.mark.parametrize(("name", "function", "energy", "power", "total", "phase"), MAPS)
def test_register_maps(name, function, energy, power, total, phase) -> None:
    model = MODELS[name]
    assert (model.function, model.energy_address, model.power_address) == (
        function,
        energy,
        power,
    )
    assert (model.total_address, model.phase_power_address) == (total, phase)
    assert model.word_order == "big"
    assert model.register_max_kwh == Decimal(1_000_000)
    assert model.source  # every map names where it comes from


def test_float32_round_trip_of_1234_56_kwh() -> None:
    assert encode_float32(Decimal("1234.56")) == KWH_1234_56
    assert decode_float32(*KWH_1234_56) == Decimal("1234.560")
    for model in MODELS.values():
        assert model.energy_words(Decimal("1234.56")) == KWH_1234_56
        assert model.decode_energy(list(KWH_1234_56)) == Decimal("1234.560")


@pytest.mark.parametrize(("name", "watts", "words"), POWER_TABLE)
def test_power_registers_with_each_models_scaling(name, watts, words) -> None:
    model = MODELS[name]
    assert model.power_words(Decimal(watts)) == words
    assert model.decode_power(list(words)) == Decimal(watts)


def test_same_words_as_pymodbus_float32_conversion() -> None:
    from pymodbus.client.mixin import ModbusClientMixin as Mixin

    for value in ("1234.56", "0.001", "99999.875", "456.3"):
        expected = Mixin.convert_to_registers(float(value), Mixin.DATATYPE.FLOAT32)
        assert list(encode_float32(Decimal(value))) == expected
        assert decode_float32(*expected) == Decimal(
            str(round(Mixin.convert_from_registers(expected, Mixin.DATATYPE.FLOAT32), 3))
        )


def test_decode_rounds_half_up_to_three_decimals() -> None:
    # 0x3D800000 is exactly 1/16 = 0.0625: half up gives 0.063 (half even would give 0.062).
    assert decode_float32(0x3D80, 0x0000) == Decimal("0.063")
    assert decode_float32(0x3D80, 0x0000, places=1) == Decimal("0.1")
    assert str(decode_float32(0x0000, 0x0000)) == "0.000"
    assert str(decode_float32(0x8000, 0x0000)) == "0.000"  # -0.0 is plain zero


def test_little_word_order_swaps_the_registers() -> None:
    model = replace(MODELS["sdm120"], word_order="little")
    assert model.energy_words(Decimal("1234.56")) == (0x51EC, 0x449A)
    assert model.decode_energy([0x51EC, 0x449A]) == Decimal("1234.560")


def test_energy_register_wraps_at_the_register_maximum() -> None:
    model = MODELS["sdm120"]
    assert model.energy_words(Decimal("1000000.5")) == (0x3F00, 0x0000)  # 0.5 kWh
    small = replace(model, register_max_kwh=Decimal(100_000))
    # 100,099.5 kWh wraps to 99.5 = 0x42C70000
    assert small.energy_words(Decimal("100099.5")) == (0x42C7, 0x0000)
    with pytest.raises(RegisterDecodeError, match="outside"):
        small.decode_energy(list(encode_float32(200_000)))


@pytest.mark.parametrize(
    "words",
    [(0x7FC0, 0x0000), (0x7F80, 0x0000), (0xFF80, 0x0000), (0xC2C8, 0x0000)],
    ids=["nan", "inf", "-inf", "negative"],
)
def test_unusable_energy_registers_are_decode_errors(words) -> None:
    with pytest.raises(RegisterDecodeError):
        MODELS["sdm120"].decode_energy(list(words))


def test_wrong_register_count_or_width_is_a_decode_error() -> None:
    with pytest.raises(RegisterDecodeError):
        MODELS["sdm120"].decode_energy([0x449A])
    with pytest.raises(RegisterDecodeError):
        decode_float32(0x1_0000, 0)


def test_relay_option() -> None:
    assert parse_relay("coil:0") == Relay(0)
    assert parse_relay(" coil:17 ") == Relay(17)
    assert parse_relay("") is None and parse_relay(None) is None
    assert str(Relay(3)) == "coil:3"
    for bad in ("coil", "coil:-1", "register:0", "coil:70000"):
        with pytest.raises(ValueError, match="coil:N"):
            parse_relay(bad)


CSV = """meter_id,host,port,unit,model,relay
M0001,127.0.0.1,5020,1,sdm120,coil:0
M0002,127.0.0.1,5020,2,DTSU666,
"""


def test_registry_csv() -> None:
    registry = parse_registry_csv(CSV)
    first, second = registry.meters
    assert first == MeterEntry("M0001", "127.0.0.1", 5020, 1, MODELS["sdm120"], Relay(0))
    assert second.model is MODELS["dtsu666"] and second.relay is None
    assert registry.clock is None
    assert registry.by_id()["M0002"] is second


def test_registry_csv_reports_every_problem_at_once() -> None:
    text = """meter_id,host,port,unit,model,relay
M0001,127.0.0.1,5020,1,sdm120,coil:0
M0001,127.0.0.1,5020,2,sdm120,
M0003,,70000,0,abb,relay:1
M0004,127.0.0.1,5020,1,sdm630,
M0005,127.0.0.1,5020,248,sdm630,
"""
    with pytest.raises(RegistryError) as caught:
        parse_registry_csv(text, "meters.csv")
    problems = caught.value.problems
    assert problems == [
        "meters.csv line 3: meter_id 'M0001' already used at meters.csv line 2",
        "meters.csv line 4: host is empty",
        "meters.csv line 4: port must be an integer in 1…65535, got '70000'",
        "meters.csv line 4: unit must be an integer in 1…247, got '0'",
        "meters.csv line 4: model 'abb' is not one of sdm120, sdm630, ddsu666, dtsu666",
        "meters.csv line 4: relay must be 'coil:N' with N in 0…65535, got 'relay:1'",
        "meters.csv line 5: 127.0.0.1:5020 unit 1 already used at meters.csv line 2",
        "meters.csv line 6: unit must be an integer in 1…247, got '248'",
    ]
    assert "invalid meter registry" in str(caught.value)


def test_registry_csv_needs_its_columns() -> None:
    with pytest.raises(RegistryError, match="header lacks unit, model"):
        parse_registry_csv("meter_id,host,port\nM1,127.0.0.1,502\n")


TOML = """
[clock]
start = "2026-03-02T08:00:00+08:00"
speed = 600.0
anchor = 1790000000.5

[[meters]]
meter_id = "M0001"
host = "127.0.0.1"
port = 5020
unit = 1
model = "ddsu666"
relay = "coil:0"
"""


def test_registry_toml_with_clock() -> None:
    registry = parse_registry_toml(TOML)
    (meter,) = registry.meters
    assert meter == MeterEntry("M0001", "127.0.0.1", 5020, 1, MODELS["ddsu666"], Relay(0))
    start = datetime(2026, 3, 2, 8, tzinfo=timezone(timedelta(hours=8)))
    assert registry.clock == ClockSpec(start, 600.0, 1790000000.5)


def test_registry_toml_reports_every_problem_at_once() -> None:
    text = """
[clock]
speed = 0

[[meters]]
meter_id = "M1"
host = "127.0.0.1"
port = "x"
unit = true
model = "sdm120"
"""
    with pytest.raises(RegistryError) as caught:
        parse_registry_toml(text, "m.toml")
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("m.toml [clock]: needs start")
    assert problems[1:] == [
        "m.toml meters[0]: port must be an integer in 1…65535, got 'x'",
        "m.toml meters[0]: unit must be an integer in 1…247, got True",
    ]
    with pytest.raises(RegistryError, match="m.toml"):
        parse_registry_toml("[[meters]\n", "m.toml")


def test_registry_round_trips_through_both_formats(tmp_path) -> None:
    start = datetime(2026, 3, 2, 8, tzinfo=timezone(timedelta(hours=8)))
    registry = Registry(
        tuple(
            MeterEntry(f"M{i}", "127.0.0.1", 5020 + i // 3, i % 3 + 1, model, Relay(0))
            for i, model in enumerate(MODELS.values())
        ),
        ClockSpec(start, 60.0, 1790000000.25),
    )
    assert parse_registry_toml(registry_toml(registry)) == registry
    assert parse_registry_csv(registry_csv(registry.meters)).meters == registry.meters
    (tmp_path / "r.toml").write_text(registry_toml(registry), encoding="utf-8")
    assert load_registry(tmp_path / "r.toml") == registry
    with pytest.raises(RegistryError, match="missing.csv"):
        load_registry(tmp_path / "missing.csv")
