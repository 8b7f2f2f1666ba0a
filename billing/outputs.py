"""What the billing core emits: analytics rows (S8) and topic messages (S7), with stable ids."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from billing.clock import ts_text
from billing.numbers import money_text

NOTIFICATIONS = "notifications"
METER_COMMANDS = "meter-commands"
PAYMENT_REQUESTS = "payment-requests"
DLQ = "dlq"


@dataclass(slots=True)  # not frozen: several per message, and frozen ones cost 3× to build
class Row:
    """One row for an analytics table."""

    table: str
    values: dict[str, Any]


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


@dataclass(slots=True)
class Emitter:
    """Collects the outputs of one processed message, in processing order."""

    outputs: list[Output] = field(default_factory=list)

    def row(self, table: str, **values: Any) -> None:
        """Add an analytics row."""
        self.outputs.append(Row(table, values))

    def message(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Add a topic message."""
        self.outputs.append(TopicMessage(topic, key, value))

    def event(
        self,
        topic: str,
        *,
        id_field: str,
        event_id: str,
        kind: str,
        account_id: str,
        meter_id: str,
        ts: datetime,
        key: str,
        value: dict[str, Any],
        data: dict[str, Any],
    ) -> None:
        """A topic message that is also recorded in the ``events`` table."""
        self.message(topic, key, {id_field: event_id, **value})
        self.row(
            "events",
            event_id=event_id,
            account_id=account_id,
            meter_id=meter_id,
            ts=ts,
            type=kind,
            data=json_text(data),
        )


def rejection(
    emitter: Emitter,
    *,
    topic: str,
    position: str,
    key: str,
    payload: str,
    payload_base64: bool,
    reason: str,
    detail: str,
    received_at: datetime,
) -> None:
    """Record a rejected input in the ``rejected`` table and on the DLQ.

    ``topic`` is the logical input topic (``readings``); the flow adds the configured prefix.
    ``payload`` is the input's text, or the base64 of its bytes when ``payload_base64``.
    """
    emitter.row(
        "rejected",
        rejection_id=position,
        topic=topic,
        key=key,
        payload=payload,
        payload_base64=int(payload_base64),
        reason=reason,
        detail=detail,
        received_at=received_at,
    )
    emitter.message(
        DLQ,
        key,
        {
            "rejection_id": position,
            "topic": topic,
            "key": key,
            "payload": payload,
            "payload_base64": payload_base64,
            "reason": reason,
            "detail": detail,
            "received_at": ts_text(received_at),
        },
    )


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
