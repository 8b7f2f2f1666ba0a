"""The simulated wallet prices, rebates and cuts by the billing rules it is given, not copies."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from decimal import Decimal

from billing.clock import LOCAL_ZONE
from billing.rules import CHANNELS, BillingRules, DisconnectWindow, RebateCampaign
from simulate.household_money import CHANNEL_WEIGHTS
from simulate.households import household_plans, opening_balances
from simulate.wallet import (
    DEFAULT_RULES,
    UNITS_PER_FEN,
    UNITS_PER_YUAN,
    Wallet,
    WalletRules,
    local_day,
)


def epoch(*args: int) -> int:
    return int(datetime(*args, tzinfo=LOCAL_ZONE).timestamp())


MONDAY_NOON = epoch(2026, 3, 2, 12)  # a window day, inside 08:00-17:00


def test_tier_crossing_costs_what_the_tariff_says() -> None:
    # zhejiang-tiered: 1 kWh left in tier 1 at 0.538, then 2 kWh at 0.588 = 1.714 yuan.
    wallet = Wallet("zhejiang-tiered", 0, 2_759_000, local_day(MONDAY_NOON))
    wallet.consume(MONDAY_NOON, 3_000)
    assert wallet.day_cost == Decimal("1.714") * UNITS_PER_YUAN


def test_time_of_use_periods_follow_the_plan() -> None:
    # zhejiang-tou tier 1: peak 0.568 from 08:00, valley 0.288 before; 1 kWh each.
    plan = DEFAULT_RULES.plans["zhejiang-tou"]
    for clock, price in ((time(7, 59), "0.288"), (time(8), "0.568"), (time(22), "0.288")):
        t = int(datetime.combine(date(2026, 3, 2), clock, tzinfo=LOCAL_ZONE).timestamp())
        assert plan.cost(0, 1_000, plan.column(t)) == Decimal(price) * UNITS_PER_YUAN, clock


def test_a_configured_plan_is_priced_by_the_wallet() -> None:
    flat = replace(
        BillingRules().plans["zhejiang-tiered"],
        prices={"flat": tuple(Decimal(p) for p in ("1.0001", "2", "3"))},
    )
    rules = replace(BillingRules(), plans={"custom": replace(flat, plan_id="custom")})
    wallet = Wallet("custom", 0, 0, 0, money=WalletRules.of(rules))
    wallet.consume(MONDAY_NOON, 2_000)  # 2 kWh × 1.0001 = 2.0002 yuan
    assert wallet.day_cost == Decimal("2.0002") * UNITS_PER_YUAN


def test_rebates_come_from_the_campaigns() -> None:
    default = Wallet("zhejiang-tiered", 0, 0, 0)
    assert default.top_up(50_000, "wechat", MONDAY_NOON) == 3_000  # 500.00 → 30.00 back
    assert default.top_up(50_000, "wechat", MONDAY_NOON) == 0  # once a month
    assert default.top_up(50_000, "bank", MONDAY_NOON + 40 * 86_400) == 0
    campaign = RebateCampaign(
        "bank-week", frozenset({"bank"}), Decimal("100.00"), Decimal("5.00"), 2
    )
    money = WalletRules.of(replace(BillingRules(), campaigns=(campaign,)))
    wallet = Wallet("zhejiang-tiered", 0, 0, 0, money=money)
    assert [wallet.top_up(10_000, "bank", MONDAY_NOON) for _ in range(3)] == [500, 500, 0]
    assert wallet.top_up(50_000, "wechat", MONDAY_NOON) == 0
    assert money.rebate_channels() == ("bank",) and money.rebate_minimum() == 10_000


def test_cuts_wait_for_the_configured_window() -> None:
    assert DEFAULT_RULES.in_window(MONDAY_NOON)
    assert not DEFAULT_RULES.in_window(epoch(2026, 3, 2, 17))
    assert not DEFAULT_RULES.in_window(epoch(2026, 3, 7, 12))  # Saturday
    window = DisconnectWindow(start=time(9), end=time(12), holidays=frozenset({date(2026, 3, 3)}))
    money = WalletRules.of(replace(BillingRules(), window=window))
    assert not money.in_window(MONDAY_NOON)
    assert money.in_window(epoch(2026, 3, 2, 9, 30))
    assert not money.in_window(epoch(2026, 3, 3, 9, 30))  # a holiday
    wallet = Wallet("zhejiang-tiered", -50 * UNITS_PER_YUAN, 0, 0, money=money)
    assert wallet.check(MONDAY_NOON, 0) == ["scheduled"]
    assert wallet.check(epoch(2026, 3, 4, 9), 0) == ["cut"]


def test_limits_and_threshold_come_from_the_rules() -> None:
    rules = replace(
        BillingRules(),
        overdraft_min=Decimal("25.00"),
        default_threshold=Decimal("40.00"),
        auto_topup_retry_hours=2,
    )
    wallet = Wallet(
        "zhejiang-tiered", 30 * UNITS_PER_YUAN, 0, 0, auto_fen=10_000, money=WalletRules.of(rules)
    )
    assert wallet.limit() == 2_500 * UNITS_PER_FEN
    assert wallet.threshold == 40 * UNITS_PER_YUAN
    assert wallet.check(MONDAY_NOON, 0) == ["request"]  # 30.00 < 40.00
    assert wallet.check(MONDAY_NOON + 3_600, 1) == []
    assert wallet.check(MONDAY_NOON + 7_200, 1) == ["request"]  # retried after 2 hours


def test_simulated_households_follow_the_rules() -> None:
    rules = replace(
        BillingRules(), default_threshold=Decimal("50.00"), overdraft_min=Decimal("20.00")
    )
    assert opening_balances(rules) == (
        Decimal("51.00"),
        Decimal("2.00"),
        Decimal("-17.00"),
        Decimal("500.00"),
    )
    assert household_plans(BillingRules()) == ("zhejiang-tiered", "zhejiang-tou")


def test_households_pay_through_every_channel_billing_knows() -> None:
    assert set(CHANNEL_WEIGHTS) == CHANNELS
