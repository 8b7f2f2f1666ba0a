"""Deterministic, realistic example input sets for ``wattpay replay`` (SPEC S2, S11).

``write_example`` plans a small town of prepaid households (:mod:`simulate.scenarios`), plays each
one out against real load profiles (:mod:`simulate.household_sim`), sprinkles in bad input
(:mod:`simulate.badlines`) and writes ``accounts.jsonl``, ``payments.jsonl`` and
``readings.jsonl``. Readings are streamed: every premises is a generator, and a merge puts
their lines in timestamp order a quarter hour at a time, so a million-line set never sits in
memory.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

from billing.rules import BillingRules
from simulate.badlines import (
    add_bad_events,
    add_bad_payments,
    plan_reading_faults,
    stray_reading_lines,
)
from simulate.example_output import TOPICS, Line, Output
from simulate.household_sim import PremisesRun, choose_cut_opening
from simulate.scenarios import CUT_ROLES, default_start, epoch, plan_town
from simulate.wallet import DAY, DEFAULT_RULES, WalletRules

_SLOT = 900


def write_example(
    out_dir: Path,
    *,
    households: int,
    days: int,
    seed: int,
    start: date | None = None,
    rules: BillingRules | None = None,
) -> dict[str, Any]:
    """Write an example input set to ``out_dir`` and return a summary of what is in it.

    The same (households, days, seed, start) always gives byte-identical files. ``start``
    defaults to the first Monday of a month of 2026 picked by the seed; local time is
    Asia/Shanghai and every timestamp carries ``+08:00``. Households pay, get rebates and
    get cut off by ``rules`` (the default billing rules unless given).
    """
    if households < 1 or days < 1:
        raise ValueError("households and days must be at least 1")
    start = start or default_start(seed)
    day0 = epoch(start)
    end = day0 + days * DAY
    premises = plan_town(households, days, seed, start)
    money = DEFAULT_RULES if rules is None else WalletRules.of(rules)
    rng = random.Random(f"wattpay-example-bad:{seed}:{households}:{days}")
    volume = households * days * 96
    plan_reading_faults(premises, rng, day0, end, extra=volume // 40_000)
    for prem in premises:
        if prem.tenancies[0].role in CUT_ROLES:
            choose_cut_opening(prem, end, random.Random(f"{seed}:{prem.index}:opening"), money)
    out = Output()
    streams = [PremisesRun(prem, out, end, money=money).lines() for prem in premises]
    streams.append(iter(stray_reading_lines(premises, out, rng, day0, end, volume // 60_000)))
    out_dir.mkdir(parents=True, exist_ok=True)
    readings = _write_lines(out_dir / "readings.jsonl", merge_by_slot(streams, day0, end))
    add_bad_events(out, rng, day0, end, households)
    add_bad_payments(out, rng, day0, end, households, extra=households // 40)
    counts = {
        "accounts": _write_sorted(out_dir / "accounts.jsonl", out.accounts),
        "payments": _write_sorted(out_dir / "payments.jsonl", out.payments),
        "readings": readings,
    }
    return _summary(out, counts, households=households, days=days, seed=seed, start=start)


def merge_by_slot(streams: list[Iterator[Line]], start: int, end: int) -> Iterator[list[str]]:
    """Merge streams of ``(ts, stream, seq, line)`` into chunks of lines in that key order.

    Equivalent to ``heapq.merge`` for streams numbered in list order, but works a quarter hour
    at a time: almost every meter reports once per quarter hour, so each chunk is gathered
    in stream order and a stable sort on ts alone finishes it.
    """
    heads = [next(stream, None) for stream in streams]
    bound = start + _SLOT
    while True:
        chunk: list[Line] = []
        for i, stream in enumerate(streams):
            item = heads[i]
            while item is not None and item[0] < bound:
                chunk.append(item)
                item = next(stream, None)
            heads[i] = item
        chunk.sort(key=itemgetter(0))
        yield [item[3] for item in chunk]
        if bound > end and all(head is None for head in heads):
            return
        bound += _SLOT


def _write_lines(path: Path, chunks: Iterator[list[str]]) -> int:
    """Write chunks of lines to ``path``; return how many lines were written."""
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for chunk in chunks:
            fh.write("".join(chunk))
            count += len(chunk)
    return count


def _write_sorted(path: Path, lines: list[tuple[int, int, str]]) -> int:
    """Write (ts, seq, line) entries in timestamp order (creation order on ties)."""
    lines.sort(key=lambda entry: (entry[0], entry[1]))
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(entry[2] for entry in lines))
    return len(lines)


def _summary(
    out: Output, counts: dict[str, int], *, households: int, days: int, seed: int, start: date
) -> dict[str, Any]:
    """Return the JSON-ready summary of a written set."""
    scenarios = {name: sorted(ids) for name, ids in sorted(out.facts.items())}
    return {
        "households": households,
        "days": days,
        "seed": seed,
        "start": start.isoformat(),
        "end": (start + timedelta(days=days)).isoformat(),
        "timezone": "Asia/Shanghai",
        "lines": counts,
        "bad_lines": {name: dict(sorted(out.bad[name].items())) for name in TOPICS},
        "non_json_lines": {name: out.non_json[name] for name in TOPICS},
        "households_by_scenario": {name: len(ids) for name, ids in scenarios.items()},
        "scenarios": scenarios,
    }
