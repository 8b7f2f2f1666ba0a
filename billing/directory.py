"""Which account owns which meter when, and whether an account event fits the lifecycle.

Account lifecycle checks (SPEC S14.5) depend only on the sequence of account events, so
they are decided here, once, in processing order; readings are routed to the account that
owned their meter at their timestamp (S14.3 ``unknown_meter``).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime

from billing.messages import AccountEvent

OPEN, CLOSED = "open", "closed"


@dataclass(slots=True)
class _Ownership:
    """Meter ownership spans [start, end) with the owning account, in time order."""

    starts: list[datetime] = field(default_factory=list)
    ends: list[datetime | None] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MeterDirectory:
    """Account lifecycle and meter ownership over time."""

    status: dict[str, str] = field(default_factory=dict)
    meter_of: dict[str, str] = field(default_factory=dict)
    owner_of: dict[str, str] = field(default_factory=dict)
    spans: dict[str, _Ownership] = field(default_factory=dict)
    payment_ids: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """Claimed payment ids: the claiming account, and whether the claim is certain."""

    def is_open(self, account_id: str) -> bool:
        """True while the account is open."""
        return self.status.get(account_id) == OPEN

    def check(self, event: AccountEvent) -> str | None:
        """Apply an account event; return the rejection reason, or None when it is accepted."""
        state = self.status.get(event.account_id)
        if event.kind == "open":
            if state == CLOSED:
                return "account_closed"
            if state == OPEN or event.meter_id in self.owner_of:
                return "conflict"
            self.status[event.account_id] = OPEN
            self._own(event.meter_id, event.account_id, event.ts)
            return None
        if state is None:
            return "unknown_account"
        if state == CLOSED:
            return "account_closed"
        if event.kind == "replace_meter":
            if event.fields["old_meter_id"] != self.meter_of[event.account_id]:
                return "unknown_meter"
            if self.owner_of.get(event.meter_id, event.account_id) != event.account_id:
                return "conflict"
            self._release(self.meter_of[event.account_id], event.ts)
            self._own(event.meter_id, event.account_id, event.ts)
        elif event.kind == "close":
            self._release(self.meter_of[event.account_id], event.ts)
            self.status[event.account_id] = CLOSED
        return None

    def owner_at(self, meter_id: str, ts: datetime) -> str | None:
        """The account that owned ``meter_id`` at ``ts``, if any."""
        spans = self.spans.get(meter_id)
        if spans is None:
            return None
        index = bisect_right(spans.starts, ts) - 1
        if index < 0:
            return None
        end = spans.ends[index]
        return spans.owners[index] if end is None or ts < end else None

    def _own(self, meter_id: str, account_id: str, ts: datetime) -> None:
        self.meter_of[account_id] = meter_id
        self.owner_of[meter_id] = account_id
        spans = self.spans.setdefault(meter_id, _Ownership())
        spans.starts.append(ts)
        spans.ends.append(None)
        spans.owners.append(account_id)

    def _release(self, meter_id: str, ts: datetime) -> None:
        self.owner_of.pop(meter_id, None)
        spans = self.spans[meter_id]
        spans.ends[-1] = ts
