"""Timestamps: strict ISO-8601 parsing and the local calendar (SPEC S2, S14.2)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
MICROSECOND = timedelta(microseconds=1)


class TimestampError(ValueError):
    """A timestamp is missing, malformed or has no offset."""


def parse_ts(value: object, zone: tzinfo = LOCAL_ZONE) -> datetime:
    """Parse an ISO-8601 timestamp that carries an explicit offset; return it in ``zone``."""
    if not isinstance(value, str) or len(value) < 16 or value[10] != "T":
        raise TimestampError(f"not an ISO-8601 timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise TimestampError(f"not an ISO-8601 timestamp: {value!r}") from err
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise TimestampError(f"timestamp without offset: {value!r}")
    return parsed.astimezone(zone)


def ts_text(value: datetime) -> str:
    """Render a timestamp as ISO-8601 with its offset (seconds precision unless finer)."""
    return value.isoformat()


def elapsed_us(start: datetime, end: datetime) -> int:
    """Microseconds from ``start`` to ``end`` measured on the UTC time line."""
    return (end.astimezone(UTC) - start.astimezone(UTC)) // MICROSECOND


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """00:00 local time at the start of ``day``."""
    return datetime.combine(day, time(0), tzinfo=zone)


def next_midnight(moment: datetime) -> datetime:
    """The first local midnight strictly after ``moment``."""
    return local_midnight(moment.date() + timedelta(days=1), moment.tzinfo or LOCAL_ZONE)
