"""Zhejiang tiered and time-of-use rating (SPEC S3, S4, S14.7), by hand-computed golden values.

Prices (yuan/kWh, S4): tier 1 ≤ 2760 kWh, tier 2 2760–4800, tier 3 > 4800 on the calendar-year
cumulative; flat 0.538 / 0.588 / 0.838; peak (08:00–22:00) 0.568 / 0.618 / 0.868; valley
(22:00–08:00) 0.288 / 0.338 / 0.588.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.clock import LOCAL_ZONE
from billing.numbers import from_cost, from_milli
from billing.rating import rate_part
from billing.tariffs import BUILTIN_PLANS
from tests.billing_harness import Replay, at, open_account, reading, replay, ts

TIERED = BUILTIN_PLANS["zhejiang-tiered"]
TOU = BUILTIN_PLANS["zhejiang-tou"]
D = Decimal


def slices(plan, start: str, end: str, milli: int, cumulative: int) -> list[tuple]:
    """Each slice with its price and cost in yuan (the core keeps 10^-4 and 10^-7 yuan units)."""
    return [
        (s.milli_kwh, s.period, s.tier, D(s.price).scaleb(-4), from_cost(s.cost))
        for s in rate_part(plan, at(start), at(end), milli, cumulative)
    ]


def day_row(result: Replay, account_id: str, day: date) -> dict[str, Any]:
    rows = result.rows("daily_usage", account_id=account_id, day=day)
    assert len(rows) == 1, rows
    return rows[0]


def assert_day(row: dict[str, Any], **expected: str) -> None:
    for name, value in expected.items():
        assert row[name] == D(value), (name, row[name], value)


# --- rate_part: one apportioned part ----------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "start", "tier", "cumulative", "period", "price"),
    [
        (TIERED, "2026-03-02T10:00", 1, 0, "flat", "0.538"),
        (TIERED, "2026-03-02T10:00", 2, 2_760_000, "flat", "0.588"),
        (TIERED, "2026-03-02T10:00", 3, 4_800_000, "flat", "0.838"),
        (TOU, "2026-03-02T08:00", 1, 0, "peak", "0.568"),
        (TOU, "2026-03-02T21:00", 2, 2_760_000, "peak", "0.618"),
        (TOU, "2026-03-02T12:00", 3, 4_800_000, "peak", "0.868"),
        (TOU, "2026-03-02T22:00", 1, 0, "valley", "0.288"),
        (TOU, "2026-03-02T07:00", 2, 2_760_000, "valley", "0.338"),
        (TOU, "2026-03-02T00:00", 3, 4_800_000, "valley", "0.588"),
    ],
)
def test_price_table(plan, start, tier, cumulative, period, price) -> None:
    # 1.000 kWh starting exactly at a tier bound is wholly in the next tier: cost = price.
    end = (at(start) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    assert slices(plan, start, end, 1000, cumulative) == [(1000, period, tier, D(price), D(price))]


def test_tier_bound_crossed_inside_one_part() -> None:
    # ytd 2759.500 + 1.000 kWh: 0.500 up to 2760 in tier 1, 0.500 above it in tier 2.
    # 0.5 × 0.538 = 0.269; 0.5 × 0.588 = 0.294.
    assert slices(TIERED, "2026-03-02T10:00", "2026-03-02T10:15", 1000, 2_759_500) == [
        (500, "flat", 1, D("0.538"), D("0.269")),
        (500, "flat", 2, D("0.588"), D("0.294")),
    ]


def test_reaching_the_bound_exactly_stays_in_the_lower_tier() -> None:
    # tier 1 covers cumulative kWh in (0, 2760]: 2759 + 1 ends exactly on the bound.
    assert slices(TIERED, "2026-03-02T10:00", "2026-03-02T10:15", 1000, 2_759_000) == [
        (1000, "flat", 1, D("0.538"), D("0.538"))
    ]


def test_one_part_crosses_both_bounds() -> None:
    # 2759 + 2042 kWh: 1 kWh tier 1 (0.538), 2040 kWh tier 2 (2040 × 0.588 = 1199.52),
    # 1 kWh tier 3 (0.838).
    assert slices(TIERED, "2026-03-02T00:00", "2026-03-05T00:00", 2_042_000, 2_759_000) == [
        (1000, "flat", 1, D("0.538"), D("0.538")),
        (2_040_000, "flat", 2, D("0.588"), D("1199.520")),
        (1000, "flat", 3, D("0.838"), D("0.838")),
    ]


def test_tier_3_prices_when_crossing_4800() -> None:
    # ytd 4799.750 + 0.500: 0.25 × 0.588 = 0.147 (tier 2) and 0.25 × 0.838 = 0.2095 (tier 3).
    assert slices(TIERED, "2026-03-02T10:00", "2026-03-02T10:30", 500, 4_799_750) == [
        (250, "flat", 2, D("0.588"), D("0.147")),
        (250, "flat", 3, D("0.838"), D("0.2095")),
    ]
    # TOU valley at tier 3: 0.25 × 0.338 = 0.0845 and 0.25 × 0.588 = 0.147.
    assert slices(TOU, "2026-03-02T23:00", "2026-03-02T23:30", 500, 4_799_750) == [
        (250, "valley", 2, D("0.338"), D("0.0845")),
        (250, "valley", 3, D("0.588"), D("0.147")),
    ]


@pytest.mark.parametrize(
    ("start", "period"),
    [
        ("2026-03-02T07:45", "valley"),
        ("2026-03-02T08:00", "peak"),
        ("2026-03-02T21:45", "peak"),
        ("2026-03-02T22:00", "valley"),
        ("2026-03-02T00:00", "valley"),
    ],
)
def test_tou_period_is_chosen_by_the_part_start(start: str, period: str) -> None:
    end = (at(start) + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M")
    [(_, got, _, _, _)] = slices(TOU, start, end, 100, 0)
    assert got == period


def test_zero_consumption_rates_nothing() -> None:
    assert slices(TOU, "2026-03-02T10:00", "2026-03-02T10:15", 0, 2_760_000) == []


BOUNDS_MILLI = (0, 2_760_000, 4_800_000, None)


@settings(max_examples=100, deadline=None)
@given(
    milli=st.integers(0, 6_000_000),
    cumulative=st.integers(0, 6_000_000),
    plan=st.sampled_from([TIERED, TOU]),
    minute=st.integers(0, 24 * 60 - 1),
)
def test_rate_part_splits_at_tier_bounds(milli: int, cumulative: int, plan, minute: int) -> None:
    start = datetime(2026, 3, 2, tzinfo=LOCAL_ZONE) + timedelta(minutes=minute)
    got = rate_part(plan, start, start + timedelta(minutes=1), milli, cumulative)
    # Expected overlap of [c0, c0 + Δ] with each tier's (lower, upper] cumulative range.
    expected_by_tier = {}
    for tier in (1, 2, 3):
        lower, upper = BOUNDS_MILLI[tier - 1], BOUNDS_MILLI[tier]
        top = cumulative + milli if upper is None else min(cumulative + milli, upper)
        amount = top - max(cumulative, lower)
        if amount > 0:
            expected_by_tier[tier] = amount
    assert {s.tier: s.milli_kwh for s in got} == expected_by_tier
    assert [s.tier for s in got] == sorted(expected_by_tier)
    hour = start.hour
    period = "flat" if plan is TIERED else ("peak" if 8 <= hour < 22 else "valley")
    for s in got:
        assert s.period == period
        price = plan.prices[period][s.tier - 1]
        assert D(s.price).scaleb(-4) == price
        assert from_cost(s.cost) == from_milli(s.milli_kwh) * price  # exact, in integers


# --- end to end through run_sequential --------------------------------------------------------


def one_meter(
    tmp_path: Path,
    plan: str,
    readings: list[tuple[str, str]],
    opened: str = "2026-03-02T00:00",
    **extra: str,
) -> Replay:
    """Account A1 on meter M1, opened at ``opened`` with ``extra`` fields; then M1's readings."""
    return replay(
        tmp_path,
        accounts=[open_account("A1", "M1", plan, opened, **extra)],
        readings=[reading("M1", when, kwh) for when, kwh in readings],
    )


