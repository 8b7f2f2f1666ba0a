"""What the worker follows besides its notifications: e-mail addresses and reported failures.

A notification carries the account's phone and locale as the billing flow knew them (S7).
Email is not part of the billing state; the worker keeps a small directory of the latest
``email`` given in ``open``/``update`` events on the accounts topic (S2). It also knows every
failure already reported on the notification-failures topic, so a failure is reported once
per event and channel whichever worker, or restart, meets it again. Both topics are read from
the beginning at start and followed while the worker runs (no consumer group, nothing
committed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from billing.contacts import contact_fields
from bus.kafka import PartitionReader, Record


class _Followed:
    """A topic read whole at start, then followed; each JSON value handed to ``apply``."""

    def __init__(
        self, config: Mapping[str, str] | None, topic: str, apply: Callable[[object], None]
    ) -> None:
        self._apply = apply
        self._reader = PartitionReader(config, topic, group=None) if config else None
        if self._reader is not None:
            self._apply_all(self._reader.read_to_end(30.0))  # all there is now, first

    def follow(self, timeout: float = 0.0) -> int:
        """Read what the topic has now; the number of messages read."""
        if self._reader is None:
            return 0
        count = 0
        while True:
            records = self._reader.poll(1000, timeout if count == 0 else 0.0)
            self._apply_all(records)
            count += len(records)
            if len(records) < 1000:
                return count

    def _apply_all(self, records: list[Record]) -> None:
        for record in records:
            try:
                self._apply(json.loads(record.value))
            except ValueError:
                continue

    def close(self) -> None:
        """Stop following the topic."""
        if self._reader is not None:
            self._reader.close()


class AccountDirectory(_Followed):
    """Latest email per account, from the accounts topic."""

    def __init__(self, config: Mapping[str, str] | None, topic: str) -> None:
        self.emails: dict[str, str] = {}
        super().__init__(config, topic, self.apply)

    def apply(self, event: object) -> None:
        """Take one accounts-topic message into account (anything unusable is ignored)."""
        if not isinstance(event, dict):
            return
        account, email = event.get("account_id"), contact_fields(event).get("email")
        if isinstance(account, str) and email is not None and "@" in email:
            self.emails[account] = email

    def email(self, account_id: str) -> str | None:
        """The account's email address, if one was given."""
        return self.emails.get(account_id)


def failure_id(entry: Mapping[str, object]) -> str:
    """What makes a failure report one: the event and channel, or where an unreadable one sits."""
    if entry.get("event_id") is not None:
        return f"{entry['event_id']}|{entry.get('channel')}"
    return f"at|{entry.get('partition')}|{entry.get('offset')}"


class ReportedFailures(_Followed):
    """The failures already on the notification-failures topic, by ``failure_id``."""

    def __init__(self, config: Mapping[str, str] | None, topic: str) -> None:
        self.seen: set[str] = set()
        super().__init__(config, topic, self._apply_entry)

    def _apply_entry(self, entry: object) -> None:
        if isinstance(entry, dict):
            self.seen.add(failure_id(entry))

    def first(self, identity: str) -> bool:
        """True the first time a failure is met (and from now on it counts as reported)."""
        if identity in self.seen:
            return False
        self.seen.add(identity)
        return True
