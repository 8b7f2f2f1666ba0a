"""How a household is reached: the contact fields of ``open`` and ``update`` (SPEC S2).

Billing keeps phone and locale in the account state (they travel on every notification),
the monthly job reads them from the account events, and the notification worker takes the
e-mail address from the accounts topic: all three read an event with ``contact_fields``.
"""

from __future__ import annotations

from collections.abc import Mapping

CONTACT_EVENTS = frozenset({"open", "update"})
CONTACT_FIELDS = ("phone", "email", "locale")
DEFAULT_LOCALE = "zh-CN"


def contact_fields(event: Mapping[str, object]) -> dict[str, str]:
    """The contact fields an account event sets (text values only; nothing for other events)."""
    if event.get("type") not in CONTACT_EVENTS:
        return {}
    return {name: value for name in CONTACT_FIELDS if isinstance(value := event.get(name), str)}