def test_tou_day_split_at_0800_2200_and_midnight_rounded_once(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account("A1", "M1", "zhejiang-tou", "2026-03-02T00:00", opening_balance="100.00")
        ],
        readings=[
            reading("M1", "2026-03-02T06:00", "100.000"),  # baseline
            # 09:00 local written in UTC. 06:00→09:00, Δ 3.001, cut at 08:00:
            # cum(08:00) = round_half_up(3001 × 2/3 = 2000.67) = 2001 → valley 2.001, peak 1.000.
            {"meter_id": "M1", "ts": "2026-03-02T01:00:00Z", "energy_kwh": "103.001"},
            # 09:00→23:00, Δ 15.000, cut at 22:00: cum = round(15000 × 13/14 = 13928.57) = 13929
            # → peak 13.929, valley 1.071.
            reading("M1", "2026-03-02T23:00", "118.001"),
            # 23:00→01:00, Δ 2.000, cut at midnight: 1.000 valley on each day.
            reading("M1", "2026-03-03T01:00", "120.001"),
        ],
    )
    intervals = [
        (r["start"], r["end"], r["kwh"], r["period"], r["tier"], r["price"], r["cost"])
        for r in result.rows("intervals", account_id="A1")
    ]
    expected = [
        ("2026-03-02T06:00", "2026-03-02T08:00", "2.001", "valley", 1, "0.288", "0.576288"),
        ("2026-03-02T08:00", "2026-03-02T09:00", "1.000", "peak", 1, "0.568", "0.568"),
        ("2026-03-02T09:00", "2026-03-02T22:00", "13.929", "peak", 1, "0.568", "7.911672"),
        ("2026-03-02T22:00", "2026-03-02T23:00", "1.071", "valley", 1, "0.288", "0.308448"),
        ("2026-03-02T23:00", "2026-03-03T00:00", "1.000", "valley", 1, "0.288", "0.288"),
        ("2026-03-03T00:00", "2026-03-03T01:00", "1.000", "valley", 1, "0.288", "0.288"),
    ]  # costs: 2.001 × 0.288, 13.929 × 0.568 and 1.071 × 0.288 exactly
    assert intervals == [
        (at(start), at(end), D(kwh), period, tier, D(price), D(cost))
        for start, end, kwh, period, tier, price, cost in expected
    ]
    # Mar 2: peak 1.000 + 13.929 = 14.929; valley 2.001 + 1.071 + 1.000 = 4.072; total 19.001.
    # Cost exact: 14.929 × 0.568 = 8.479672 + 4.072 × 0.288 = 1.172736 → 9.652408 → 9.65
    # (rounding each interval first would give 0.58 + 0.57 + 7.91 + 0.31 + 0.29 = 9.66).
    assert_day(
        day_row(result, "A1", date(2026, 3, 2)),
        kwh="19.001",
        kwh_peak="14.929",
        kwh_valley="4.072",
        kwh_tier1="19.001",
        kwh_tier2="0",
        kwh_tier3="0",
        charge="9.65",
        ytd_kwh="19.001",
        closing_balance="90.35",
    )
    # Mar 3 (closed at the end of input): 1.000 valley → 0.288 → 0.29; 90.35 − 0.29 = 90.06.
    assert_day(
        day_row(result, "A1", date(2026, 3, 3)),
        kwh="1.000",
        kwh_peak="0",
        kwh_valley="1.000",
        kwh_tier1="1.000",
        charge="0.29",
        ytd_kwh="20.001",
        closing_balance="90.06",
    )
    charges = [(r["ts"], r["amount"], r["ref"]) for r in result.rows("ledger", kind="charge")]
    assert charges == [
        (at("2026-03-03T00:00"), D("-9.65"), "2026-03-02"),
        (at("2026-03-04T00:00"), D("-0.29"), "2026-03-03"),
    ]


