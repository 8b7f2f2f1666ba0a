"""Configurable business rules the billing core runs with (SPEC S5, S6, S9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from billing.clock import LOCAL_ZONE
from billing.state_pickle import constructor_reduce
from billing.tariffs import BUILTIN_PLANS, Plan

CHANNELS = frozenset({"app", "alipay", "wechat", "bank", "counter"})


@dataclass(frozen=True, slots=True)
class RebateCampaign:
    """A top-up rebate campaign (充值立返); ``from_day``/``to_day`` are inclusive local dates."""

    campaign_id: str
    channels: frozenset[str]
    min_amount: Decimal
    rebate: Decimal
    per_account_per_month: int = 1
    from_day: date | None = None
    to_day: date | None = None

    def matches(self, amount: Decimal, channel: str, day: date) -> bool:
        """True when a top-up qualifies (before the per-month limit)."""
        return (
            channel in self.channels
            and amount >= self.min_amount
            and (self.from_day is None or day >= self.from_day)
            and (self.to_day is None or day <= self.to_day)
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


DEFAULT_CAMPAIGN = RebateCampaign(
    campaign_id="default",
    channels=frozenset({"app", "alipay", "wechat"}),
    min_amount=Decimal("500.00"),
    rebate=Decimal("30.00"),
    per_account_per_month=1,
)


@dataclass(frozen=True, slots=True)
class DisconnectWindow:
    """When cuts may be executed: [start, end) local time on weekdays that are not holidays."""

    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    start: time = time(8)
    end: time = time(17)
    holidays: frozenset[date] = frozenset()

    def is_window_day(self, day: date) -> bool:
        """True on a day cuts may happen."""
        return day.weekday() in self.weekdays and day not in self.holidays

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


@dataclass(frozen=True, slots=True)
class BillingRules:
    """Everything the billing core needs besides the messages themselves."""

    plans: dict[str, Plan] = field(default_factory=lambda: dict(BUILTIN_PLANS))
    zone: tzinfo = LOCAL_ZONE
    default_threshold: Decimal = Decimal("20.00")
    max_topup: Decimal = Decimal("10000.00")
    max_power_kw: Decimal = Decimal(40)
    register_max_kwh: Decimal = Decimal(1_000_000)
    window: DisconnectWindow = DisconnectWindow()
    campaigns: tuple[RebateCampaign, ...] = (DEFAULT_CAMPAIGN,)
    overdraft_min: Decimal = Decimal("10.00")
    overdraft_max: Decimal = Decimal("100.00")
    overdraft_days: int = 30
    days_left_days: int = 7
    auto_topup_retry_hours: int = 24
    reject_future: bool = False
    """Live mode only: refuse messages more than ``future_tolerance`` ahead of arrival."""
    future_tolerance: timedelta = timedelta(minutes=5)
    tamper_grace_minutes: int = 30
    """Without relay results, a cut counts as confirmed this long after its command (S14.16)."""
    command_results: bool = False
    """Relay results are part of the input (live; a replay with a results file): a cut is
    confirmed only by its ``ok`` result. False: by ``tamper_grace_minutes`` instead."""
    duplicate_memory: int = 40_000
    """How many recent accepted readings per meter are kept to tell duplicates from out-of-order."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr
