"""Notification texts (SPEC S16.1): one template file per type and locale, filled with ``data``.

Templates live in ``notify/templates/<locale>/<type>.txt``; ``${name}`` is a value, and a
``[[…]]`` part is kept only when every value it names is present (``days_left`` is optional,
a top-up without a rebate says nothing about one). Money is shown with two decimals, dates
and times in the utility's local zone.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from config.notify import TYPES
from notify.segments import SmsSize, sms_size

TEMPLATES = Path(__file__).parent / "templates"
LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"
MONEY_FIELDS = frozenset(
    {
        "available",
        "threshold",
        "overdraft_limit",
        "amount",
        "rebate",
        "balance",
        "refund",
        "owed",
        "charge",
        "closing_balance",
    }
)
_OPTIONAL = re.compile(r"\[\[(.*?)\]\]", re.S)
_VALUE = re.compile(r"\$\{(\w+)\}")
_MONTHS_EN = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class TemplateError(ValueError):
    """A notification that no template can render (unknown type, a required value missing)."""


@dataclass(frozen=True)
class Rendered:
    """A rendered notification: the locale used, subject (email), text and its SMS size."""

    locale: str
    subject: str
    text: str
    size: SmsSize


def locale_of(requested: object) -> str:
    """The template locale for an account's locale (``en-US`` → ``en``; unknown → zh-CN)."""
    text = str(requested or "")
    if text in LOCALES:
        return text
    language = text.split("-", 1)[0].lower()
    return next((loc for loc in LOCALES if loc.split("-", 1)[0] == language), DEFAULT_LOCALE)


@lru_cache(maxsize=None)
def template(locale: str, kind: str) -> str:
    """The template text of a type in a locale (read once)."""
    if kind not in TYPES:
        raise TemplateError(f"no template for notification type {kind!r}")
    return (TEMPLATES / locale / f"{kind}.txt").read_text(encoding="utf-8").strip()


@lru_cache(maxsize=None)
def subjects(locale: str) -> dict[str, str]:
    """Email subjects by type in a locale."""
    return tomllib.loads((TEMPLATES / locale / "subjects.toml").read_text(encoding="utf-8"))


def render(
    notification: Mapping[str, Any], signature: str, zone: ZoneInfo, locale: str | None = None
) -> Rendered:
    """Render a notification ``{event_id, type, account_id, ts, locale, data}`` as text."""
    kind = str(notification.get("type"))
    chosen = locale_of(locale or notification.get("locale"))
    values = display_values(notification, chosen, zone)
    values["signature"] = signature
    text = fill(template(chosen, kind), values)
    return Rendered(chosen, subjects(chosen).get(kind, kind), text, sms_size(text))


def fill(text: str, values: Mapping[str, str]) -> str:
    """Substitute ``${name}``; drop ``[[…]]`` parts naming an absent value; fail on others."""

    def optional(match: re.Match[str]) -> str:
        names = _VALUE.findall(match.group(1))
        return match.group(1) if all(values.get(n) for n in names) else ""

    def required(match: re.Match[str]) -> str:
        name = match.group(1)
        if not values.get(name):
            raise TemplateError(f"template needs {name!r}, which the notification lacks")
        return values[name]

    return _VALUE.sub(required, _OPTIONAL.sub(optional, text))


def display_values(notification: Mapping[str, Any], locale: str, zone: ZoneInfo) -> dict[str, str]:
    """The values a template may name: ``data`` fields shown for people, plus derived ones.

    Money gets two decimals; ``debt`` is the positive amount owed when ``available`` is
    negative; zero rebates and points are left out; times and months are local.
    """
    data = notification.get("data") or {}
    values = {"account_id": str(notification.get("account_id", ""))}
    for name, raw in data.items():
        if raw is None:
            continue
        values[name] = money(raw) if name in MONEY_FIELDS else str(raw)
    if "available" in data:
        available = _decimal(data["available"])
        values["debt"] = money(max(-available, Decimal(0)))
    for name in ("rebate", "points"):
        if name in values and _decimal(data[name]) == 0:
            del values[name]
    if data.get("scheduled_for"):
        values["scheduled_for"] = _when(str(data["scheduled_for"]), locale, zone)
    if data.get("expires_on"):
        values["expires_on"] = _day(date.fromisoformat(str(data["expires_on"])[:10]), locale)
    if data.get("month"):
        year, month = (int(p) for p in str(data["month"])[:7].split("-"))
        values["month"] = f"{month}月" if locale == "zh-CN" else f"{_MONTHS_EN[month - 1]} {year}"
    return values


def money(value: object) -> str:
    """Yuan with two decimals, half-up (``12.3`` → ``12.30``); −0.00 shows as 0.00."""
    amount = _decimal(value).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return str(amount + 0)


def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as err:
        raise TemplateError(f"not a decimal: {value!r}") from err


def _when(text: str, locale: str, zone: ZoneInfo) -> str:
    local = datetime.fromisoformat(text).astimezone(zone)
    if locale == "zh-CN":
        return f"{local.month}月{local.day}日{local:%H:%M}"
    return f"{local.day} {_MONTHS_EN[local.month - 1]} {local:%H:%M}"


def _day(day: date, locale: str) -> str:
    if locale == "zh-CN":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"