def test_flat_tier_bound_crossed_inside_one_interval(tmp_path: Path) -> None:
    result = one_meter(
        tmp_path,
        "zhejiang-tiered",
        [("2026-03-02T10:00", "0.000"), ("2026-03-02T10:15", "1.000")],
        opening_balance="10.00",
        ytd_kwh="2759.500",
    )
    # 0.5 × 0.538 = 0.269 + 0.5 × 0.588 = 0.294 → 0.563 → 0.56; 10.00 − 0.56 = 9.44.
    assert_day(
        day_row(result, "A1", date(2026, 3, 2)),
        kwh="1.000",
        kwh_peak="0",
        kwh_valley="0",
        kwh_tier1="0.500",
        kwh_tier2="0.500",
        kwh_tier3="0",
        charge="0.56",
        ytd_kwh="2760.500",
        closing_balance="9.44",
    )
    assert [(r["tier"], r["kwh"], r["cost"]) for r in result.rows("intervals")] == [
        (1, D("0.500"), D("0.269")),
        (2, D("0.500"), D("0.294")),
    ]


def test_tou_tier_decided_on_combined_kwh(tmp_path: Path) -> None:
    result = one_meter(
        tmp_path,
        "zhejiang-tou",
        [("2026-03-02T07:00", "0.000"), ("2026-03-02T09:00", "2.000")],
        opening_balance="10.00",
        ytd_kwh="2759.500",
    )
    # 07:00→09:00, Δ 2.000, cut 08:00 → valley 1.000 then peak 1.000.
    # valley: 2759.5→2760 tier 1 0.5 × 0.288 = 0.144; 2760→2760.5 tier 2 0.5 × 0.338 = 0.169.
    # peak: 2760.5→2761.5 all tier 2 (the valley kWh count): 1 × 0.618 = 0.618.
    # 0.144 + 0.169 + 0.618 = 0.931 → 0.93.
    assert_day(
        day_row(result, "A1", date(2026, 3, 2)),
        kwh="2.000",
        kwh_peak="1.000",
        kwh_valley="1.000",
        kwh_tier1="0.500",
        kwh_tier2="1.500",
        kwh_tier3="0",
        charge="0.93",
        ytd_kwh="2761.500",
        closing_balance="9.07",
    )


