"""The billing hot path against a baseline checkout: µs per reading and bytes of state per account.

Usage: .venv/bin/python bench/hotpath.py --baseline DIR [--households 40] [--days 30]
       [--rounds 2] [--skip-replay]

DIR is another checkout of this repository (e.g. ``git worktree add`` or ``git archive REV |
tar -x -C DIR``); it runs with this same interpreter. The two trees take turns, ``--rounds``
times, each measurement in a fresh subprocess, so both see the same noise of a shared machine:

- **core:** ``billing.sequential.run_sequential`` over the envelopes of a `wattpay example`
  set (parsed, merged and held in memory first), µs per reading line;
- **replay:** `wattpay replay` of the same set into a fresh embedded ClickHouse, end to end,
  µs per reading line;
- **state:** pickled ``AccountState`` of one account after 1, 30 and 365 days of quarter-hour
  readings (``bench/snapshots.py``'s account), with the live and the replay duplicate memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulate.example import write_example  # noqa: E402

CORE = """
import json, sys, time
from pathlib import Path
from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.replay_files import merged_envelopes
envelopes = list(merged_envelopes(Path(sys.argv[1])))
readings = sum(1 for e in envelopes if e.topic == "readings")
started = time.perf_counter()
for _ in run_sequential(envelopes, BillingRules()):
    pass
print(json.dumps((time.perf_counter() - started) / readings * 1e6))
"""

STATE = """
import json, pickle, sys
from dataclasses import replace
sys.path.insert(0, "bench")
from snapshots import account_after
from billing.rules import BillingRules
sizes = {}
for memory in (960, 40_000):
    for days in (1, 30, 365):
        state, _, _ = account_after(days, replace(BillingRules(), duplicate_memory=memory))
        sizes[f"{days} days, memory {memory:,}"] = len(pickle.dumps(state, protocol=5))
print(json.dumps(sizes))
"""


def run(tree: Path, code: str, *args: str) -> object:
    """Run a snippet in ``tree`` (its packages first on the path); return its JSON answer."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def replay_us(tree: Path, inputs: Path, readings: int) -> float:
    """`wattpay replay` of ``inputs`` with ``tree``'s code; µs per reading line."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "input"
        shutil.copytree(inputs, work)
        code = (
            "import sys, time, runpy; started = time.perf_counter(); sys.argv = sys.argv[1:];"
            "\ntry:\n    runpy.run_module('wattpay.cli', run_name='__main__')"
            "\nexcept SystemExit as end:\n    assert not end.code, end.code"
            "\nprint(time.perf_counter() - started)"
        )
        seconds = run(
            tree,
            code,
            "wattpay",
            "replay",
            str(work),
            "--quiet",
            "--workers",
            "1",
            "--clickhouse",
            f"chdb://{scratch}/clickhouse",
        )
    return float(seconds) / readings * 1e6  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--households", type=int, default=40)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    data = ROOT / "bench" / "data" / f"h{args.households}-d{args.days}-s{args.seed}" / "input"
    if not (data / "readings.jsonl").exists():
        write_example(
            data, households=args.households, days=args.days, seed=args.seed, start=date(2026, 3, 2)
        )
    with (data / "readings.jsonl").open(encoding="utf-8") as lines:
        readings = sum(1 for _ in lines)
    trees = {"baseline": args.baseline.resolve(), "this tree": ROOT}
    core: dict[str, list[float]] = {name: [] for name in trees}
    replay: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            core[name].append(float(run(tree, CORE, str(data))))  # type: ignore[arg-type]
            if not args.skip_replay:
                replay[name].append(replay_us(tree, data, readings))
    states = {name: run(tree, STATE) for name, tree in trees.items()}
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {python}")
    print(f"date: {datetime.now(UTC).date().isoformat()}; {readings:,} reading lines")
    print("| measure | baseline | this tree | this / baseline |")
    print("|---|---|---|---|")
    for label, series in (("run_sequential µs/reading", core), ("replay µs/reading", replay)):
        if series["baseline"]:
            before = statistics.median(series["baseline"])
            after = statistics.median(series["this tree"])
            runs = ", ".join(f"{b:.1f}/{a:.1f}" for b, a in zip(*series.values(), strict=True))
            print(f"| {label} (runs {runs}) | {before:.1f} | {after:.1f} | {after / before:.2f} |")
    for key, before in states["baseline"].items():  # type: ignore[union-attr]
        after = states["this tree"][key]  # type: ignore[index]
        ratio = after / before
        print(f"| pickled AccountState, {key} (bytes) | {before:,} | {after:,} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
