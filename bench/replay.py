"""Replay throughput: `wattpay replay` over ≥ 1M readings vs a bare read + parse of the same files.

Usage: .venv/bin/python bench/replay.py [--households 400] [--days 30] [--workers 1]
       [--runs PROCESSES/WORKERS,...]  e.g. --runs 1/1,1/2,2/1 (each measured in this run)
Writes the example set once into bench/data/ (ignored by git) and prints a Markdown table row
for BENCHMARKS.md. Both passes run in this same invocation, so the ratio is meaningful on a
shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.replay_files import INPUT_FILES  # noqa: E402
from simulate.example import write_example  # noqa: E402


def bare_pass(directory: Path) -> tuple[int, float]:
    """Read and JSON-parse every line of the three files; return (readings, seconds)."""
    started = time.perf_counter()
    readings = 0
    for topic, name in INPUT_FILES.items():
        with (directory / name).open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    json.loads(line)
                except ValueError:
                    pass
                if topic == "readings":
                    readings += 1
    return readings, time.perf_counter() - started


def replay_pass(directory: Path, workers: int, processes: int = 1) -> tuple[float, float]:
    """Run `wattpay replay` into a fresh embedded ClickHouse; return (wall s, CPU s).

    The CPU seconds are those of every process of the replay (user + system): the first
    waits for the others, so the children's usage of this one holds them all.
    """
    clickhouse = directory.parent / "clickhouse"
    shutil.rmtree(clickhouse, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "wattpay.cli",
            "replay",
            str(directory),
            "--quiet",
            "--workers",
            str(workers),
            "--processes",
            str(processes),
            "--clickhouse",
            f"chdb://{clickhouse}",
        ],
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--households", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--runs",
        default=None,
        help="processes/workers of each replay, comma-separated (default: 1/--workers)",
    )
    args = parser.parse_args()
    runs = [
        tuple(int(part) for part in run.split("/"))
        for run in (args.runs or f"1/{args.workers}").split(",")
    ]
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
    readings, bare = bare_pass(inputs)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"readings: {readings:,}")
    print(f"bare read + parse: {bare:.1f} s = {readings / bare:,.0f} readings/s")
    today = datetime.now(UTC).date().isoformat()
    table = []
    first = None
    for processes, workers in runs:
        full, cpu = replay_pass(inputs, workers, processes)
        first = first or full
        print(
            f"wattpay replay (processes={processes}, workers={workers}): {full:.1f} s = "
            f"{readings / full:,.0f} readings/s; / bare {bare / full:.3f}; "
            f"/ first run {first / full:.2f}×; CPU {cpu:.1f} s = "
            f"{cpu / readings * 1e6:.1f} µs a reading"
        )
        table.append(
            f"| {today} | {readings:,} | {processes} × {workers} | {readings / bare:,.0f} "
            f"| {readings / full:,.0f} | {bare / full:.3f} | {first / full:.2f}× "
            f"| {cpu:.1f} |"
        )
    print(
        "| date | readings | processes × workers | bare readings/s | replay readings/s "
        "| replay / bare | vs first run | CPU s, all processes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
