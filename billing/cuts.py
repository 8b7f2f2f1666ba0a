"""Disconnection inside the window, scheduled cuts and reconnection (SPEC S5, S14.15)."""

from __future__ import annotations

from datetime import datetime, timedelta

from billing.clock import ts_text
from billing.emitter import Emitter
from billing.notices import Cause, cause_text, notify
from billing.numbers import cost_floor, from_cost
from billing.outputs import METER_COMMANDS, money
from billing.rules import BillingRules, DisconnectWindow
from billing.state import ACTIVE, DISCONNECTED, AccountState
from billing.tamper import end_cut, record_cut


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
    return window.start <= moment.time() < window.end and window.is_window_day(moment.date())


def command(
    state: AccountState, out: Emitter, action: str, ts: datetime, cause: Cause, reason: str
) -> str:
    """Emit a relay command for the meter head-end; return its ``command_id``."""
    command_id = f"{action}:{state.account_id}:{cause_text(cause)}"
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
    return command_id


def disconnection(
    state: AccountState,
    out: Emitter,
    rules: BillingRules,
    ts: datetime,
    cause: Cause,
    available: int,
) -> None:
    """Cut inside the window when ``available`` < −limit; outside it, schedule the cut once.

    ``available`` is in 10^-7 yuan (``AccountState.available_units``).
    """
    if state.status == DISCONNECTED:
        return
    limit = state.overdraft_limit
    if available < -cost_floor(limit):
        if in_window(rules.window, ts):
            state.status = DISCONNECTED
            state.pending_cut = False
            command_id = command(state, out, "disconnect", ts, cause, "overdraft_exhausted")
            record_cut(state, command_id, ts)
            notify(
                state,
                out,
                "disconnected",
                ts=ts,
                cause=cause,
                data={"available": money(from_cost(available)), "overdraft_limit": money(limit)},
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
                    "available": money(from_cost(available)),
                    "overdraft_limit": money(limit),
                    "scheduled_for": ts_text(next_window_opening(rules.window, ts)),
                },
            )
    elif state.pending_cut and in_window(rules.window, ts):
        state.pending_cut = False


def reconnection(state: AccountState, out: Emitter, ts: datetime, cause: Cause) -> None:
    """After a credit: reconnect a cut account, or drop a pending cut, once available > 0."""
    if state.available_units <= 0:
        return
    state.pending_cut = False
    if state.status == DISCONNECTED:
        state.status = ACTIVE
        end_cut(state)
        command(state, out, "reconnect", ts, cause, "credit")
        notify(
            state,
            out,
            "reconnected",
            ts=ts,
            cause=cause,
            data={"available": money(state.available)},
        )
