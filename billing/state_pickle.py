"""How an account state is pickled for recovery snapshots: compact and cheap.

A live billing process snapshots every account a message touched in the epoch, so pickling
is paid about once per reading. Pickled field by field, an account's timezone-aware
timestamps, Decimals and status enum cost more than applying the reading itself (BENCHMARKS.md
"Account snapshots"). The state is pickled instead as one tuple: timestamps in the
state's zone as epoch microseconds, amounts as their exact decimal text, the status as its
value. Every value round-trips exactly (same instant, zone, digits and exponent).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.clock import EPOCH, MICROSECOND

_EPOCH_S = 1_000_000


def instant(moment: datetime, zone: tzinfo | None) -> int | datetime:
    """Epoch microseconds of a timestamp in ``zone``; any other timestamp as it is."""
    if moment.tzinfo is not zone:
        return moment
    return (moment - EPOCH) // MICROSECOND


def zone_name(zone: tzinfo | None) -> str | tzinfo | None:
    """A time zone by its IANA key when it has one (cheaper to pickle than the zone)."""
    return zone.key if isinstance(zone, ZoneInfo) else zone


def zone_of(name: str | tzinfo | None) -> tzinfo | None:
    """The zone ``zone_name`` named (the same cached ``ZoneInfo`` object)."""
    return ZoneInfo(name) if isinstance(name, str) else name


def moment_of(value: int | datetime, zone: tzinfo | None) -> datetime:
    """The timestamp ``instant`` gave, in ``zone``."""
    if isinstance(value, datetime):
        return value
    seconds, micros = divmod(value, _EPOCH_S)
    return datetime.fromtimestamp(seconds, zone).replace(microsecond=micros)


def amount(value: Decimal | None) -> str | None:
    """A Decimal as its exact text (None stays None)."""
    return None if value is None else str(value)


def decimal_of(text: str | None) -> Decimal | None:
    """The Decimal ``amount`` gave."""
    return None if text is None else Decimal(text)


def day_of(ordinal: int) -> date:
    """The date of a proleptic Gregorian ordinal."""
    return date.fromordinal(ordinal)


def packed_pairs(pairs: list[tuple[datetime, Any]], zone: tzinfo | None) -> list[tuple[Any, Any]]:
    """(timestamp, value) pairs with their timestamps packed."""
    return [(instant(moment, zone), value) for moment, value in pairs]


def unpacked_pairs(pairs: list[tuple[Any, Any]], zone: tzinfo | None) -> list[tuple[datetime, Any]]:
    """The pairs ``packed_pairs`` packed."""
    return [(moment_of(moment, zone), value) for moment, value in pairs]


def constructor_reduce(value: Any) -> tuple[Any, tuple[Any, ...]]:  # noqa: ANN401 - a dataclass
    """How a dataclass pickles through its constructor: its class and the fields it takes.

    Compiled (``native/build.py``), a frozen dataclass cannot be unpickled field by field, since
    its fields refuse assignment, and one with a written ``__init__`` cannot be made without
    its arguments; each one's ``__reduce__`` returns this instead.
    """
    return type(value), tuple(getattr(value, f.name) for f in fields(value) if f.init)
