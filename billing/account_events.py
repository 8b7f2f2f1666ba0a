"""The ``account_events`` row of every applied account event (S8), for replay and live alike."""

from __future__ import annotations

from billing.emitter import Emitter
from billing.messages import AccountEvent
from billing.outputs import account_event_row
from billing.state import AccountState


def record_account_event(state: AccountState, event: AccountEvent, out: Emitter) -> None:
    """Emit the ``account_events`` row of ``event``, applied to the account now in ``state``."""
    out.outputs.append(
        account_event_row(
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
    )
