"""Account events: open, update, change_plan, replace_meter and close (SPEC S5, S14.5–S14.10).

Whether an event fits the lifecycle is decided by the meter directory, in processing order;
its verdict reaches the account with the event.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from billing.account_settings import INVALID_AMOUNT, settings_problem
from billing.days import close_day, close_days_until, open_day
from billing.emitter import Emitter
from billing.follow_up import follow_up
from billing.ledger import post_ledger
from billing.messages import AccountEvent
from billing.notices import cause_of, notify
from billing.numbers import to_milli
from billing.outputs import money
from billing.points import redeem
from billing.readings import final_reading, record_reading
from billing.rejections import Rejection
from billing.rules import BillingRules
from billing.state import CLOSED, AccountState, account_row


def new_account(
    *,
    account_id: str,
    meter_id: str,
    plan_id: str,
    ts: datetime,
    opening_balance: Decimal,
    ytd_kwh: Decimal,
    threshold: Decimal,
    rules: BillingRules,
) -> AccountState:
    """A freshly opened account."""
    return AccountState(
        account_id=account_id,
        meter_id=meter_id,
        opened_at=ts,
        plans=[(ts, plan_id)],
        balance=opening_balance,
        opening_balance=opening_balance,
        threshold=threshold,
        day=open_day(ts.date(), rules),
        ytd_milli=to_milli(ytd_kwh),
        ytd_year=ts.year,
        overdraft_limit=rules.overdraft_min,
    )


def apply_account_event(
    state: AccountState | None,
    e: AccountEvent,
    verdict: str | None,
    out: Emitter,
    rules: BillingRules,
) -> AccountState | Rejection:
    """Apply an account event the directory accepted (``verdict`` None), or refuse it."""
    if verdict is not None:
        detail = settings_problem(e) if verdict == INVALID_AMOUNT else None
        return Rejection(verdict, detail or f"{e.kind} does not fit the account's lifecycle")
    if e.kind == "open":
        return open_account(e, out, rules)
    if state is None:
        return Rejection("unknown_account", "no such account")
    if e.kind == "close":
        close_account(state, e, out, rules)
        return state
    before: int | None = None  # only a replacement's final reading moves the balance
    if e.kind == "change_plan":
        state.plans.append((e.ts, e.plan))
    elif e.kind == "update":
        update_settings(state, e.fields)
    else:
        before = state.available_units
        replace_meter(state, e, out, rules)
    follow_up(state, out, rules, before=before, ts=e.ts, cause=cause_of(e), always_row=True)
    return state


def open_account(e: AccountEvent, out: Emitter, rules: BillingRules) -> AccountState:
    """A new account with its opening balance and settings; no alert check (S14.12)."""
    f = e.fields
    state = new_account(
        account_id=e.account_id,
        meter_id=e.meter_id,
        plan_id=e.plan,
        ts=e.ts,
        opening_balance=f["opening_balance"],
        ytd_kwh=f["ytd_kwh"],
        threshold=f.get("low_balance_threshold", rules.default_threshold),
        rules=rules,
    )
    update_settings(state, f)
    state.district, state.landlord_id = f.get("district"), f.get("landlord_id")
    follow_up(state, out, rules, before=None, ts=e.ts, cause=cause_of(e), always_row=True)
    return state


def update_settings(state: AccountState, fields: dict[str, object]) -> None:
    """Threshold, auto top-up amount (None turns it off and drops its request), phone, locale."""
    if "low_balance_threshold" in fields:
        state.threshold = fields["low_balance_threshold"]  # type: ignore[assignment]
    if "auto_topup_amount" in fields:
        state.auto_topup_amount = fields["auto_topup_amount"]  # type: ignore[assignment]
        if state.auto_topup_amount is None:
            state.request = None
    if "phone" in fields:
        state.phone = fields["phone"]  # type: ignore[assignment]
    if "locale" in fields:
        state.locale = fields["locale"]  # type: ignore[assignment]


def replace_meter(state: AccountState, e: AccountEvent, out: Emitter, rules: BillingRules) -> None:
    """The old meter's final value ends its series; the new one starts uncharged (S5, S14.9)."""
    fields = e.fields
    final_reading(state, out, rules, fields["old_meter_id"], e.ts, fields["old_final_kwh"])
    close_days_until(state, out, rules, e.ts)
    state.meter_id = e.meter_id
    initial = to_milli(fields["new_initial_kwh"])
    state.baseline = (e.ts, initial)
    record_reading(state, out, e.meter_id, e.ts, initial, "initial")


def close_account(state: AccountState, e: AccountEvent, out: Emitter, rules: BillingRules) -> None:
    """Move-out settlement (S14.10): rate, close the day, redeem points, refund; no checks."""
    aid = state.account_id
    final_reading(state, out, rules, state.meter_id, e.ts, e.fields.get("final_kwh"))
    close_days_until(state, out, rules, e.ts)
    close_day(state, out, rules, e.ts)
    if state.wallet.total:
        redeem(state, out, points=state.wallet.total, ts=e.ts, ref="close")
    data: dict[str, object]
    if state.balance > 0:
        refund = state.balance
        post_ledger(
            state,
            out,
            kind="refund",
            amount=-refund,
            ts=e.ts,
            ref="close",
            entry_id=f"refund:{aid}:close",
        )
        data = {"refund": money(refund)}
    elif state.balance == 0:
        data = {"refund": money(state.balance)}
    else:
        data = {"owed": money(-state.balance)}
    state.status = CLOSED
    state.pending_cut = False
    state.request = None
    notify(state, out, "account_closed", ts=e.ts, cause=cause_of(e), data=data)
    account_row(state, out, e.ts)
