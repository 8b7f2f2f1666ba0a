"""Compare a replay's results with a conformance set's expected.json (see its README)."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from billing.clock import parse_ts


def _norm(value: Any) -> Any:
    """Decimals compare as numbers, timestamps as instants, dicts recursively."""
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    if isinstance(value, str):
        if len(value) >= 19 and value[10:11] == "T":
            try:
                return parse_ts(value)
            except ValueError:
                return value
        try:
            return (
                Decimal(value).normalize()
                if any(c.isdigit() for c in value)
                and value.replace(".", "", 1).lstrip("-").isdigit()
                else value
            )
        except InvalidOperation:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value).normalize()
    return value


def _project(rows: list[dict[str, Any]], fields: list[str]) -> Counter:
    return Counter(tuple((f, _norm(r.get(f))) for f in fields) for r in rows)


FIELDS = {
    "daily_usage": [
        "account_id",
        "day",
        "kwh",
        "kwh_peak",
        "kwh_valley",
        "kwh_tier1",
        "kwh_tier2",
        "kwh_tier3",
        "charge",
        "ytd_kwh",
        "closing_balance",
    ],
    "ledger": ["account_id", "ts", "kind", "amount", "balance_after", "ref"],
    "points_ledger": ["account_id", "ts", "kind", "points", "balance_after"],
    "notifications": ["type", "account_id", "ts", "data"],
    "commands": ["meter_id", "account_id", "action", "ts"],
    "payment_requests": ["account_id", "amount", "ts"],
    "rejected": ["topic", "reason"],
    "accounts": [
        "account_id",
        "status",
        "balance",
        "available",
        "overdraft_limit",
        "points",
        "ytd_kwh",
        "opening_balance",
        "plan",
    ],
}
"""Compared fields; ``tier_bounds`` of expected ``accounts`` is not a column of the table (S8)."""


def differences(
    expected: dict[str, list[dict[str, Any]]], actual: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Per section: rows missing from actual and rows actual has in excess (as multisets)."""
    report: dict[str, Any] = {}
    for section, fields in FIELDS.items():
        want = _project(expected.get(section, []), fields)
        got = _project(actual.get(section, []), fields)
        missing, extra = want - got, got - want
        if missing or extra:
            report[section] = {
                "missing": [dict(k) for k in missing.elements()],
                "extra": [dict(k) for k in extra.elements()],
            }
    return report


def load_expected(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The expected results of a conformance set."""
    return json.loads((directory / "expected.json").read_text(encoding="utf-8"))
