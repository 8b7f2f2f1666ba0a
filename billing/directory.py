"""Which account owns which meter when, and whether an account event fits the lifecycle.

Account lifecycle checks (SPEC S14.5) depend only on the sequence of account events, so
they are decided once, in processing order (``Lifecycle``); so is an ``invalid_amount`` in
their settings (S14.2, after the lifecycle checks), since a refused ``open`` opens nothing.
A decision changes meter ownership (``OwnershipChange``), and readings are routed to the
account that owned their meter at their timestamp (``MeterSpans``, S14.3 ``unknown_meter``).
``MeterDirectory`` is the two together, as the sequential reference keeps them; the billing
flow keeps the lifecycle in one place and the spans with the readings of their meters.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from billing.account_settings import INVALID_AMOUNT, settings_problem
from billing.messages import AccountEvent

OPEN, CLOSED = "open", "closed"


class OwnershipChange(NamedTuple):
    """From ``ts`` on, ``meter_id`` is owned by ``account_id`` (None: released)."""

    meter_id: str
    account_id: str | None
    ts: datetime


@dataclass(slots=True)
class MeterSpans:
    """One meter's ownership spans [start, end) with the owning account, in time order."""

    starts: list[datetime] = field(default_factory=list)
    ends: list[datetime | None] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)

    def change(self, change: OwnershipChange) -> None:
        """Apply an ownership change decided by the lifecycle."""
        if change.account_id is None:
            self.ends[-1] = change.ts
            return
        self.starts.append(change.ts)
        self.ends.append(None)
        self.owners.append(change.account_id)

    def owner_at(self, ts: datetime) -> str | None:
        """The account that owned the meter at ``ts``, if any."""
        index = bisect_right(self.starts, ts) - 1
        if index < 0:
            return None
        end = self.ends[index]
        return self.owners[index] if end is None or ts < end else None


@dataclass(slots=True)
class Lifecycle:
    """Each account's status and meter, each meter's current owner."""

    status: dict[str, str] = field(default_factory=dict)
    meter_of: dict[str, str] = field(default_factory=dict)
    owner_of: dict[str, str] = field(default_factory=dict)

    def is_open(self, account_id: str) -> bool:
        """True while the account is open."""
        return self.status.get(account_id) == OPEN

    def check(self, event: AccountEvent) -> tuple[str | None, list[OwnershipChange]]:
        """Apply an account event: the rejection reason (None: accepted), ownership changes."""
        state = self.status.get(event.account_id)
        if event.kind == "open":
            if state == CLOSED:
                return "account_closed", []
            if state == OPEN or event.meter_id in self.owner_of:
                return "conflict", []
            if settings_problem(event) is not None:
                return INVALID_AMOUNT, []
            self.status[event.account_id] = OPEN
            return None, [self._own(event.meter_id, event.account_id, event.ts)]
        if state is None:
            return "unknown_account", []
        if state == CLOSED:
            return "account_closed", []
        if settings_problem(event) is not None:
            return INVALID_AMOUNT, []
        if event.kind == "replace_meter":
            if event.fields["old_meter_id"] != self.meter_of[event.account_id]:
                return "unknown_meter", []
            if self.owner_of.get(event.meter_id, event.account_id) != event.account_id:
                return "conflict", []
            released = self._release(self.meter_of[event.account_id], event.ts)
            return None, [released, self._own(event.meter_id, event.account_id, event.ts)]
        if event.kind == "close":
            self.status[event.account_id] = CLOSED
            return None, [self._release(self.meter_of[event.account_id], event.ts)]
        return None, []

    def _own(self, meter_id: str, account_id: str, ts: datetime) -> OwnershipChange:
        self.meter_of[account_id] = meter_id
        self.owner_of[meter_id] = account_id
        return OwnershipChange(meter_id, account_id, ts)

    def _release(self, meter_id: str, ts: datetime) -> OwnershipChange:
        self.owner_of.pop(meter_id, None)
        return OwnershipChange(meter_id, None, ts)


@dataclass(slots=True)
class MeterDirectory:
    """Account lifecycle, meter ownership over time and claimed payment ids, in one place."""

    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    spans: dict[str, MeterSpans] = field(default_factory=dict)
    payment_ids: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """Claimed payment ids: the claiming account, and whether the claim is certain."""

    def is_open(self, account_id: str) -> bool:
        """True while the account is open."""
        return self.lifecycle.is_open(account_id)

    def check(self, event: AccountEvent) -> str | None:
        """Apply an account event; return the rejection reason, or None when it is accepted."""
        verdict, changes = self.lifecycle.check(event)
        for change in changes:
            self.spans.setdefault(change.meter_id, MeterSpans()).change(change)
        return verdict

    def owner_at(self, meter_id: str, ts: datetime) -> str | None:
        """The account that owned ``meter_id`` at ``ts``, if any."""
        spans = self.spans.get(meter_id)
        return None if spans is None else spans.owner_at(ts)
