"""The lines of an example input set, and what is known about them.

:class:`Output` collects account and payment lines (few enough to sort in memory), records which
accounts play which scenario, and counts the deliberate bad lines by topic and expected reason.
Reading lines are not kept here: they stream straight to the file.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from simulate.wallet import iso

Line = tuple[int, int, int, str]
"""A reading line with its merge key: (position ts, stream number, seq in stream, text)."""
TOPICS = ("accounts", "payments", "readings")


class Output:
    """Account and payment lines as (ts, seq, line), facts per scenario, bad lines by reason."""

    def __init__(self) -> None:
        self.accounts: list[tuple[int, int, str]] = []
        self.payments: list[tuple[int, int, str]] = []
        self.facts: dict[str, dict[str, None]] = {}
        self.bad: dict[str, Counter[str]] = {name: Counter() for name in TOPICS}
        self.non_json: Counter[str] = Counter()
        self.topups: list[tuple[int, dict[str, Any]]] = []
        self.channels: set[str] = set()
        self._seq = 0
        self._iso: dict[int, str] = {}

    def ts(self, t: int) -> str:
        """ISO text of epoch second ``t`` (cached: grid times repeat across meters)."""
        text = self._iso.get(t)
        if text is None:
            text = self._iso[t] = iso(t)
        return text

    def _add(self, target: list[tuple[int, int, str]], t: int, line: str) -> None:
        self._seq += 1
        target.append((t, self._seq, line))

    def account(self, t: int, payload: dict[str, Any], bad: str = "") -> None:
        """Record an account event line at position ``t``."""
        self._add(self.accounts, t, dumps(payload))
        if bad:
            self.bad["accounts"][bad] += 1

    def payment(self, t: int, payload: dict[str, Any], bad: str = "") -> None:
        """Record a payment line at position ``t``."""
        self._add(self.payments, t, dumps(payload))
        if bad:
            self.bad["payments"][bad] += 1
        elif payload.get("type") == "topup":
            self.topups.append((t, payload))

    def raw(self, topic: str, t: int, line: str, bad: str) -> None:
        """Record a deliberately malformed account or payment line."""
        self._add(self.accounts if topic == "accounts" else self.payments, t, line + "\n")
        self.bad[topic][bad] += 1

    def fact(self, scenario: str, account_id: str) -> None:
        """Note that ``account_id`` plays ``scenario``."""
        self.facts.setdefault(scenario, {})[account_id] = None


def dumps(payload: dict[str, Any]) -> str:
    """One JSON line, UTF-8 text kept readable."""
    return json.dumps(payload, ensure_ascii=False) + "\n"


def fen_of(text: object) -> int:
    """Parse a 2-decimal money string into fen."""
    return int(str(text).replace(".", ""))


def energy_text(wh: int, decimals: int) -> str:
    """A register in Wh as kWh text with 2 or 3 decimals (floored to the resolution)."""
    if decimals == 3:
        return f"{wh // 1000}.{wh % 1000:03d}"
    return f"{wh // 1000}.{wh % 1000 // 10:02d}"
