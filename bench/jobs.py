"""Batch jobs: `wattpay reconcile` and `wattpay bills` on bench/replay.py's example set.

Usage: .venv/bin/python bench/jobs.py [--households 400] [--days 30]
Replays the set into a fresh embedded ClickHouse (the stream's throughput, the baseline of
this same run), then times `wattpay reconcile` over every accepted reading and
`wattpay bills` for the month, with and without the PDF documents. Prints Markdown rows
for BENCHMARKS.md.

       .venv/bin/python bench/jobs.py --baseline DIR [--sizes 100,400,1600] [--days 35]
       [--rounds 2]
Times the rows-only `wattpay bills` (no PDFs) of DIR, another checkout of this repository,
against this one, taking turns ``--rounds`` times on a fresh copy of each size's replayed
ClickHouse, so both see the same noise; prints seconds, the growth per account between
sizes, and the projection to the city's 274,000 households.
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
CITY = 274_000


def timed(args: list[str]) -> tuple[float, str, str]:
    started = time.perf_counter()
    done = subprocess.run([*WATTPAY, *args], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{args[0]} failed:\n{done.stderr}")
    return elapsed, done.stdout, done.stderr


def example_set(households: int, days: int, seed: int, start: date = date(2026, 3, 2)) -> Path:
    """The input directory of an example set, written if missing."""
    name = f"h{households}-d{days}-s{seed}"
    if start != date(2026, 3, 2):
        name += f"-from{start:%Y%m%d}"
    inputs = ROOT / "bench" / "data" / name / "input"
    if not (inputs / "readings.jsonl").exists():
        write_example(inputs, households=households, days=days, seed=seed, start=start)
    return inputs


def rows_only(tree: Path, clickhouse: Path, month: str, out: Path) -> tuple[float, int]:
    """(seconds, bills) of a rows-only `wattpay bills` from ``tree`` on a copy of ``clickhouse``.

    The run writes its rows into the copy, so every run starts from the same state.
    """
    copy = out / "clickhouse"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(clickhouse, copy, symlinks=True)
    args = ["bills", "--month", month, "--clickhouse", f"chdb://{copy}"]
    args += ["--out", str(out / "documents"), "--quiet", "--no-documents"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    done = subprocess.run([*WATTPAY, *args], cwd=tree, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bills in {tree} failed:\n{done.stderr}")
    bills = json.loads(done.stdout)["bills"]
    shutil.rmtree(out, ignore_errors=True)
    return elapsed, bills


def migrated(tree: Path, clickhouse: Path, name: str) -> Path:
    """A copy of ``clickhouse`` upgraded by ``tree``'s `wattpay migrate` (kept for the rounds).

    Each tree bills its own layout (a migration may re-partition a table), and no timed run
    includes a migration.
    """
    copy = clickhouse.with_name(f"clickhouse-{name}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(clickhouse, copy, symlinks=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [*WATTPAY, "migrate", "--clickhouse", f"chdb://{copy}"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )
    merged(copy)
    return copy


def merged(clickhouse: Path) -> None:
    """Leave ``clickhouse`` with its background merges done, as a server keeps its tables.

    A copy opened with parts still to merge spends seconds of CPU merging them beside
    whatever runs first (here: the timed job), a cost of the copy, not of the job.
    """
    sys.path.insert(0, str(ROOT))
    from store.clickhouse import ClickHouseStore

    quiet = 0
    with ClickHouseStore(f"chdb://{clickhouse}", create=False) as store:
        while quiet < 3:
            time.sleep(1.0)
            _, rows = store.query("SELECT count() FROM system.merges")
            quiet = quiet + 1 if rows[0][0] == 0 else 0


def scan_floor(clickhouse: Path, month: str) -> float:
    """Seconds for polars to read the month's rated parts from ``clickhouse`` and sum them.

    The rows the month's bills and analysis are made of (``intervals`` under ``FINAL``, as
    the job reads them), each account's kWh and parts summed: the floor of any month's run.
    """
    sys.path.insert(0, str(ROOT))
    import polars as pl

    from jobs import tables
    from jobs.money import month_after
    from store.clickhouse import ClickHouseStore

    first = date.fromisoformat(f"{month}-01")
    window = tables._interval_window(first, month_after(first), "Asia/Shanghai")
    sql = (
        "SELECT account_id, toUnixTimestamp64Micro(`start`) AS s,"
        " toUnixTimestamp64Micro(`end`) AS e, toInt64(kwh * 1000) AS milli"
        f" FROM intervals FINAL WHERE {window}"
    )
    with ClickHouseStore(f"chdb://{clickhouse}", create=False) as store:
        started = time.perf_counter()
        frame = pl.DataFrame(store.query_arrow(sql))
        frame.group_by("account_id").agg(pl.col("milli").sum(), pl.len())
        return time.perf_counter() - started


def compare_bills(args: argparse.Namespace) -> None:
    """Rows-only `wattpay bills`, the baseline tree and this one taking turns, per size."""
    trees = {"before": Path(args.baseline).resolve(), "after": ROOT}
    best: dict[tuple[str, int], float] = {}
    bills: dict[int, int] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        inputs = example_set(size, args.days, args.seed, date.fromisoformat(args.start))
        clickhouse = inputs.parent / "clickhouse"
        if not clickhouse.exists():
            replay_pass(inputs, 1)
        layouts = {name: migrated(tree, clickhouse, name) for name, tree in trees.items()}
        for round_no in range(1, args.rounds + 1):
            for name, tree in trees.items():
                out = ROOT / "bench" / "data" / f"bills-{name}"
                seconds, bills[size] = rows_only(tree, layouts[name], args.month, out)
                print(f"{size} households, round {round_no}, {name}: {seconds:.2f} s")
                key = (name, size)
                best[key] = min(best.get(key, seconds), seconds)
            seconds = scan_floor(layouts["after"], args.month)
            print(f"{size} households, round {round_no}, polars scan of the month: {seconds:.2f} s")
            best["scan", size] = min(best.get(("scan", size), seconds), seconds)
    sizes = sorted(bills)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "| households | bills | before s | after s | after ÷ before | polars scan s"
        " | after ÷ scan |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        before, after, scan = best["before", size], best["after", size], best["scan", size]
        print(
            f"| {size:,} | {bills[size]:,} | {before:.2f} | {after:.2f} | {after / before:.2f} "
            f"| {scan:.2f} | {after / scan:.1f} |"
        )
    first, last = sizes[0], sizes[-1]
    for name in (*trees, "scan"):
        slope = (best[name, last] - best[name, first]) / (bills[last] - bills[first])
        fixed = best[name, first] - slope * bills[first]
        print(
            f"{name}: {1000 * slope:.2f} ms per account ({first}→{last}), fixed {fixed:.1f} s; "
            f"{CITY:,} households ≈ {(fixed + slope * CITY) / 60:.1f} min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--households", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--month", default="2026-03")
    parser.add_argument(
        "--start", default="2026-03-02", help="the example set's first day (a year: 2026-01-01)"
    )
    parser.add_argument("--baseline", help="another checkout: compare rows-only bills with it")
    parser.add_argument("--sizes", default="100,400,1600", help="households, with --baseline")
    parser.add_argument("--rounds", type=int, default=2, help="turns each, with --baseline")
    args = parser.parse_args()
    if args.baseline:
        compare_bills(args)
        return
    inputs = example_set(args.households, args.days, args.seed, date.fromisoformat(args.start))
    data = inputs.parent
    replay, _ = replay_pass(inputs, 1)
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
