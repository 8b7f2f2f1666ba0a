"""Engine floors: what parsing, Bytewax and polars cost per reading before any billing rule runs.

Usage: .venv/bin/python bench/floors.py [--households 150] [--days 20] [--seed 5]
       [--rounds 2] [--batch 1000]

Writes the example set once into bench/data/ (ignored by git), holds the lines of its
readings.jsonl in memory as bytes (dropping the hostile lines) and measures, best of
``--rounds`` each, in this same run over the same lines so the ratios are meaningful on a
shared, noisy machine:

- **bare:** ``json.loads`` of each line;
- **bytewax item:** ``TestingSource`` of the lines → ``map(json.loads)`` → ``key_on(meter)``
  → ``stateful_map`` summing ``Decimal`` register deltas per meter → counting sink
  (one item per reading);
- **bytewax batch:** ``TestingSource`` of lists of ``--batch`` lines → ``key_on`` a constant
  key → one ``stateful_map`` call per list that parses and sums per meter in a dict;
- **polars:** ``read_ndjson`` of the same bytes → sort by meter, ts → per-meter ``diff`` of
  the register as ``Decimal`` → per-meter, per-day ``sum``;
- **billing core:** ``billing.sequential.run_sequential`` over the envelopes of the whole set
  (parsed, merged and held in memory first), per reading line; skipped if it cannot be
  imported.

Prints a JSON dict of the figures, then Markdown table rows for BENCHMARKS.md. Other
benchmarks can import :func:`floor_rates` (with the repository root on ``sys.path``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bytewax.operators as op
import polars as pl
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulate.example import write_example  # noqa: E402

ZERO = Decimal(0)
# A plain register numeral with at most three decimals: Decimal and pl.Decimal(18, 3) then
# read exactly the same value, so every floor sums the same numbers.
ENERGY = re.compile(r"\d{1,15}(\.\d{1,3})?")
POLARS_SCHEMA = {"meter_id": pl.String, "ts": pl.String, "energy_kwh": pl.String}
FLOORS = ("bare", "bytewax_item", "bytewax_batch", "polars")


def clean_lines(lines: list[bytes]) -> list[bytes]:
    """The lines that are JSON objects with a meter id, a timestamp and a plain register."""
    kept = []
    for line in lines:
        try:
            reading = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(reading, dict)
            and isinstance(reading.get("meter_id"), str)
            and isinstance(reading.get("ts"), str)
            and isinstance(reading.get("energy_kwh"), str)
            and ENERGY.fullmatch(reading["energy_kwh"])
        ):
            kept.append(line)
    return kept


class _CountingPartition(StatelessSinkPartition[tuple[str, Any]]):
    def __init__(self, sink: CountingSink) -> None:
        self.sink = sink

    def write_batch(self, items: list[tuple[str, Any]]) -> None:
        self.sink.items += len(items)
        self.sink.last.update(items)


class CountingSink(DynamicSink[tuple[str, Any]]):
    """Counts the (key, value) items written to it and keeps the last value of each key."""

    def __init__(self) -> None:
        self.items = 0
        self.last: dict[str, Any] = {}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition(self)


def _add_delta(
    state: tuple[Decimal, Decimal] | None, reading: dict[str, Any]
) -> tuple[tuple[Decimal, Decimal], Decimal]:
    """(previous register, sum of deltas) of one meter, after one more reading."""
    energy = Decimal(reading["energy_kwh"])
    if state is None:
        return (energy, ZERO), ZERO
    previous, total = state
    total += energy - previous
    return (energy, total), total


def _add_batch(
    state: tuple[int, dict[str, tuple[Decimal, Decimal]]] | None, batch: list[bytes]
) -> tuple[tuple[int, dict[str, tuple[Decimal, Decimal]]], tuple[int, dict]]:
    """Parse a list of lines and add each register delta to its meter's sum."""
    count, meters = state if state is not None else (0, {})
    loads = json.loads
    for line in batch:
        reading = loads(line)
        meter = reading["meter_id"]
        energy = Decimal(reading["energy_kwh"])
        held = meters.get(meter)
        if held is None:
            meters[meter] = (energy, ZERO)
        else:
            meters[meter] = (energy, held[1] + energy - held[0])
    count += len(batch)
    return (count, meters), (count, meters)


