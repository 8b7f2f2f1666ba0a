"""Where a notification goes: phone and locale from the notification, email from the accounts.

A notification carries the account's phone and locale as the billing flow knew them (S7).
Email is not part of the billing state; the worker keeps a small directory of the latest
``email`` given in ``open``/``update`` events on the accounts topic (S2), read from the
beginning at start and followed while it runs (no consumer group, nothing committed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from billing.contacts import contact_fields
from bus.kafka import PartitionReader, Record


class AccountDirectory:
    """Latest email per account, from the accounts topic."""

    def __init__(self, config: Mapping[str, str] | None, topic: str) -> None:
        self.emails: dict[str, str] = {}
        self._reader = PartitionReader(config, topic, group=None) if config else None
        if self._reader is not None:
            self._apply_all(self._reader.read_to_end(30.0))  # all there is now, before any notice

    def apply(self, event: object) -> None:
        """Take one accounts-topic message into account (anything unusable is ignored)."""
        if not isinstance(event, dict):
            return
        account, email = event.get("account_id"), contact_fields(event).get("email")
        if isinstance(account, str) and email is not None and "@" in email:
            self.emails[account] = email

    def follow(self, timeout: float = 0.0) -> int:
        """Read what the accounts topic has now; the number of messages read."""
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
                self.apply(json.loads(record.value))
            except ValueError:
                continue

    def email(self, account_id: str) -> str | None:
        """The account's email address, if one was given."""
        return self.emails.get(account_id)

    def close(self) -> None:
        """Stop following the topic."""
        if self._reader is not None:
            self._reader.close()