def test_tier_3_end_to_end(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(
                "A1",
                "M1",
                "zhejiang-tiered",
                "2026-03-02T00:00",
                opening_balance="10.00",
                ytd_kwh="4799.750",
            ),
            open_account(
                "A2",
                "M2",
                "zhejiang-tou",
                "2026-03-02T00:00",
                opening_balance="10.00",
                ytd_kwh="4800",
            ),
        ],
        readings=[
            reading("M1", "2026-03-02T10:00", "0.000"),
            reading("M1", "2026-03-02T10:30", "0.500"),
            reading("M2", "2026-03-02T21:00", "0.000"),
            reading("M2", "2026-03-02T23:00", "2.000"),
        ],
    )
    # A1: 0.25 × 0.588 = 0.147 + 0.25 × 0.838 = 0.2095 → 0.3565 → 0.36.
    assert_day(
        day_row(result, "A1", date(2026, 3, 2)),
        kwh="0.500",
        kwh_tier2="0.250",
        kwh_tier3="0.250",
        charge="0.36",
        ytd_kwh="4800.250",
        closing_balance="9.64",
    )
    # A2: 21:00→23:00, cut 22:00: peak 1 × 0.868 + valley 1 × 0.588 = 1.456 → 1.46.
    assert_day(
        day_row(result, "A2", date(2026, 3, 2)),
        kwh="2.000",
        kwh_peak="1.000",
        kwh_valley="1.000",
        kwh_tier1="0",
        kwh_tier2="0",
        kwh_tier3="2.000",
        charge="1.46",
        ytd_kwh="4802.000",
        closing_balance="8.54",
    )


def test_day_charge_rounds_half_up(tmp_path: Path) -> None:
    result = one_meter(
        tmp_path,
        "zhejiang-tiered",
        [("2026-03-02T10:00", "0.000"), ("2026-03-02T12:00", "2.500")],
        opening_balance="10.00",
    )
    # 2.5 × 0.538 = 1.345 exactly → half-up 1.35 (half-even would give 1.34).
    assert_day(day_row(result, "A1", date(2026, 3, 2)), charge="1.35", closing_balance="8.65")


def test_flat_plan_is_not_split_at_tou_boundaries(tmp_path: Path) -> None:
    result = one_meter(
        tmp_path,
        "zhejiang-tiered",
        [
            ("2026-03-02T07:00", "0.000"),
            ("2026-03-02T09:00", "1.000"),
            ("2026-03-02T23:00", "2.000"),
        ],
    )
    # S14.7: flat plans split only at midnight and at plan changes.
    assert [(r["start"], r["end"]) for r in result.rows("intervals")] == [
        (at("2026-03-02T07:00"), at("2026-03-02T09:00")),
        (at("2026-03-02T09:00"), at("2026-03-02T23:00")),
    ]
    assert_day(
        day_row(result, "A1", date(2026, 3, 2)),
        kwh="2.000",
        kwh_peak="0",
        kwh_valley="0",
        charge="1.08",
    )  # 2 × 0.538 = 1.076 → 1.08


