"""Batch jobs: `wattpay reconcile` and `wattpay bills` on bench/replay.py's example set.

Usage: .venv/bin/python bench/jobs.py [--households 400] [--days 30]
Replays the set into a fresh embedded ClickHouse (the stream's throughput, the baseline of
this same run), then times `wattpay reconcile` over every accepted reading and
`wattpay bills` for the month, with and without the PDF documents. Prints Markdown rows
for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from replay import replay_pass  # noqa: E402

from simulate.example import write_example  # noqa: E402

WATTPAY = [sys.executable, "-m", "wattpay.cli"]


def timed(args: list[str]) -> tuple[float, str, str]:
    started = time.perf_counter()
    done = subprocess.run([*WATTPAY, *args], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{args[0]} failed:\n{done.stderr}")
    return elapsed, done.stdout, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--households", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--month", default="2026-03")
    args = parser.parse_args()
    data = ROOT / "bench" / "data" / f"h{args.households}-d{args.days}-s{args.seed}"
    inputs = data / "input"
    if not (inputs / "readings.jsonl").exists():
        write_example(
            inputs,
            households=args.households,
            days=args.days,
            seed=args.seed,
            start=date(2026, 3, 2),
        )
    replay = replay_pass(inputs, 1)
    dsn = f"chdb://{data / 'clickhouse'}"
    reconcile, _, err = timed(["reconcile", "--clickhouse", dsn])
    summary = json.loads(err.strip().splitlines()[-1])
    readings = summary["readings"]
    out = data / "jobs"
    shutil.rmtree(out, ignore_errors=True)
    rows_only, stdout, _ = timed(
        [
            "bills",
            "--month",
            args.month,
            "--clickhouse",
            dsn,
            "--out",
            str(out),
            "--quiet",
            "--no-documents",
        ]
    )
    bills = json.loads(stdout)["bills"]
    shutil.rmtree(out, ignore_errors=True)
    with_docs, stdout, _ = timed(
        ["bills", "--month", args.month, "--clickhouse", dsn, "--out", str(out), "--quiet"]
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"accepted readings: {readings:,}; daily_usage rows: {summary['daily_usage_rows']:,}; "
        f"differences: {summary['differences']}"
    )
    print(
        f"wattpay replay (stream, baseline): {replay:.1f} s = {readings / replay:,.0f} readings/s"
    )
    print(
        f"wattpay reconcile: {reconcile:.1f} s (read {summary['read_seconds']:.1f} s) = "
        f"{readings / reconcile:,.0f} readings/s; ratio to replay {replay / reconcile:.1f}×"
    )
    print(
        f"wattpay bills, {bills} bills: rows+XML+notices {rows_only:.1f} s, "
        f"with PDFs {with_docs:.1f} s"
    )
    today = datetime.now(UTC).date().isoformat()
    print(
        f"| {today} | {readings:,} | {readings / replay:,.0f} | {readings / reconcile:,.0f} "
        f"| {replay / reconcile:.1f} | {bills} | {1000 * rows_only / bills:.0f} "
        f"| {1000 * with_docs / bills:.0f} |"
    )


if __name__ == "__main__":
    main()
