"""What follows every applied message: alerts, the cut check, the status, the account row.

SPEC S14.12: balance alerts and the auto top-up check run only when the message changed the
exact available balance; the disconnection check runs after every applied message (S14.15).
"""

from __future__ import annotations

from datetime import date, datetime

from billing.alerts import balance_alerts
from billing.cuts import disconnection
from billing.emitter import Emitter
from billing.notices import Cause
from billing.rules import BillingRules
from billing.state import ACTIVE, ARREARS, AccountState, account_row


def follow_status(state: AccountState, available: int) -> None:
    """Active (``available`` ≥ 0) or arrears (< 0); disconnected ends only by reconnection.

    ``available`` is in 10^-7 yuan (``AccountState.available_units``), as in every check.
    """
    if state.status in (ACTIVE, ARREARS):
        state.status = ACTIVE if available >= 0 else ARREARS


def follow_up(
    state: AccountState,
    out: Emitter,
    rules: BillingRules,
    *,
    before: int | None,
    ts: datetime,
    cause: Cause,
    always_row: bool,
    day: date | None = None,
) -> None:
    """Checks after an applied message, then the account row when anything visible changed.

    ``before`` is the available balance before the message, in 10^-7 yuan (None: no alert
    check, as after ``open``, ``update`` and ``change_plan``). ``day`` is the open day before
    the message: a reading that closed days gets a row.
    """
    status = state.status
    available = state.available_units  # none of the checks moves money
    if before is not None and available != before:
        balance_alerts(state, out, rules, ts, cause, available)
    disconnection(state, out, rules, ts, cause, available)
    follow_status(state, available)
    if always_row or state.status != status or (day is not None and state.day.day != day):
        account_row(state, out, ts)
