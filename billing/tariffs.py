"""Tariff plans: tier bounds, flat or time-of-use prices (SPEC S4).

Built-in plans follow the Zhejiang residential tariff as published by the Zhejiang
Provincial Development and Reform Commission (浙江省发展改革委, 浙发改价格〔2021〕 series on
居民阶梯电价 and 峰谷分时电价): annual tiers on calendar-year consumption of 2760 kWh and
4800 kWh; flat prices 0.538 / 0.588 / 0.838 yuan/kWh; time-of-use peak (08:00–22:00)
0.568 / 0.618 / 0.868 and valley (22:00–08:00) 0.288 / 0.338 / 0.588 yuan/kWh.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from billing.numbers import to_price_units
from billing.state_pickle import constructor_reduce

FLAT = "flat"
PRICE_PLACES = 4  # yuan per kWh (S3)
ENERGY_PLACES = 3  # kWh (S3)


class PlanError(ValueError):
    """A plan definition is invalid or a plan id is unknown."""


@dataclass(frozen=True, slots=True)
class Period:
    """A time-of-use period starting at ``start`` local time each day."""

    name: str
    start: time

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


@dataclass(frozen=True, slots=True)
class Plan:
    """A tariff plan.

    ``prices`` maps a period name (``flat`` for flat plans) to one price per tier.
    ``tier_bounds`` are the upper bounds in kWh of every tier but the last.
    """

    plan_id: str
    tier_bounds: tuple[Decimal, ...]
    prices: Mapping[str, tuple[Decimal, ...]]
    periods: tuple[Period, ...] = ()
    effective_from: date | None = None
    effective_to: date | None = None
    tier_cycle: str = "year"
    milli_bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    """``tier_bounds`` in thousandths of a kWh, for rating in integers."""
    starts: tuple[time, ...] = field(init=False, repr=False, compare=False)
    """The periods' start times, for finding a period by bisection (sorted when valid)."""
    unit_prices: Mapping[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    """``prices`` in whole 10^-4 yuan/kWh, for rating in integers (None for a price with
    more decimals, which `validate` refuses)."""

    def __post_init__(self) -> None:
        bounds = tuple(int(bound * 1000) for bound in self.tier_bounds)
        object.__setattr__(self, "milli_bounds", bounds)
        units = {name: tuple(map(_price_units, row)) for name, row in self.prices.items()}
        object.__setattr__(self, "unit_prices", units)
        object.__setattr__(self, "starts", tuple(period.start for period in self.periods))

    @property
    def is_tou(self) -> bool:
        """True when prices depend on the time of day."""
        return bool(self.periods)

    def validate(self) -> None:
        """Raise PlanError unless the plan is consistent."""
        tiers = len(self.tier_bounds) + 1
        if list(self.tier_bounds) != sorted(self.tier_bounds) or any(
            b <= 0 for b in self.tier_bounds
        ):
            raise PlanError(f"{self.plan_id}: tier bounds must be positive and increasing")
        names = [p.name for p in self.periods] if self.periods else [FLAT]
        if set(names) != set(self.prices):
            raise PlanError(f"{self.plan_id}: prices must cover exactly the periods {names}")
        for name, row in self.prices.items():
            if len(row) != tiers:
                raise PlanError(f"{self.plan_id}: period {name} needs {tiers} prices")
            if any(not _places_at_most(p, PRICE_PLACES) or p < 0 for p in row):
                raise PlanError(
                    f"{self.plan_id}: period {name}: prices must be 0 or more yuan/kWh "
                    f"with at most {PRICE_PLACES} decimals"
                )
        if any(not _places_at_most(b, ENERGY_PLACES) for b in self.tier_bounds):
            raise PlanError(
                f"{self.plan_id}: tier bounds must be kWh with at most {ENERGY_PLACES} decimals"
            )
        starts = list(self.starts)
        if starts != sorted(starts):
            raise PlanError(f"{self.plan_id}: time-of-use periods must be listed by start time")
        if len(set(starts)) != len(starts):
            raise PlanError(
                f"{self.plan_id}: time-of-use periods must start at distinct times of day, "
                "so that each moment of the day falls in exactly one"
            )
        if self.tier_cycle != "year":
            raise PlanError(f"{self.plan_id}: only the calendar-year tier cycle is supported")

    def period_at(self, moment: datetime) -> str:
        """The period name in force at a local ``moment``."""
        if not self.periods:
            return FLAT
        # The last period starting at or before the clock; before the first: the day's last.
        return self.periods[bisect_right(self.starts, moment.time()) - 1].name

    def period_boundaries(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Local times strictly inside (start, end) where the period changes."""
        if not self.periods:
            return
        day = start.date()
        while True:
            for period in self.periods:
                moment = datetime.combine(day, period.start, tzinfo=start.tzinfo)
                if moment >= end:
                    return
                if moment > start:
                    yield moment
            day += timedelta(days=1)

    def changes_within_day(self, start: datetime, end: datetime) -> bool:
        """True when the period changes strictly inside (start, end), two moments of one day."""
        if not self.periods:
            return False
        starts = self.starts
        return bisect_left(starts, end.time()) > bisect_right(starts, start.time())

    def tier_of(self, cumulative_kwh: Decimal) -> int:
        """0-based tier covering the kWh just above ``cumulative_kwh``."""
        for index, bound in enumerate(self.tier_bounds):
            if cumulative_kwh < bound:
                return index
        return len(self.tier_bounds)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


def _price_units(price: Decimal) -> int | None:
    """A price in whole 10^-4 yuan/kWh, or None when it cannot be (`validate` refuses it)."""
    try:
        return to_price_units(price)
    except (ValueError, ArithmeticError):
        return None


def _places_at_most(value: Decimal, places: int) -> bool:
    """True when ``value`` is finite with at most ``places`` decimals."""
    return value.is_finite() and -value.as_tuple().exponent <= places  # type: ignore[operator]


def _prices(*values: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(v) for v in values)


ZHEJIANG_BOUNDS = (Decimal(2760), Decimal(4800))

BUILTIN_PLANS: dict[str, Plan] = {
    "zhejiang-tiered": Plan(
        plan_id="zhejiang-tiered",
        tier_bounds=ZHEJIANG_BOUNDS,
        prices={FLAT: _prices("0.538", "0.588", "0.838")},
    ),
    "zhejiang-tou": Plan(
        plan_id="zhejiang-tou",
        tier_bounds=ZHEJIANG_BOUNDS,
        prices={
            "peak": _prices("0.568", "0.618", "0.868"),
            "valley": _prices("0.288", "0.338", "0.588"),
        },
        periods=(Period("valley", time(0)), Period("peak", time(8)), Period("valley", time(22))),
    ),
}


def plan_from_config(plan_id: str, spec: Mapping[str, Any]) -> Plan:
    """Build a plan from a config table (``[plans.ID]`` in the TOML file).

    Keys: ``tier_bounds`` (list of kWh strings), ``prices`` (table period -> list of
    price strings; use ``flat`` for flat plans), ``periods`` (list of ``"HH:MM=name"``),
    optional ``effective_from`` / ``effective_to`` (dates).
    """
    try:
        bounds = tuple(Decimal(str(b)) for b in spec["tier_bounds"])
        raw_prices = spec["prices"]
        prices = {
            str(name): tuple(Decimal(str(p)) for p in row) for name, row in raw_prices.items()
        }
        periods = []
        for item in spec.get("periods", []):
            clock, name = str(item).split("=", 1)
            periods.append(Period(name.strip(), time.fromisoformat(clock.strip())))
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as err:
        raise PlanError(f"plan {plan_id}: {type(err).__name__}: {err}") from err
    plan = Plan(
        plan_id=plan_id,
        tier_bounds=bounds,
        prices=prices,
        periods=tuple(sorted(periods, key=lambda p: p.start)),
        effective_from=_opt_date(spec.get("effective_from")),
        effective_to=_opt_date(spec.get("effective_to")),
    )
    plan.validate()
    return plan


def _opt_date(value: object) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def plan_catalog(extra: Mapping[str, Plan] | None = None) -> dict[str, Plan]:
    """Built-in plans plus configured ones (configured ids override built-ins)."""
    catalog = dict(BUILTIN_PLANS)
    catalog.update(extra or {})
    return catalog


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    """A TOML key: bare when it can be, else a quoted string."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _strings(values: object) -> str:
    return "[" + ", ".join(json.dumps(str(v), ensure_ascii=False) for v in values) + "]"  # type: ignore[attr-defined]


def _clock(moment: time) -> str:
    return moment.isoformat(timespec="minutes" if moment == moment.replace(second=0) else "auto")


def plan_toml(plan: Plan) -> str:
    """The plan as a ``[plans.ID]`` table that `plan_from_config` reads back to the same plan."""
    head = f"plans.{_key(plan.plan_id)}"
    lines = [f"[{head}]", f"tier_bounds = {_strings(plan.tier_bounds)}"]
    if plan.periods:
        clocks = [f"{_clock(p.start)}={p.name}" for p in plan.periods]
        lines.append(f"periods = {_strings(clocks)}")
    for name in ("effective_from", "effective_to"):
        value = getattr(plan, name)
        if value is not None:
            lines.append(f"{name} = {value.isoformat()}")
    lines.append(f"[{head}.prices]")
    lines.extend(f"{_key(name)} = {_strings(row)}" for name, row in plan.prices.items())
    return "\n".join(lines) + "\n"
