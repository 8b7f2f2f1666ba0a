"""Timestamps: strict ISO-8601 parsing and the local calendar (SPEC S2, S14.2)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from billing.excerpt import excerpt

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
MICROSECOND = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The plausible range of input timestamps (docs/billing-rules.md "Plausible ranges"):
# EARLIEST <= ts < LATEST, compared as instants. Wide enough for any real meter, narrow
# enough that a reading cannot close millions of days or leave the ClickHouse column range.
EARLIEST = datetime(2000, 1, 1, tzinfo=LOCAL_ZONE)
LATEST = datetime(2100, 1, 1, tzinfo=LOCAL_ZONE)
# The extended ISO-8601 forms read (``fromisoformat`` alone also takes week dates, basic
# forms, offsets with seconds, and stops at a NUL): date, hours and minutes, optional
# seconds and fraction (digits beyond microseconds are cut), and ``Z`` or ``±HH:MM`` (its
# absence is refused below, with its own reason).
_ISO_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:[0-9]{2})?"
)


class TimestampError(ValueError):
    """A timestamp is missing, malformed or has no offset."""


def parse_ts(value: object, zone: tzinfo = LOCAL_ZONE) -> datetime:
    """Parse an ISO-8601 timestamp with an offset, in the plausible range; return it in ``zone``.

    Valid texts are remembered: a message's ts is read when it is ordered and again when it
    is parsed, and a fleet's meters share their quarter-hour stamps.
    """
    if not isinstance(value, str):
        raise TimestampError(f"not an ISO-8601 timestamp: {excerpt(value)}")
    parsed = _PARSED.get(zone)
    if parsed is None:
        parsed = _PARSED[zone] = {}
    moment = parsed.get(value)
    if moment is None:
        moment = _parse_text(value, zone)  # raises for an invalid text, which is not kept
        if len(parsed) >= _PARSED_TEXTS:
            parsed.clear()
        parsed[value] = moment
    return moment


_PARSED: dict[tzinfo, dict[str, datetime]] = {}
"""Valid texts parsed in each zone: a dict looked up in C, not a cached call."""
_PARSED_TEXTS = 4096
"""The most kept per zone (a day of quarter-hour stamps is 96): then it starts again."""


def _parse_text(value: str, zone: tzinfo) -> datetime:
    if not _ISO_SHAPE.fullmatch(value):
        raise TimestampError(f"not an ISO-8601 timestamp: {excerpt(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise TimestampError(f"not an ISO-8601 timestamp: {excerpt(value)}") from err
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise TimestampError(f"timestamp without offset: {excerpt(value)}")
    try:
        # Compared as instants before any conversion: year 1 or 9999 would overflow it.
        plausible = EARLIEST <= parsed < LATEST
    except OverflowError:
        plausible = False
    if not plausible:
        raise TimestampError(f"{excerpt(value)} is outside [{EARLIEST.date()}, {LATEST.date()})")
    return parsed.astimezone(zone)


def ts_text(value: datetime) -> str:
    """Render a timestamp as ISO-8601 with its offset (seconds precision unless finer)."""
    return _iso_text(value, value.tzinfo, value.fold)


def epoch_us(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC: an instant as one int."""
    return _epoch_us(moment, moment.tzinfo, moment.fold)


def elapsed_us(start: datetime, end: datetime) -> int:
    """Microseconds from ``start`` to ``end`` measured on the UTC time line."""
    return epoch_us(end) - epoch_us(start)


MILLISECOND = timedelta(milliseconds=1)


def milli_ticks_column(values: list[datetime]) -> list[int]:
    """Whole milliseconds since the epoch of each instant (a ``DateTime64(3)`` column's values).

    Each object is converted once: a batch's rows share their timestamps. Compiled with the
    rules, for the column encoders (``store.clickhouse``).
    """
    by_object: dict[int, int] = {}  # ``values`` holds every object, so no id is reused
    column: list[int] = []
    for value in values:
        key = id(value)
        ticks = by_object.get(key)
        if ticks is None:
            ticks = by_object[key] = (value - EPOCH) // MILLISECOND
        column.append(ticks)
    return column


# Both are remembered: a zone-aware offset costs about a microsecond each time, and a fleet's
# readings share their quarter-hour stamps (parse_ts hands out the same objects). Equal
# datetimes in different zones or folds render differently, so those are part of the key.
@lru_cache(maxsize=8192)
def _iso_text(value: datetime, zone: tzinfo | None, fold: int) -> str:
    return value.isoformat()


@lru_cache(maxsize=8192)
def _epoch_us(moment: datetime, zone: tzinfo | None, fold: int) -> int:
    return (moment - EPOCH) // MICROSECOND


@lru_cache(maxsize=4096)
def local_midnight(day: date, zone: tzinfo) -> datetime:
    """00:00 local time at the start of ``day``.

    Remembered: every account's open day ends at the same midnight, and one object shared
    by a city's accounts is 48 bytes less for each of them.
    """
    return datetime.combine(day, time(0), tzinfo=zone)


def next_midnight(moment: datetime) -> datetime:
    """The first local midnight strictly after ``moment``."""
    return local_midnight(moment.date() + timedelta(days=1), moment.tzinfo or LOCAL_ZONE)