def _reading_key(reading: dict[str, Any]) -> str:
    return reading["meter_id"]


def _all_key(_batch: list[bytes]) -> str:
    return "all"


def bare_pass(lines: list[bytes]) -> Decimal:
    loads = json.loads
    for line in lines:
        loads(line)
    return ZERO


def item_flow_pass(lines: list[bytes]) -> Decimal:
    """One Bytewax item per reading; return the sum of all register deltas."""
    sink = CountingSink()
    flow = Dataflow("floor_item")
    parsed = op.map("parse", op.input("lines", flow, TestingSource(lines)), json.loads)
    keyed = op.key_on("meter", parsed, _reading_key)
    op.output("count", op.stateful_map("deltas", keyed, _add_delta), sink)
    run_main(flow)
    if sink.items != len(lines):
        raise RuntimeError(f"item flow wrote {sink.items} items for {len(lines)} lines")
    return sum(sink.last.values(), ZERO)


def batch_flow_pass(lines: list[bytes], batch: int) -> Decimal:
    """One Bytewax item per list of ``batch`` lines; return the sum of all register deltas."""
    batches = [lines[i : i + batch] for i in range(0, len(lines), batch)]
    sink = CountingSink()
    flow = Dataflow("floor_batch")
    keyed = op.key_on("all", op.input("batches", flow, TestingSource(batches)), _all_key)
    op.output("count", op.stateful_map("deltas", keyed, _add_batch), sink)
    run_main(flow)
    count, meters = sink.last.get("all", (0, {}))
    if sink.items != len(batches) or count != len(lines):
        raise RuntimeError(
            f"batch flow wrote {sink.items} items for {len(batches)} batches, "
            f"parsed {count} of {len(lines)} lines"
        )
    return sum((total for _, total in meters.values()), ZERO)


def polars_pass(data: bytes, readings: int) -> Decimal:
    """``read_ndjson`` → per-meter diff → per-meter, per-day sum; return the grand total."""
    frame = pl.read_ndjson(io.BytesIO(data), schema=POLARS_SCHEMA)
    days = (
        frame.with_columns(
            pl.col("energy_kwh").cast(pl.Decimal(18, 3)).alias("energy"),
            pl.col("ts").str.slice(0, 10).alias("day"),
        )
        .sort("meter_id", "ts", maintain_order=True)
        .with_columns(pl.col("energy").diff().over("meter_id").fill_null(0).alias("delta"))
        .group_by("meter_id", "day")
        .agg(pl.col("delta").sum())
    )
    if frame.height != readings:
        raise RuntimeError(f"polars read {frame.height} rows of {readings} lines")
    return Decimal(str(days["delta"].sum()))


def _reference_totals(lines: list[bytes]) -> tuple[Decimal, Decimal]:
    """Sum of register deltas per meter in file order and in (meter, ts) order."""
    readings = [json.loads(line) for line in lines]

    def total(ordered: list[dict[str, Any]]) -> Decimal:
        previous: dict[str, Decimal] = {}
        result = ZERO
        for reading in ordered:
            energy = Decimal(reading["energy_kwh"])
            held = previous.get(reading["meter_id"])
            if held is not None:
                result += energy - held
            previous[reading["meter_id"]] = energy
        return result

    ordered = sorted(readings, key=lambda reading: (reading["meter_id"], reading["ts"]))
    return total(readings), total(ordered)


def floor_rates(lines: list[bytes], rounds: int, batch: int) -> dict[str, float]:
    """Readings/s of each floor over ``lines`` (hostile lines dropped first), best of ``rounds``.

    Keys: ``bare``, ``bytewax_item``, ``bytewax_batch``, ``polars``. The floors take turns
    within each round so they share the noise of the machine. Raises ``RuntimeError`` if a
    floor loses lines or sums the register deltas differently.
    """
    lines = clean_lines(lines)
    if not lines:
        raise ValueError("no usable reading lines")
    data = b"\n".join(lines) + b"\n"
    in_file_order, in_meter_order = _reference_totals(lines)
    passes: dict[str, tuple[Callable[[], Decimal], Decimal | None]] = {
        "bare": (lambda: bare_pass(lines), None),
        "bytewax_item": (lambda: item_flow_pass(lines), in_file_order),
        "bytewax_batch": (lambda: batch_flow_pass(lines, batch), in_file_order),
        "polars": (lambda: polars_pass(data, len(lines)), in_meter_order),
    }
    best = dict.fromkeys(FLOORS, float("inf"))
    for _ in range(max(1, rounds)):
        for name, (run, expected) in passes.items():
            started = time.perf_counter()
            total = run()
            best[name] = min(best[name], time.perf_counter() - started)
            if expected is not None and total != expected:
                raise RuntimeError(f"{name}: sum of deltas {total}, expected {expected}")
    return {name: len(lines) / seconds for name, seconds in best.items()}


