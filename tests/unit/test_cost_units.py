"""The checks compare the available balance as an int of 10^-7 yuan, exactly as decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.lifecycle import new_account
from billing.numbers import cost_ceiling, cost_floor, from_cost, to_cost
from billing.rules import BillingRules
from tests.billing_harness import at

MONEY = st.decimals(
    min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=2, allow_nan=False
)
# Thresholds and limits: money, or finer than the units (the ceiling must still be exact).
BOUNDS = st.one_of(
    MONEY,
    st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=9, allow_nan=False),
)


@settings(max_examples=1000, deadline=None)
@given(balance=MONEY, bound=BOUNDS, step=st.integers(min_value=-2, max_value=2))
def test_units_compare_as_the_decimals_do(balance: Decimal, bound: Decimal, step: int) -> None:
    # A day's cost that leaves the available balance within a unit or two of the bound.
    edge = int((bound * 10**7).to_integral_value(rounding="ROUND_FLOOR"))
    cost = to_cost(balance) - edge + step
    available = balance - from_cost(cost)  # the Decimal the checks compared before
    units = to_cost(balance) - cost
    assert from_cost(units) == available
    assert (units >= cost_ceiling(bound)) == (available >= bound)
    assert (units < cost_ceiling(bound)) == (available < bound)
    assert (units < cost_ceiling(-bound)) == (available < -bound)
    assert (units < -cost_floor(bound)) == (available < -bound)
    assert (units < -cost_floor(-bound)) == (available < bound)


@pytest.mark.parametrize(
    ("value", "units"),
    [("0.00000001", 0), ("-1.123456789", -11_234_568), ("1E-8", 0), ("12.34", 123_400_000)],
)
def test_money_finer_than_the_units_is_taken_at_its_floor(value: str, units: int) -> None:
    # Nothing makes such a balance (every amount posted is whole fen); it never stops the flow.
    assert to_cost(Decimal(value)) == units


def test_the_available_units_follow_every_new_balance() -> None:
    rules = BillingRules()
    state = new_account(
        account_id="A1",
        meter_id="M1",
        plan_id=next(iter(rules.plans)),
        ts=at("2026-03-01T00:00"),
        opening_balance=Decimal("10.00"),
        ytd_kwh=Decimal(0),
        threshold=Decimal("20.00"),
        rules=rules,
    )
    state.day.cost = 12_345
    assert state.available_units == 100_000_000 - 12_345
    state.balance -= Decimal("0.01")  # a new object: converted again
    assert state.available_units == 99_900_000 - 12_345
    assert from_cost(state.available_units) == state.available
