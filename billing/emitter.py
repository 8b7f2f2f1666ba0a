"""Collecting what the rules emit for one message: rows, topic messages and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.clock import ts_text
from billing.outputs import DLQ, Output, Row, ScaledRow, ScaledRows, TopicMessage, json_text


class Emitter:
    """Collects the outputs of one processed message, in processing order.

    One is made per message, so it is a plain class compiled with the rules (its methods
    are native calls from them) rather than a dataclass (billing/__init__.py).
    """

    outputs: list[Output]
    scaled_rows: dict[str, list[tuple[Any, ...]]] | None

    def __init__(self, scaled_rows: dict[str, list[tuple[Any, ...]]] | None = None) -> None:
        self.outputs = []
        self.scaled_rows = scaled_rows

    def row(self, table: str, **values: Any) -> None:
        """Add an analytics row."""
        self.outputs.append(Row(table, values))

    def add(self, output: Output) -> None:
        """Add an output built already."""
        self.outputs.append(output)

    def scaled(self, table: str, values: tuple[Any, ...]) -> None:
        """Add a row of a ``SCALED_COLUMNS`` table: its values, each decimal a scaled int.

        A `ScaledRow` among the outputs; with ``scaled_rows`` (a batch's, from
        ``billing.engine.apply_all``), the values go there, per table, and no row is made.
        """
        tables = self.scaled_rows
        if tables is None:
            self.outputs.append(ScaledRow(table, values))
            return
        rows = tables.get(table)
        if rows is None:
            rows = tables[table] = []
        rows.append(values)

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


def rows_by_table(rows: list[Row]) -> dict[str, tuple[list[tuple[Any, ...]], list[Row]]]:
    """A batch's rows grouped by table, in order: the scaled rows' values, the others.

    Here, compiled with the rules (``billing.outputs`` is not): the column encoders
    (``store.clickhouse.encode_built``) call it for every row a replay or live billing makes.
    A `ScaledRows` adds its tables' values as they are.
    """
    tables: dict[str, tuple[list[tuple[Any, ...]], list[Row]]] = {}
    for row in rows:
        if type(row) is ScaledRows:
            for name, scaled in row.tables.items():
                into = tables.get(name)
                if into is None:
                    into = tables[name] = ([], [])
                into[0].extend(scaled)
            continue
        same = tables.get(row.table)
        if same is None:
            same = tables[row.table] = ([], [])
        if type(row) is ScaledRow:
            same[0].append(row.scaled)
        else:
            same[1].append(row)
    return tables
