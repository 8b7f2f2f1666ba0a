"""Incremental tier × time-of-use rating of one apportioned part (SPEC S4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.numbers import from_milli, to_milli
from billing.tariffs import Plan


@dataclass(frozen=True, slots=True)
class RatedSlice:
    """The piece of a part that falls in one tier, priced at that tier and period."""

    start: datetime
    end: datetime
    milli_kwh: int
    period: str
    tier: int  # 1-based, as analysts read it
    price: Decimal
    cost: Decimal


def rate_part(
    plan: Plan, start: datetime, end: datetime, milli_kwh: int, cumulative_milli: int
) -> list[RatedSlice]:
    """Rate ``milli_kwh`` used in [start, end) when the tier cycle stood at ``cumulative_milli``.

    The increment is split at the plan's tier bounds; tier k covers cumulative kWh in
    (bound[k-1], bound[k]]. The period in force at ``start`` picks the price column.
    """
    period = plan.period_at(start)
    row = plan.prices[period]
    bounds = [to_milli(b) for b in plan.tier_bounds]
    slices: list[RatedSlice] = []
    remaining = milli_kwh
    cumulative = cumulative_milli
    tier = next((i for i, b in enumerate(bounds) if cumulative < b), len(bounds))
    while True:
        room = bounds[tier] - cumulative if tier < len(bounds) else remaining
        take = min(room, remaining)
        if take > 0:
            price = row[tier]
            slices.append(
                RatedSlice(start, end, take, period, tier + 1, price, from_milli(take) * price)
            )
        remaining -= take
        cumulative += take
        if remaining <= 0:
            return slices
        tier += 1
