"""The daily cycle: closing a day (charge, usage, points) and the overdraft limit (SPEC S5)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal

from billing.clock import local_midnight
from billing.emitter import Emitter
from billing.ledger import post_ledger
from billing.numbers import from_cost, from_fen, from_milli, round_money, to_fen
from billing.points import on_day_close
from billing.rules import BillingRules
from billing.state import CHARGES_KEPT, AccountState, DayTotals


def open_day(day: date, rules: BillingRules) -> DayTotals:
    """Empty totals for local ``day``."""
    return DayTotals(day, local_midnight(day + timedelta(days=1), rules.zone))


def overdraft_limit(charges: Iterable[Decimal], rules: BillingRules) -> Decimal:
    """clamp(round(3 × mean of the last ≤30 posted daily charges), 10.00, 100.00)."""
    recent = list(charges)[-rules.overdraft_days :]
    if not recent:
        return rules.overdraft_min
    limit = round_money(3 * sum(recent, Decimal(0)) / len(recent))
    return min(max(limit, rules.overdraft_min), rules.overdraft_max)


def close_day(state: AccountState, out: Emitter, rules: BillingRules, charge_ts: datetime) -> None:
    """Close the open day: charge, daily usage, points, expiry, overdraft limit; open the next."""
    totals = state.day
    day = totals.day
    charge = round_money(from_cost(totals.cost))
    state.day = open_day(day + timedelta(days=1), rules)
    aid = state.account_id
    post_ledger(
        state,
        out,
        kind="charge",
        amount=-charge,
        ts=charge_ts,
        ref=day.isoformat(),
        entry_id=f"charge:{aid}:{day.isoformat()}",
    )
    charges = state.charges
    charges.append(to_fen(charge))
    if len(charges) > CHARGES_KEPT:
        del charges[0]
    out.row(
        "daily_usage",
        account_id=aid,
        day=day,
        kwh=from_milli(totals.milli),
        kwh_peak=from_milli(totals.peak),
        kwh_valley=from_milli(totals.valley),
        kwh_tier1=from_milli(totals.tiers[0]),
        kwh_tier2=from_milli(totals.tiers[1]),
        kwh_tier3=from_milli(totals.tiers[2]),
        charge=charge,
        ytd_kwh=from_milli(state.ytd_milli),
        closing_balance=state.balance,
    )
    on_day_close(state, out, day, charge_ts)
    state.overdraft_limit = overdraft_limit(map(from_fen, state.charges), rules)
    if state.day.day.year != state.ytd_year:
        state.ytd_milli = 0
        state.ytd_year = state.day.day.year


def close_days_until(
    state: AccountState, out: Emitter, rules: BillingRules, moment: datetime
) -> None:
    """Close every day D whose end (D+1 00:00) is at or before ``moment``."""
    while state.day.end <= moment:
        close_day(state, out, rules, state.day.end)
