"""Apportioning a reading pair's consumption over time (SPEC S4), as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from billing.apportion import apportion
from billing.clock import LOCAL_ZONE
from billing.tariffs import BUILTIN_PLANS

T0 = datetime(2026, 3, 2, tzinfo=LOCAL_ZONE)
US = timedelta(microseconds=1)


def half_up(value: Fraction) -> int:
    """round_half_up of a non-negative rational to an integer."""
    return int(value + Fraction(1, 2))  # int() floors a non-negative Fraction


def expected_cumulative(total: int, start: datetime, moment: datetime, end: datetime) -> int:
    return half_up(Fraction(total) * Fraction((moment - start) // US, (end - start) // US))


spans = st.tuples(
    st.integers(0, 400 * 24 * 3600 * 10**6),  # start offset from T0 in µs
    st.integers(1, 10 * 24 * 3600 * 10**6),  # span in µs
)


@settings(max_examples=150, deadline=None)
@given(
    span=spans,
    milli=st.integers(0, 10**10),
    fractions=st.lists(st.floats(-0.5, 1.5, allow_nan=False), max_size=12),
)
@example(span=(0, 3600 * 10**6), milli=3, fractions=[0.5])  # 1.5 → 2 and 1
@example(span=(0, 2 * 3600 * 10**6), milli=3001, fractions=[0.5])  # 1500.5 → 1501
def test_apportion_properties(span: tuple[int, int], milli: int, fractions: list[float]) -> None:
    start = T0 + span[0] * US
    end = start + span[1] * US
    cuts = [start + int(f * span[1]) * US for f in fractions]
    parts = apportion(start, end, milli, cuts)
    inside = sorted({c for c in cuts if start < c < end})

    # Parts sum to the whole exactly and are never negative.
    assert sum(p.milli_kwh for p in parts) == milli
    assert all(p.milli_kwh >= 0 for p in parts)
    # In time order, contiguous, from start to end, one part per distinct inner cut.
    assert len(parts) == len(inside) + 1
    assert parts[0].start == start and parts[-1].end == end
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.end == after.start
    assert all(p.start < p.end for p in parts)
    assert [p.end for p in parts[:-1]] == inside
    # Each part is the difference of consecutive cumulative round_half_up values.
    running = 0
    for part in parts:
        cumulative = expected_cumulative(milli, start, part.end, end)
        assert part.milli_kwh == cumulative - running
        running = cumulative


@settings(max_examples=150, deadline=None)
@given(milli=st.integers(0, 10**8), steps=st.integers(1, 40))
def test_even_spread_differs_from_exact_share_by_at_most_one_unit(milli: int, steps: int) -> None:
    # Cutting every hour: each part is within 1 Wh of the exact share milli / steps.
    end = T0 + timedelta(hours=steps)
    parts = apportion(T0, end, milli, [T0 + timedelta(hours=h) for h in range(1, steps)])
    assert len(parts) == steps
    share = Fraction(milli, steps)
    assert all(abs(p.milli_kwh - share) <= 1 for p in parts)


@settings(max_examples=100, deadline=None)
@given(milli=st.integers(0, 10**7), start_min=st.integers(0, 3 * 1440), length=st.integers(1, 2880))
def test_cuts_at_tou_boundaries_and_midnights_give_parts_in_one_period_and_day(
    milli: int, start_min: int, length: int
) -> None:
    plan = BUILTIN_PLANS["zhejiang-tou"]
    start = T0 + timedelta(minutes=start_min)
    end = start + timedelta(minutes=length)
    midnights = [T0 + timedelta(days=d) for d in range(1, 6)]
    cuts = [*plan.period_boundaries(start, end), *midnights]
    for part in apportion(start, end, milli, cuts):
        last = part.end - US
        assert part.start.date() == last.date()
        assert plan.period_at(part.start) == plan.period_at(last)


def test_cut_times_in_another_offset_are_the_same_instants() -> None:
    # 10:00 local is 02:00 UTC; the cut must fall at the same instant whatever its offset.
    start, end = T0 + timedelta(hours=9), T0 + timedelta(hours=11)
    cut = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    parts = apportion(start, end, 1001, [cut])
    # 1001 × 1/2 = 500.5 → 501, then 500.
    assert [p.milli_kwh for p in parts] == [501, 500]


@pytest.mark.parametrize("length", [timedelta(0), timedelta(minutes=-5)])
def test_an_empty_or_reversed_span_is_refused(length: timedelta) -> None:
    with pytest.raises(ValueError):
        apportion(T0, T0 + length, 1000, [])


@settings(max_examples=50, deadline=None)
@given(milli=st.integers(1, 10**6), n=st.integers(2, 30))
def test_many_cuts_at_the_same_instant_count_once(milli: int, n: int) -> None:
    end = T0 + timedelta(hours=1)
    cut = T0 + timedelta(minutes=20)
    parts = apportion(T0, end, milli, [cut] * n)
    assert len(parts) == 2
    assert [p.milli_kwh for p in parts] == [
        half_up(Fraction(milli, 3)),
        milli - half_up(Fraction(milli, 3)),
    ]
