"""When a cut counts as confirmed, and when consumption after it is a tamper alarm (S14.16).

The relay needs time to open: consumption before the cut is confirmed is billed as usual
and raises nothing. A cut is confirmed by the first ``ok`` relay result for the disconnected
period's ``disconnect`` command, or, when the input carries no relay results at all, at the
command's ts + ``tamper_grace_minutes``. Results never move money.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from billing.emitter import Emitter
from billing.messages import CommandResult
from billing.notices import notify
from billing.rules import BillingRules
from billing.state import DISCONNECTED, AccountState

CONSUMPTION_NOTICE_MILLI = 10  # Δ > 0.01 kWh while cut is worth a notice


def record_cut(state: AccountState, command_id: str, ts: datetime) -> None:
    """A new disconnected period: its ``disconnect`` command, not yet confirmed."""
    state.cut_command = (command_id, ts)
    state.cut_confirmed = None
    state.warned_consumption = False


def end_cut(state: AccountState) -> None:
    """Reconnected: the period's command is no longer the one results confirm."""
    state.cut_command = None
    state.cut_confirmed = None


def cut_confirmed_at(state: AccountState, rules: BillingRules) -> datetime | None:
    """When the current period's cut counts as confirmed; None while it does not (yet)."""
    if state.cut_command is None:
        return None
    if state.cut_confirmed is not None:
        return state.cut_confirmed
    if rules.command_results:
        return None  # a result that never arrives never confirms
    return state.cut_command[1] + timedelta(minutes=rules.tamper_grace_minutes)


def is_tamper(state: AccountState, since: datetime | None, delta: int, rules: BillingRules) -> bool:
    """True when consumption of ``delta`` (0.001 kWh) over [since, …) raises the period's alarm.

    It must be more than 0.01 kWh, the account disconnected and not yet warned this period,
    and the interval must start at or after the cut was confirmed.
    """
    if (
        since is None
        or delta <= CONSUMPTION_NOTICE_MILLI
        or state.status != DISCONNECTED
        or state.warned_consumption
    ):
        return False
    confirmed = cut_confirmed_at(state, rules)
    return confirmed is not None and since >= confirmed


def apply_command_result(
    state: AccountState, result: CommandResult, out: Emitter, cause: str
) -> bool:
    """Apply a relay result to its account; False when it is ignored.

    Only a result for the current period's ``disconnect`` command that has not been
    confirmed yet counts: ``ok`` confirms the cut at the result's ts, a failure raises
    ``meter_anomaly`` (``relay_failed``). Anything else (an unknown command, a reconnect, a
    period already confirmed) is ignored, as S14.16 asks: it is a fact of the meter.
    """
    cut = state.cut_command
    if cut is None or cut[0] != result.command_id or state.cut_confirmed is not None:
        return False
    if result.ok:
        state.cut_confirmed = result.ts
        return True
    notify(
        state,
        out,
        "meter_anomaly",
        ts=result.ts,
        cause=cause,
        data={
            "meter_id": result.meter_id,
            "reason": "relay_failed",
            "command_id": result.command_id,
            "error": result.error,
        },
    )
    return True
