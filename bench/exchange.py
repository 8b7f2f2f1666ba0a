"""Billing flow throughput with 1 worker, 2 worker threads and 2 worker processes.

Usage: .venv/bin/python bench/exchange.py [--households 40] [--days 60] [--baseline REF]
       [--rounds 2]

Runs the billing flow over a replay directory into counting sinks (no ClickHouse), for this
tree and for a baseline git ref extracted into bench/data/ (ignored by git), alternating
the two in the same invocation so the ratio is meaningful on a shared, noisy machine.
Across processes every item is pickled; with threads it is not. Prints a Markdown table for
BENCHMARKS.md. Wall time includes interpreter and flow start-up (about 1 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.replay import bare_pass  # noqa: E402
from bus.ports import free_port  # noqa: E402
from simulate.example import write_example  # noqa: E402

RUNNER = """
import sys
from pathlib import Path
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import cluster_main
from billing.rules import BillingRules
from pipelines.replay_source import ReplaySource
from pipelines.routing import order_key
from pipelines.billing import build_routed_flow

class _Count(StatelessSinkPartition):
    def write_batch(self, items):
        pass

class Count(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return _Count()

directory, threads, proc_id = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
addresses = sys.argv[4].split(",") if sys.argv[4] else []
rules = BillingRules()
flow = build_routed_flow(
    rules,
    source=ReplaySource(directory, rules, order_key, progress=None, local=proc_id == 0),
    rows=Count(),
    messages=Count(),
)
cluster_main(flow, addresses, proc_id, worker_count_per_proc=threads)
"""

LAYOUTS = {"1 worker": (1, 1), "2 threads": (1, 2), "2 processes": (2, 1)}


def run(tree: Path, directory: Path, processes: int, threads: int) -> float:
    """One flow run over ``directory`` with the code of ``tree``; return its wall time."""
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    if processes == 1:
        addresses = ""
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(directory), str(threads), str(i), addresses],
            cwd=tree,
        )
        for i in range(processes)
    ]
    for child in children:
        if child.wait() != 0:
            raise SystemExit(f"flow run failed in {tree}")
    return time.perf_counter() - started


def baseline_tree(ref: str) -> Path:
    """The files of git ``ref`` under bench/data/ (extracted once)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = ROOT / "bench" / "data" / f"tree-{commit}"
    if not (tree / "pipelines").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--households", type=int, default=40)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--baseline", default="HEAD~1")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = ROOT / "bench" / "data" / f"h{args.households}-d{args.days}-s{args.seed}" / "input"
    if not (data / "readings.jsonl").exists():
        write_example(
            data, households=args.households, days=args.days, seed=args.seed, start=date(2026, 3, 2)
        )
    readings, _ = bare_pass(data)
    trees = {"baseline": baseline_tree(args.baseline), "this tree": ROOT}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for layout, (processes, threads) in LAYOUTS.items():
            for name, tree in trees.items():
                times.setdefault((layout, name), []).append(run(tree, data, processes, threads))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"readings: {readings:,}; best of {args.rounds} rounds; baseline {args.baseline}")
    print("| date | layout | baseline readings/s | this tree readings/s | ratio |")
    print("|---|---|---|---|---|")
    today = datetime.now(UTC).date().isoformat()
    for layout in LAYOUTS:
        base = readings / min(times[(layout, "baseline")])
        this = readings / min(times[(layout, "this tree")])
        print(f"| {today} | {layout} | {base:,.0f} | {this:,.0f} | {this / base:.2f} |")


if __name__ == "__main__":
    main()
