"""What a batch of rows costs to cross processes: as `Row` objects or as columns per table.

Usage: .venv/bin/python bench/row_batches.py [--households 150] [--days 20] [--seed 5]
       [--envelopes 60000] [--batch 2000]

Bills the first ``--envelopes`` merged envelopes of a `wattpay example` set with the
sequential reference, cuts its rows into batches of ``--batch`` and measures, best of 3,
per reading line: encoding them as columns (``store.clickhouse.encode_built``), and a
pickle and unpickle of the batches as ``Row`` objects and as columns, with their sizes.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing.outputs import Row  # noqa: E402
from billing.rules import BillingRules  # noqa: E402
from billing.sequential import run_sequential  # noqa: E402
from pipelines.replay_files import merged_envelopes  # noqa: E402
from simulate.example import write_example  # noqa: E402
from store.clickhouse import encode_built  # noqa: E402


def best_us(action: Callable[[], object], readings: int) -> float:
    """The fastest of three runs of ``action``, in CPU µs per reading line."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best / readings * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--households", type=int, default=150)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--envelopes", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    data = ROOT / "bench" / "data" / f"h{args.households}-d{args.days}-s{args.seed}" / "input"
    if not (data / "readings.jsonl").exists():
        write_example(
            data, households=args.households, days=args.days, seed=args.seed, start=date(2026, 3, 2)
        )
    envelopes = list(itertools.islice(merged_envelopes(data), args.envelopes))
    readings = sum(1 for e in envelopes if e.topic == "readings")
    rows = [o for o in run_sequential(envelopes, BillingRules()) if isinstance(o, Row)]
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    columns = [encode_built(batch) for batch in batches]

    def encode() -> object:
        return [encode_built(batch) for batch in batches]

    def round_trip(items: list[object]) -> Callable[[], object]:
        return lambda: [pickle.loads(pickle.dumps(i, protocol=5)) for i in items]  # noqa: S301

    def size(items: list[object]) -> float:
        return sum(len(pickle.dumps(i, protocol=5)) for i in items) / readings

    print(f"{readings:,} reading lines, {len(rows) / readings:.2f} rows a reading")
    print("| per reading line | as `Row` objects | as columns |")
    print("|---|---|---|")
    print(f"| encode as columns (µs) | — | {best_us(encode, readings):.2f} |")
    row_trip = best_us(round_trip(batches), readings)  # type: ignore[arg-type]
    column_trip = best_us(round_trip(columns), readings)  # type: ignore[arg-type]
    print(f"| pickle + unpickle (µs) | {row_trip:.2f} | {column_trip:.2f} |")
    print(f"| pickled bytes | {size(batches):.0f} | {size(columns):.0f} |")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
