"""Where a replay's time goes: `wattpay replay` under cProfile, its own time summed by stage.

Usage: .venv/bin/python bench/profile_replay.py [--households 150] [--days 20] [--seed 5]
       [--top 12]

Writes the example set once into bench/data/ (ignored by git), replays it with one worker into
a fresh embedded ClickHouse under ``cProfile`` and prints, per stage, the share of the
profiled time spent in its own code (each function's "tottime", so nothing counts twice),
then the functions with the most own time. The profiler adds a cost to every Python call, so
the shares lean towards call-heavy Python code and away from C (chdb, ``json``); read them
as where to look, next to the unprofiled figures of `bench/replay.py` and `bench/floors.py`.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import runpy
import shutil
import sys
import tempfile
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulate.example import write_example  # noqa: E402

# (stage, what a function's file path contains, function names or None for any), first match.
STAGES: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    (
        "read and merge the input files",
        "billing/messages.py",
        frozenset({"decode", "message_ts", "at", "__init__"}),
    ),
    ("parse and route (in the source)", "pipelines/replay_source.py", frozenset({"route_chunk"})),
    (
        "parse and route (in the source)",
        "billing/engine.py",
        frozenset(
            {"route", "parse_input", "route_reading", "route_payment", "route_command_result"}
        ),
    ),
    ("read and merge the input files", "pipelines/replay_", None),
    ("read and merge the input files", "billing/decoding.py", None),
    ("read and merge the input files", "json/", None),
    ("parse and route (in the source)", "billing/messages.py", None),
    ("parse and route (in the source)", "pipelines/routing.py", None),
    ("parse and route (in the source)", "billing/directory.py", None),
    ("parse and route (in the source)", "pipelines/wire.py", None),
    ("rows to ClickHouse", "store/", None),
    ("rows to ClickHouse", "clickhouse_connect", None),
    ("rows to ClickHouse", "chdb", None),
    ("rows to ClickHouse", "pipelines/clickhouse_sink.py", None),
    ("topic files (notifications, commands, DLQ)", "pipelines/topic_files.py", None),
    ("topic files (notifications, commands, DLQ)", "bus/", None),
    ("billing rules (accounts step)", "billing/", None),
    ("billing rules (accounts step)", "pipelines/billing.py", None),
    ("Bytewax and the flow's glue", "bytewax", None),
    ("Bytewax and the flow's glue", "pipelines/", None),
)
BUILTIN_STAGE = {
    "chdb._chdb.query": "rows to ClickHouse",
    "bytewax._bytewax.cli_main": "Bytewax and the flow's glue",
}


def stage_of(path: str, name: str, callers: dict[tuple[str, int, str], object]) -> str:
    """The stage a profiled function belongs to (built-ins: by name, else by their callers)."""
    if path == "~":
        for key, stage in BUILTIN_STAGE.items():
            if key in name:
                return stage
        caller_paths = [c[0] for c in callers]
        for caller in caller_paths:
            for stage, part, names in STAGES:
                if part in caller and names is None:
                    return stage
        return "other (start-up, imports, built-ins)"
    for stage, part, names in STAGES:
        if part in path and (names is None or name in names):
            return stage
    return "other (start-up, imports, built-ins)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--households", type=int, default=150)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    name = f"h{args.households}-d{args.days}-s{args.seed}"
    data = ROOT / "bench" / "data" / name / "input"
    if not (data / "readings.jsonl").exists():
        write_example(
            data, households=args.households, days=args.days, seed=args.seed, start=date(2026, 3, 2)
        )
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "input"
        shutil.copytree(data, work)
        sys.argv = ["wattpay", "replay", str(work), "--quiet", "--workers", "1"]
        sys.argv += ["--clickhouse", f"chdb://{scratch}/clickhouse"]
        profile = cProfile.Profile()
        try:
            profile.runcall(runpy.run_module, "wattpay.cli", run_name="__main__")
        except SystemExit as end:
            if end.code:
                raise
        stats = pstats.Stats(profile)
    by_stage: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for (path, line, function), (_, _, tottime, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_stage[stage_of(path, function, callers)] += tottime
        short = path.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        own[f"{short}:{line} {function}"] += tottime
    total = sum(by_stage.values())
    print(f"profiled replay of {name}: {total:.1f} s of own time")
    print("| stage | share of profiled time |")
    print("|---|---|")
    for stage, seconds in by_stage.most_common():
        print(f"| {stage} | {100 * seconds / total:.0f} % |")
    print(f"\nthe {args.top} functions with the most own time:")
    for function, seconds in own.most_common(args.top):
        print(f"  {100 * seconds / total:5.1f} %  {function}")


if __name__ == "__main__":
    main()
