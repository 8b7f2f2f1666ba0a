"""Points still held, by the year they were earned, and when each lot expires (SPEC S6, S14.18)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from billing.clock import LOCAL_ZONE

EARNED = ("basic", "daily")


def _year_of(entry: dict[str, Any]) -> int:
    """The year an earning belongs to: a day's points belong to the day they close (ts − 1 µs)."""
    moment = entry["ts"].astimezone(LOCAL_ZONE)
    if entry["kind"] == "daily":
        moment -= timedelta(microseconds=1)
    return moment.year


def point_lots(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lots left after replaying the points ledger in order: oldest spent first, expiry by year.

    Each lot is ``{year, points, expires_on}``; points earned in year Y expire when Dec 31 of
    Y+1 closes.
    """
    lots: dict[int, int] = {}
    for entry in entries:
        amount = int(entry["points"])
        if entry["kind"] in EARNED and amount > 0:
            year = _year_of(entry)
            lots[year] = lots.get(year, 0) + amount
        elif entry["kind"] == "expiry":
            closing_year = (entry["ts"].astimezone(LOCAL_ZONE) - timedelta(microseconds=1)).year
            for year in [y for y in lots if y <= closing_year - 1]:
                del lots[year]
        elif amount < 0:
            left = -amount
            for year in sorted(lots):
                taken = min(left, lots[year])
                lots[year] -= taken
                left -= taken
                if not lots[year]:
                    del lots[year]
                if not left:
                    break
    return [
        {"year": y, "points": p, "expires_on": date(y + 1, 12, 31)}
        for y, p in sorted(lots.items())
        if p > 0
    ]