def test_span_over_midnight_keeps_the_rounding_remainder(tmp_path: Path) -> None:
    result = one_meter(
        tmp_path,
        "zhejiang-tiered",
        [("2026-03-02T23:30", "0.000"), ("2026-03-03T00:30", "3.001")],
        opening_balance="10.00",
    )
    # cum(00:00) = round_half_up(3001 × 30/60 = 1500.5) = 1501 → Mar 2: 1.501, Mar 3: 1.500.
    # Mar 2: 1.501 × 0.538 = 0.807538 → 0.81; Mar 3: 1.500 × 0.538 = 0.807 → 0.81.
    assert_day(
        day_row(result, "A1", date(2026, 3, 2)),
        kwh="1.501",
        kwh_tier1="1.501",
        charge="0.81",
        ytd_kwh="1.501",
        closing_balance="9.19",
    )
    assert_day(
        day_row(result, "A1", date(2026, 3, 3)),
        kwh="1.500",
        kwh_tier1="1.500",
        charge="0.81",
        ytd_kwh="3.001",
        closing_balance="8.38",
    )
    # The day before the reading is closed by it, at D+1 00:00, before the end of input.
    assert result.positions("daily_usage", day=date(2026, 3, 2)) == ["readings:2"]


def test_tier_cumulative_resets_on_january_1(tmp_path: Path) -> None:
    result = one_meter(
        tmp_path,
        "zhejiang-tiered",
        [("2026-12-31T22:00", "0.000"), ("2027-01-01T02:00", "4.000")],
        opened="2026-12-31T20:00",
        opening_balance="100.00",
        ytd_kwh="2759",
    )
    # 22:00→02:00, Δ 4.000, cut at midnight: 2.000 on each side.
    # Dec 31: 2759→2760 tier 1 (0.538) + 2760→2761 tier 2 (0.588) = 1.126 → 1.13.
    assert_day(
        day_row(result, "A1", date(2026, 12, 31)),
        kwh="2.000",
        kwh_tier1="1.000",
        kwh_tier2="1.000",
        charge="1.13",
        ytd_kwh="2761.000",
        closing_balance="98.87",
    )
    # Jan 1: cumulative back to 0 → 2.000 tier 1 × 0.538 = 1.076 → 1.08.
    assert_day(
        day_row(result, "A1", date(2027, 1, 1)),
        kwh="2.000",
        kwh_tier1="2.000",
        kwh_tier2="0",
        charge="1.08",
        ytd_kwh="2.000",
        closing_balance="97.79",
    )
    [final] = result.rows("accounts", account_id="A1")[-1:]
    assert final["ytd_kwh"] == D("2.000")


def test_plan_change_inside_a_span(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(
                "A1", "M1", "zhejiang-tiered", "2026-03-02T00:00", opening_balance="10.00"
            ),
            {
                "type": "change_plan",
                "account_id": "A1",
                "plan": "zhejiang-tou",
                "ts": ts("2026-03-02T21:00"),
            },
        ],
        readings=[
            reading("M1", "2026-03-02T10:00", "0.000"),
            reading("M1", "2026-03-02T23:00", "1.000"),
        ],
    )
    # 10:00→23:00 (13 h), Δ 1.000; cuts at the change (21:00) and, in the TOU part, 22:00.
    # cum(21:00) = round(1000 × 11/13 = 846.15) = 846; cum(22:00) = round(1000 × 12/13 =
    # 923.08) = 923 → flat 0.846, peak 0.077, valley 0.077.
    # 0.846 × 0.538 = 0.455148 + 0.077 × 0.568 = 0.043736 + 0.077 × 0.288 = 0.022176
    # = 0.52106 → 0.52.
    assert [(r["start"], r["kwh"], r["period"], r["cost"]) for r in result.rows("intervals")] == [
        (at("2026-03-02T10:00"), D("0.846"), "flat", D("0.455148")),
        (at("2026-03-02T21:00"), D("0.077"), "peak", D("0.043736")),
        (at("2026-03-02T22:00"), D("0.077"), "valley", D("0.022176")),
    ]
    assert_day(
        day_row(result, "A1", date(2026, 3, 2)),
        kwh="1.000",
        kwh_peak="0.077",
        kwh_valley="0.077",
        kwh_tier1="1.000",
        charge="0.52",
        ytd_kwh="1.000",
        closing_balance="9.48",
    )
    assert result.rows("accounts", account_id="A1")[-1]["plan"] == "zhejiang-tou"
