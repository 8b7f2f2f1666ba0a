"""The ``account_events`` row of every applied account event (S8), for replay and live alike."""

from __future__ import annotations

from billing.account import AccountState
from billing.messages import AccountEvent, Envelope, Message
from billing.outputs import Output, Row, account_event_row


def rejection_reason(envelope: Envelope, outputs: list[Output]) -> str | None:
    """The reason the envelope was rejected with, or None when it was applied."""
    return next(
        (
            o.values["reason"]
            for o in outputs
            if isinstance(o, Row)
            and o.table == "rejected"
            and o.values["rejection_id"] == envelope.position
        ),
        None,
    )


def with_account_event(
    state: AccountState | None, envelope: Envelope, event: Message, outputs: list[Output]
) -> list[Output]:
    """``outputs`` plus the ``account_events`` row when ``event`` is an applied account event.

    ``outputs`` are what applying ``envelope`` (parsed as ``event``) produced; ``state`` is
    the account after it.
    """
    if (
        not isinstance(event, AccountEvent)
        or state is None
        or rejection_reason(envelope, outputs) is not None
    ):
        return outputs
    row = account_event_row(
        kind=event.kind,
        account_id=event.account_id,
        ts=event.ts,
        meter_id=state.meter_id,
        plan=state.plan_id,
        fields={
            **({"meter_id": event.meter_id} if event.meter_id else {}),
            **({"plan": event.plan} if event.plan else {}),
            **event.fields,
        },
    )
    return [*outputs, row]
