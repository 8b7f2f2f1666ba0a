"""A small replay harness for the billing core: outputs tagged with the input that caused them.

Times are written in local time (Asia/Shanghai) as ``2026-03-02T10:00``; the message builders
turn them into ISO-8601 strings with their offset, as the input files carry them.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing.clock import parse_ts
from billing.messages import Envelope
from billing.outputs import Output, Row, TopicMessage
from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.replay_files import RESULTS_FILE, has_command_results, merged_envelopes

RULES = BillingRules()


def ts(local: str) -> str:
    """``2026-03-02T10:00`` (local, Asia/Shanghai) as an ISO-8601 string with its offset."""
    return f"{local}:00+08:00" if len(local) == 16 else f"{local}+08:00"


def at(local: str) -> datetime:
    """``2026-03-02T10:00`` (local, Asia/Shanghai) as an aware datetime."""
    return parse_ts(ts(local))


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, datetime) and isinstance(actual, str):
        return parse_ts(actual) == expected
    if isinstance(expected, Decimal) and isinstance(actual, str):
        return Decimal(actual) == expected
    return actual == expected


def _matches(values: dict[str, Any], match: dict[str, Any]) -> bool:
    return all(_same(values.get(k), v) for k, v in match.items())


@dataclass
class Replay:
    """Every output of a run with the position of the input that caused it (None: end of input).

    The ``match`` keywords of :meth:`rows`, :meth:`positions` and :meth:`messages` compare field
    by field; a datetime or Decimal expected value also matches its text form.
    """

    outputs: list[tuple[str | None, Output]] = field(default_factory=list)
    inputs: list[Envelope] = field(default_factory=list)

    def _rows(self, table: str, match: dict[str, Any]) -> Iterator[tuple[str | None, Row]]:
        for p, o in self.outputs:
            if isinstance(o, Row) and o.table == table and _matches(o.values, match):
                yield p, o

    def rows(self, table: str, **match: Any) -> list[dict[str, Any]]:
        """The values of the rows written to ``table`` whose fields match ``match``."""
        return [o.values for _, o in self._rows(table, match)]

    def positions(self, table: str, **match: Any) -> list[str | None]:
        """The position of the input behind each row of ``table`` that matches ``match``."""
        return [p for p, _ in self._rows(table, match)]

    def messages(self, topic: str, **match: Any) -> list[dict[str, Any]]:
        """The values of the messages sent to ``topic`` whose fields match ``match``."""
        return [
            o.value
            for _, o in self.outputs
            if isinstance(o, TopicMessage) and o.topic == topic and _matches(o.value, match)
        ]

    def caused_by(self, position: str | None) -> list[Output]:
        """The outputs of the input at ``position`` (None: those of the end of input)."""
        return [o for p, o in self.outputs if p == position]

    def rows_caused_by(self, position: str | None, table: str) -> list[dict[str, Any]]:
        """The values of the rows written to ``table`` by the input at ``position``."""
        return [
            o.values for o in self.caused_by(position) if isinstance(o, Row) and o.table == table
        ]

    def by_position(self) -> dict[str | None, list[Output]]:
        """All outputs grouped by the position of the input that caused them."""
        grouped: dict[str | None, list[Output]] = defaultdict(list)
        for position, output in self.outputs:
            grouped[position].append(output)
        return grouped

    def raw(self, position: str) -> str:
        """The original text of the input at ``position``."""
        [envelope] = [e for e in self.inputs if e.position == position]
        return envelope.raw

    def notes(self, kind: str, account_id: str = "A1") -> list[dict[str, Any]]:
        """The notifications of type ``kind`` for ``account_id``."""
        return self.messages("notifications", type=kind, account_id=account_id)

    def commands(self, action: str | None = None) -> list[dict[str, Any]]:
        """The meter commands, or only those with ``action``."""
        found = self.messages("meter-commands")
        return [c for c in found if action is None or c["action"] == action]

    def final(self, account_id: str = "A1") -> dict[str, Any]:
        """The last `accounts` row written for ``account_id``."""
        return self.rows("accounts", account_id=account_id)[-1]


def run(envelopes: Iterable[Envelope], rules: BillingRules = RULES) -> Replay:
    """Run ``envelopes`` through ``run_sequential``, tagging each output with its cause."""
    result = Replay()
    current: list[str | None] = [None]

    def feed() -> Iterator[Envelope]:
        for envelope in envelopes:
            current[0] = envelope.position
            result.inputs.append(envelope)
            yield envelope
        current[0] = None

    for output in run_sequential(feed(), rules):
        result.outputs.append((current[0], output))
    return result


def replay(
    tmp_path: Path,
    *,
    accounts: Iterable[Any] = (),
    payments: Iterable[Any] = (),
    readings: Iterable[Any] = (),
    results: Iterable[Any] | None = None,
    rules: BillingRules = RULES,
) -> Replay:
    """Write the JSONL files (dicts or raw lines) and run them in S14.1 order.

    ``results`` (relay outcomes) writes the optional results file, even empty; as in
    ``wattpay replay``, its presence makes results the only confirmation of a cut (S14.16).
    """
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    files = [
        ("accounts.jsonl", accounts),
        ("payments.jsonl", payments),
        ("readings.jsonl", readings),
    ]
    if results is not None:
        files.append((RESULTS_FILE, results))
    for name, items in files:
        lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
        (directory / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    rules = replace(rules, command_results=has_command_results(directory))
    return run(merged_envelopes(directory), rules)


# --- input messages ---------------------------------------------------------------------------


def open_account(account_id: str, meter_id: str, plan: str, when: str, **extra: Any) -> dict:
    """An ``open`` account event; ``extra`` adds optional fields such as ``opening_balance``."""
    return {
        "type": "open",
        "account_id": account_id,
        "meter_id": meter_id,
        "plan": plan,
        "ts": ts(when),
        **extra,
    }


def reading(meter_id: str, when: str, kwh: str) -> dict:
    """A meter reading: the register ``kwh`` of ``meter_id`` at ``when``."""
    return {"meter_id": meter_id, "ts": ts(when), "energy_kwh": kwh}


def topup(
    payment_id: str,
    account_id: str,
    amount: str,
    when: str,
    channel: str = "app",
    **extra: Any,
) -> dict:
    """A ``topup`` payment; ``extra`` adds optional fields such as ``request_id``."""
    return {
        "type": "topup",
        "payment_id": payment_id,
        "account_id": account_id,
        "amount": amount,
        "channel": channel,
        "ts": ts(when),
        **extra,
    }


def redeem(payment_id: str, account_id: str, points: Any, when: str) -> dict:
    """A ``redeem`` payment of ``points`` (any JSON value, to test bad ones too)."""
    return {
        "type": "redeem",
        "payment_id": payment_id,
        "account_id": account_id,
        "points": points,
        "ts": ts(when),
    }


def event(kind: str, account_id: str, when: str, **extra: Any) -> dict:
    """An account event of type ``kind`` (``update``, ``close``, ``change_plan``, …)."""
    return {"type": kind, "account_id": account_id, "ts": ts(when), **extra}


def command_result(
    command_id: str, meter_id: str, when: str, *, ok: bool = True, error: str | None = None
) -> dict:
    """A relay outcome from the command executor (``error`` only when given)."""
    result: dict[str, Any] = {"command_id": command_id, "meter_id": meter_id, "ok": ok}
    result["ts"] = ts(when)
    if error is not None:
        result["error"] = error
    return result


def replace_meter(
    account_id: str,
    when: str,
    old_meter_id: str,
    old_final: str,
    new_meter_id: str,
    new_initial: str,
) -> dict:
    """A ``replace_meter`` event: the old meter's final and the new meter's initial register."""
    return event(
        "replace_meter",
        account_id,
        when,
        old_meter_id=old_meter_id,
        old_final_kwh=old_final,
        new_meter_id=new_meter_id,
        new_initial_kwh=new_initial,
    )
