"""Balance alerts and auto top-up requests, once per crossing (SPEC S5, S14.12–S14.14)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from billing.clock import ts_text
from billing.emitter import Emitter
from billing.notices import Cause, notify
from billing.numbers import cost_ceiling, from_cost, from_fen
from billing.outputs import PAYMENT_REQUESTS, money
from billing.rules import BillingRules
from billing.state import AccountState


def days_left(state: AccountState, available: Decimal, rules: BillingRules) -> int | None:
    """floor(available × k ÷ sum of the last k posted charges), k = min(7, n); never below 0."""
    recent = [from_fen(fen) for fen in state.charges[-rules.days_left_days :]]
    total = sum(recent)
    if not recent or total == 0:
        return None
    return max(int((available * len(recent)) // total), 0)


def balance_alerts(
    state: AccountState,
    out: Emitter,
    rules: BillingRules,
    ts: datetime,
    cause: Cause,
    available: int,
) -> None:
    """low_balance and arrears fire once per crossing; auto top-up is level-triggered.

    ``available`` is the account's available balance after the message, in 10^-7 yuan
    (``state.available_units``).
    """
    if available >= cost_ceiling(state.threshold):
        state.low_armed = True
    elif state.low_armed:
        state.low_armed = False
        data: dict[str, object] = {
            "available": money(from_cost(available)),
            "threshold": money(state.threshold),
        }
        left = days_left(state, from_cost(available), rules)
        if left is not None:
            data["days_left"] = left
        notify(state, out, "low_balance", ts=ts, cause=cause, data=data)
    if available >= 0:
        state.arrears_armed = True
    elif state.arrears_armed:
        state.arrears_armed = False
        notify(
            state,
            out,
            "arrears",
            ts=ts,
            cause=cause,
            data={
                "available": money(from_cost(available)),
                "overdraft_limit": money(state.overdraft_limit),
            },
        )
    auto_topup(state, out, rules, ts, available)


def auto_topup(
    state: AccountState, out: Emitter, rules: BillingRules, ts: datetime, available: int
) -> None:
    """Ask the bank for the configured amount while available < threshold (银行代扣).

    ``available`` in 10^-7 yuan, as ``balance_alerts`` has it.
    """
    if state.auto_topup_amount is None or available >= cost_ceiling(state.threshold):
        return
    retry = timedelta(hours=rules.auto_topup_retry_hours)
    if state.request is not None and ts - state.request[1] < retry:
        return
    request_id = f"autotopup:{state.account_id}:{ts_text(ts)}"
    state.request = (request_id, ts)
    value = {
        "account_id": state.account_id,
        "amount": money(state.auto_topup_amount),
        "channel": "bank",
        "ts": ts_text(ts),
    }
    out.event(
        PAYMENT_REQUESTS,
        id_field="request_id",
        event_id=request_id,
        kind="payment_request",
        account_id=state.account_id,
        meter_id=state.meter_id,
        ts=ts,
        key=state.account_id,
        value=value,
        data=value,
    )
