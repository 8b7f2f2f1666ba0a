"""What the billing core emits: analytics rows (S8) and topic messages (S7), with stable ids."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from billing.clock import ts_text
from billing.numbers import COST_PLACES, money_text

NOTIFICATIONS = "notifications"
METER_COMMANDS = "meter-commands"
PAYMENT_REQUESTS = "payment-requests"
DLQ = "dlq"


@dataclass(slots=True)  # not frozen: several per message, and frozen ones cost 3× to build
class Row:
    """One row for an analytics table."""

    table: str
    values: dict[str, Any]


SCALED_COLUMNS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "intervals": (
        ("meter_id", None),
        ("account_id", None),
        ("start", None),
        ("end", None),
        ("kwh", 3),  # 0.001 kWh
        ("period", None),
        ("tier", None),
        ("price", 4),  # 10^-4 yuan/kWh
        ("cost", COST_PLACES),  # 10^-7 yuan
    ),
    "readings": (
        ("meter_id", None),
        ("account_id", None),
        ("ts", None),
        ("energy_kwh", 3),
        ("source", None),
    ),
}
"""The tables whose rows the core builds per reading, as a `ScaledRow`: every column in
insert order with the decimal places of its ints (None: a value kept as it is)."""


class ScaledRow(Row):
    """A row of a `SCALED_COLUMNS` table kept as the core's integers until its values are asked.

    ``scaled`` holds the columns in insert order, each decimal as an int at its column's
    scale. ``values`` gives the same row as every other row does (exact ``Decimal``
    values), so any reader of rows gets it right; the column encoders send ``scaled`` as it
    is and build no ``Decimal`` at all.
    """

    __slots__ = ("scaled",)

    scaled: tuple[Any, ...]

    def __init__(self, table: str, scaled: tuple[Any, ...]) -> None:
        self.table = table
        self.scaled = scaled

    @property  # type: ignore[override]
    def values(self) -> dict[str, Any]:  # type: ignore[override]
        """The row with exact decimals at the columns' scales, as `Emitter.row` would hold it."""
        return {
            name: value if places is None else Decimal(value).scaleb(-places)
            for (name, places), value in zip(SCALED_COLUMNS[self.table], self.scaled, strict=True)
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self.table == other.table and self.values == other.values

    __hash__ = None  # type: ignore[assignment]  # like Row: mutable, compared by value

    def __repr__(self) -> str:
        return f"ScaledRow({self.table!r}, {self.values!r})"

    def __reduce__(self) -> tuple[type[ScaledRow], tuple[object, ...]]:
        return ScaledRow, (self.table, self.scaled)


class ScaledRows(Row):
    """A batch's `ScaledRow`s as their ``scaled`` values per table, in the order they came.

    What ``billing.engine.apply_all`` hands on with ``scaled_rows``, for the column
    encoders alone (``store.clickhouse.encode_built``): no row object per reading. It is a
    batch, not a row: asking its ``values`` is a mistake and raises.
    """

    __slots__ = ("tables",)

    tables: dict[str, list[tuple[Any, ...]]]

    def __init__(self, tables: dict[str, list[tuple[Any, ...]]]) -> None:
        self.table = ""
        self.tables = tables

    @property  # type: ignore[override]
    def values(self) -> dict[str, Any]:  # type: ignore[override]
        """Not a row: see ``tables``."""
        raise TypeError("a batch of scaled rows has no values of its own: read its tables")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScaledRows):
            return NotImplemented
        return self.tables == other.tables

    __hash__ = None  # type: ignore[assignment]


@dataclass(slots=True)  # not frozen, like Row
class TopicMessage:
    """One message for an output topic (logical name, without the configured prefix)."""

    topic: str
    key: str
    value: dict[str, Any]


Output = Row | TopicMessage


def json_text(data: dict[str, Any]) -> str:
    """Compact, key-ordered JSON of a message payload (decimals as strings)."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=json_default)


def json_default(value: object) -> object:
    """JSON for decimals (as strings), timestamps (ISO with offset) and days."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return ts_text(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def money(value: Decimal) -> str:
    """Money as a message field: a 2-decimal string."""
    return money_text(value)


def account_event_row(
    *,
    kind: str,
    account_id: str,
    ts: datetime,
    meter_id: str,
    plan: str,
    fields: dict[str, Any],
) -> Row:
    """The ``account_events`` row of an applied account event (S8), with a stable id.

    ``payload`` is the validated event as JSON; the id is the event's kind and ts plus a
    digest of that payload, so a replay or recovery writes the same id again.
    """
    payload = json_text({"type": kind, "account_id": account_id, "ts": ts, **fields})
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
    return Row(
        "account_events",
        {
            "event_id": f"{account_id}:{kind}@{ts_text(ts)}:{digest}",
            "account_id": account_id,
            "ts": ts,
            "type": kind,
            "meter_id": meter_id,
            "plan": plan,
            "payload": payload,
        },
    )
