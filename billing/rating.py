"""Rating consumption: apportion a span, then price each part by tier and period (SPEC S4)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.apportion import Part, apportion
from billing.clock import local_midnight
from billing.days import close_days_until
from billing.emitter import Emitter
from billing.rules import BillingRules
from billing.state import AccountState
from billing.state_pickle import constructor_reduce
from billing.tariffs import Plan


@dataclass(slots=True, init=False)  # per reading; not frozen; init=False: billing/__init__.py
class RatedSlice:
    """The piece of a part that falls in one tier, priced at that tier and period.

    Integers: ``price`` in 10^-4 yuan/kWh and ``cost`` = ``milli_kwh`` × ``price`` in
    10^-7 yuan, exact (the ``intervals`` columns' own scales).
    """

    start: datetime
    end: datetime
    milli_kwh: int
    period: str
    tier: int  # 1-based, as analysts read it
    price: int
    cost: int

    def __init__(  # noqa: PLR0913 - the columns of an interval
        self,
        start: datetime,
        end: datetime,
        milli_kwh: int,
        period: str,
        tier: int,
        price: int,
        cost: int,
    ) -> None:
        self.start = start
        self.end = end
        self.milli_kwh = milli_kwh
        self.period = period
        self.tier = tier
        self.price = price
        self.cost = cost

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, it cannot be made without its arguments


def rate_part(
    plan: Plan, start: datetime, end: datetime, milli_kwh: int, cumulative_milli: int
) -> list[RatedSlice]:
    """Rate ``milli_kwh`` used in [start, end) when the tier cycle stood at ``cumulative_milli``.

    The increment is split at the plan's tier bounds; tier k covers cumulative kWh in
    (bound[k-1], bound[k]]. The period in force at ``start`` picks the price column.
    """
    period = plan.period_at(start)
    row = plan.unit_prices[period]
    bounds = plan.milli_bounds
    slices: list[RatedSlice] = []
    remaining = milli_kwh
    cumulative = cumulative_milli
    tier = bisect_right(bounds, cumulative)  # the first tier whose bound is above cumulative
    while True:
        room = bounds[tier] - cumulative if tier < len(bounds) else remaining
        take = min(room, remaining)
        if take > 0:
            price = row[tier]
            slices.append(RatedSlice(start, end, take, period, tier + 1, price, take * price))
        remaining -= take
        cumulative += take
        if remaining <= 0:
            return slices
        tier += 1


def span_cuts(
    state: AccountState, rules: BillingRules, start: datetime, end: datetime
) -> set[datetime]:
    """Where consumption over [start, end) must be split: midnights, plan changes, TOU periods."""
    cuts: set[datetime] = set()
    midnight = local_midnight(start.date() + timedelta(days=1), rules.zone)
    while midnight < end:
        cuts.add(midnight)
        midnight = local_midnight(midnight.date() + timedelta(days=1), rules.zone)
    changes = len(state.plans) > 1
    plan_starts = [start] + [s for s, _ in state.plans if start < s < end] if changes else [start]
    cuts.update(plan_starts[1:])
    for index, segment_start in enumerate(plan_starts):
        segment_end = plan_starts[index + 1] if index + 1 < len(plan_starts) else end
        plan = rules.plans[state.plan_at(segment_start) if changes else state.plans[0][1]]
        if plan.is_tou:
            cuts.update(plan.period_boundaries(segment_start, segment_end))
    return cuts


def rate_span(
    state: AccountState,
    out: Emitter,
    rules: BillingRules,
    start: datetime,
    end: datetime,
    milli_kwh: int,
) -> None:
    """Apportion and rate consumption over [start, end), closing days as midnight passes."""
    changes = len(state.plans) > 1
    # Both local and on one date: no midnight inside.
    one_day = start.tzinfo is end.tzinfo is rules.zone and start.date() == end.date()
    cuts = span_cuts(state, rules, start, end) if changes or not one_day else None
    if cuts is None:  # one plan, one day: the usual quarter hour needs no apportioning
        plan = rules.plans[state.plans[0][1]]
        if plan.is_tou and plan.changes_within_day(start, end):
            cuts = set(plan.period_boundaries(start, end))
    parts = apportion(start, end, milli_kwh, cuts) if cuts else [Part(start, end, milli_kwh)]
    aid, meter_id, emit = state.account_id, state.meter_id, out.scaled
    for part in parts:
        if part.start >= state.day.end:
            close_days_until(state, out, rules, part.start)
        if part.start.year != state.ytd_year:
            state.ytd_milli, state.ytd_year = 0, part.start.year
        plan = rules.plans[state.plan_at(part.start) if changes else state.plans[0][1]]
        totals = state.day
        for piece in rate_part(plan, part.start, part.end, part.milli_kwh, state.ytd_milli):
            milli = piece.milli_kwh
            totals.milli += milli
            totals.tiers[piece.tier - 1] += milli
            if piece.period == "peak":
                totals.peak += milli
            elif piece.period == "valley":
                totals.valley += milli
            totals.cost += piece.cost
            state.ytd_milli += milli
            emit(
                "intervals",
                (
                    meter_id,
                    aid,
                    piece.start,
                    piece.end,
                    milli,
                    piece.period,
                    piece.tier,
                    piece.price,
                    piece.cost,
                ),
            )
    if changes:
        # Plan changes now in the past matter no more, except the one in force.
        in_force = [entry for entry in state.plans if entry[0] <= end][-1:]
        state.plans = in_force + [entry for entry in state.plans if entry[0] > end]