def billing_core_rate(directory: Path, readings: int, rounds: int) -> float | None:
    """Reading lines/s of ``run_sequential`` over the whole set, best of ``rounds``."""
    try:
        from billing.rules import BillingRules
        from billing.sequential import run_sequential
        from pipelines.replay_files import merged_envelopes
    except ImportError as error:
        print(f"billing core: skipped ({error})", file=sys.stderr)
        return None
    envelopes = list(merged_envelopes(directory))
    best = float("inf")
    for _ in range(max(1, rounds)):
        started = time.perf_counter()
        for _output in run_sequential(envelopes, BillingRules()):
            pass
        best = min(best, time.perf_counter() - started)
    return readings / best


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--households", type=int, default=150)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000, help="lines per list (batch floor)")
    args = parser.parse_args()
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    data = ROOT / "bench" / "data" / f"h{args.households}-d{args.days}-s{args.seed}" / "input"
    if not (data / "readings.jsonl").exists():
        write_example(
            data, households=args.households, days=args.days, seed=args.seed, start=date(2026, 3, 2)
        )
    raw = (data / "readings.jsonl").read_bytes().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines = clean_lines(raw)
    rates = floor_rates(lines, args.rounds, args.batch)
    core = billing_core_rate(data, len(raw), args.rounds)
    bare = rates["bare"]
    figures: dict[str, Any] = {
        "reading_lines": len(raw),
        "readings": len(lines),
        "dropped": len(raw) - len(lines),
        "rounds": args.rounds,
        "batch": args.batch,
        **{f"{name}_per_s": round(rate) for name, rate in rates.items()},
        **{f"{name}_x_bare": round(rate / bare, 4) for name, rate in rates.items()},
        "bytewax_item_overhead_us": round(1e6 / rates["bytewax_item"] - 1e6 / bare, 2),
        "bytewax_batch_overhead_us": round(1e6 / rates["bytewax_batch"] - 1e6 / bare, 3),
        "billing_core_per_s": None if core is None else round(core),
        "billing_core_us_per_reading": None if core is None else round(1e6 / core, 2),
        "billing_core_x_bare": None if core is None else round(core / bare, 4),
    }
    print(json.dumps(figures, indent=2))
    command = shlex.join(["python", *sys.argv])
    print()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.platform()} · "
        f"{os.cpu_count()} CPUs · `{command}` · {len(lines):,} readings, best of {args.rounds}"
    )
    print()
    bytewax = f"Bytewax {version('bytewax')}"
    rows = {
        "bare": "bare: `json.loads` of each line",
        "bytewax_item": f"{bytewax}, `TestingSource` of lines → `map(json.loads)` → "
        "`key_on(meter)` → `stateful_map` summing `Decimal` register deltas per meter "
        "(one item per reading)",
        "bytewax_batch": f"{bytewax}, `TestingSource` of **lists of {args.batch:,} lines** → "
        "one `stateful_map` call per list that parses and sums per meter in a dict",
        "polars": f"polars {pl.__version__}: `read_ndjson` → per-meter `diff` (`Decimal`) → "
        "per-day `sum`",
    }
    print("| what | readings/s | × bare |")
    print("|---|---|---|")
    for name, what in rows.items():
        print(f"| {what} | {_rate(rates[name])} | {rates[name] / bare:.2f} |")
    what = "wattpay billing core: `run_sequential` over the merged envelopes, per reading line"
    if core is None:
        print(f"| {what} | skipped | – |")
    else:
        print(f"| {what} | {_rate(core)} | {core / bare:.2f} |")


if __name__ == "__main__":
    main()
