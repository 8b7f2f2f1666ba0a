"""Alerts, auto top-up requests, disconnection and reconnection (SPEC S5, S14.12–S14.16)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from billing.account import ACTIVE, ARREARS, DISCONNECTED, AccountState, notify
from billing.clock import ts_text
from billing.outputs import METER_COMMANDS, PAYMENT_REQUESTS, Emitter, money
from billing.rules import BillingRules, DisconnectWindow


def days_left(state: AccountState, available: Decimal, rules: BillingRules) -> int | None:
    """floor(available × k ÷ sum of the last k posted charges), k = min(7, n); never below 0."""
    recent = list(state.charges)[-rules.days_left_days :]
    total = sum(recent)
    if not recent or total == 0:
        return None
    return max(int((available * len(recent)) // total), 0)


def balance_alerts(
    state: AccountState, out: Emitter, rules: BillingRules, ts: datetime, cause: str
) -> None:
    """low_balance and arrears fire once per crossing; auto top-up is level-triggered."""
    available = state.available
    if available >= state.threshold:
        state.low_armed = True
    elif state.low_armed:
        state.low_armed = False
        data: dict[str, object] = {
            "available": money(available),
            "threshold": money(state.threshold),
        }
        left = days_left(state, available, rules)
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
            data={"available": money(available), "overdraft_limit": money(state.overdraft_limit)},
        )
    auto_topup(state, out, rules, ts)


def auto_topup(state: AccountState, out: Emitter, rules: BillingRules, ts: datetime) -> None:
    """Ask the bank for the configured amount while available < threshold (银行代扣)."""
    if state.auto_topup_amount is None or state.available >= state.threshold:
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


def next_window_opening(window: DisconnectWindow, moment: datetime) -> datetime:
    """The first window opening strictly after ``moment``."""
    day = moment.date()
    for _ in range(400):
        opening = datetime.combine(day, window.start, tzinfo=moment.tzinfo)
        if opening > moment and window.is_window_day(day):
            return opening
        day += timedelta(days=1)
    raise ValueError("the disconnection window never opens")


def in_window(window: DisconnectWindow, moment: datetime) -> bool:
    """True inside [start, end) on a window day."""
    clock = moment.timetz().replace(tzinfo=None)
    return window.is_window_day(moment.date()) and window.start <= clock < window.end


def command(
    state: AccountState, out: Emitter, action: str, ts: datetime, cause: str, reason: str
) -> None:
    """Emit a relay command for the meter head-end."""
    command_id = f"{action}:{state.account_id}:{cause}"
    value = {
        "meter_id": state.meter_id,
        "account_id": state.account_id,
        "action": action,
        "ts": ts_text(ts),
        "reason": reason,
    }
    out.event(
        METER_COMMANDS,
        id_field="command_id",
        event_id=command_id,
        kind=action,
        account_id=state.account_id,
        meter_id=state.meter_id,
        ts=ts,
        key=state.meter_id,
        value=value,
        data=value,
    )


def disconnection(
    state: AccountState, out: Emitter, rules: BillingRules, ts: datetime, cause: str
) -> None:
    """Cut inside the window when available < −limit; outside it, schedule the cut once."""
    if state.status == DISCONNECTED:
        return
    available = state.available
    limit = state.overdraft_limit
    inside = in_window(rules.window, ts)
    if available < -limit:
        if inside:
            state.status = DISCONNECTED
            state.pending_cut = False
            state.warned_consumption = False
            command(state, out, "disconnect", ts, cause, "overdraft_exhausted")
            notify(
                state,
                out,
                "disconnected",
                ts=ts,
                cause=cause,
                data={"available": money(available), "overdraft_limit": money(limit)},
            )
        elif not state.pending_cut:
            state.pending_cut = True
            notify(
                state,
                out,
                "disconnect_scheduled",
                ts=ts,
                cause=cause,
                data={
                    "available": money(available),
                    "overdraft_limit": money(limit),
                    "scheduled_for": ts_text(next_window_opening(rules.window, ts)),
                },
            )
    elif state.pending_cut and inside:
        state.pending_cut = False


def reconnection(state: AccountState, out: Emitter, ts: datetime, cause: str) -> None:
    """After a credit: reconnect a cut account, or drop a pending cut, once available > 0."""
    if state.available <= 0:
        return
    state.pending_cut = False
    if state.status == DISCONNECTED:
        state.status = ACTIVE
        command(state, out, "reconnect", ts, cause, "credit")
        notify(
            state,
            out,
            "reconnected",
            ts=ts,
            cause=cause,
            data={"available": money(state.available)},
        )


def follow_status(state: AccountState) -> None:
    """Active (available ≥ 0) or arrears (< 0); disconnected ends only by reconnection."""
    if state.status in (ACTIVE, ARREARS):
        state.status = ACTIVE if state.available >= 0 else ARREARS
