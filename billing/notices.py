"""Notifications for the household (SPEC S7) and the cause that makes their ids stable."""

from __future__ import annotations

from datetime import datetime

from billing.clock import ts_text
from billing.emitter import Emitter
from billing.messages import CommandResult, Message, Reading, Redeem, TopUp
from billing.outputs import NOTIFICATIONS
from billing.state import AccountState

Cause = str | Message
"""What caused an output: its stable identifier, or the message it is made from when needed.

A reading is passed as it is: most readings cause no notification or command, so the text
(`cause_of`) is made only for those that do.
"""


def cause_text(cause: Cause) -> str:
    """The stable identifier of a cause (``cause_of`` of a message)."""
    return cause if isinstance(cause, str) else cause_of(cause)


def cause_of(message: Message) -> str:
    """A stable identifier of the message that caused an output (billing-rules #24)."""
    if isinstance(message, Reading):
        return f"{message.meter_id}@{ts_text(message.ts)}"
    if isinstance(message, TopUp | Redeem):
        return message.payment_id
    if isinstance(message, CommandResult):
        return f"{message.command_id}@{ts_text(message.ts)}"
    return f"{message.kind}@{ts_text(message.ts)}"


def envelope(
    event_id: str,
    kind: str,
    account_id: str,
    ts: str,
    *,
    locale: str,
    phone: str | None,
    data: dict[str, object],
) -> dict[str, object]:
    """A notification message as SPEC S7 shapes it (billing's alerts and the monthly bill)."""
    value: dict[str, object] = {
        "event_id": event_id,
        "type": kind,
        "account_id": account_id,
        "ts": ts,
        "locale": locale,
    }
    if phone:
        value["phone"] = phone
    value["data"] = data
    return value


def notify(
    state: AccountState,
    out: Emitter,
    kind: str,
    *,
    ts: datetime,
    cause: Cause,
    data: dict[str, object],
) -> None:
    """Emit a notification for the account's household (S7)."""
    event_id = f"{kind}:{state.account_id}:{cause_text(cause)}"
    value = envelope(
        event_id,
        kind,
        state.account_id,
        ts_text(ts),
        locale=state.locale,
        phone=state.phone,
        data=data,
    )
    out.event(
        NOTIFICATIONS,
        id_field="event_id",
        event_id=event_id,
        kind=kind,
        account_id=state.account_id,
        meter_id=state.meter_id,
        ts=ts,
        key=state.account_id,
        value=value,
        data=data,
    )
