"""`wattpay tariff-whatif`: accounts × days re-rated per second, against a bare polars scan.

Usage: .venv/bin/python bench/tariff_whatif.py [--households 100] [--days 365]
       [--start 2026-01-01] [--work bench/data/whatif] [--baseline DIR] [--rounds 1]

Builds a town straight in a fresh embedded ClickHouse (a replay of a year would take hours):
quarter-hour registers of N households made by ClickHouse itself (``numbers()``), every
fourth household on the TOU plan, eight districts, and ``daily_usage`` written by the batch
rater from those readings (so the what-if's check against it costs what it costs, and
passes). Then, in this same run:

1. **Baseline**, the floor: read the same readings into polars as the what-if does
   (``jobs.tables.readings``) and scan them once (per account: consumption and readings).
2. `wattpay tariff-whatif` over the whole period as a subprocess (start-up included), with
   a proposal that moves the tier bounds, the TOU prices and the peak start. With
   ``--baseline DIR`` (another checkout), DIR's and this tree's take turns ``--rounds``
   times on the same ClickHouse, and their ``accounts.csv`` and ``report.html`` are compared.

Prints both rates in accounts × days per second and a Markdown row for BENCHMARKS.md.
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from config.settings import load_settings  # noqa: E402
from jobs import tables  # noqa: E402
from jobs.money import fen, kwh  # noqa: E402
from jobs.reconcile import RatingInputs, recompute  # noqa: E402
from jobs.scenarios import ACCOUNTS_PER_PASS, account_ranges  # noqa: E402
from store.clickhouse import ClickHouseStore  # noqa: E402

WATTPAY = [sys.executable, "-m", "wattpay.cli"]
CITY = 274_000
# Wh per quarter hour from local midnight (bench/citygen.py's day shape), about 8.6 kWh a day.
SHAPE_WH = [40] * 24 + [160] * 12 + [80] * 32 + [240] * 20 + [80] * 8
PROPOSAL = """\
[plans.zhejiang-tiered]
tier_bounds = ["2400", "4200"]
[plans.zhejiang-tiered.prices]
flat = ["0.538", "0.618", "0.888"]

[plans.zhejiang-tou]
tier_bounds = ["2400", "4200"]
periods = ["00:00=valley", "09:00=peak", "21:00=valley"]
[plans.zhejiang-tou.prices]
peak = ["0.598", "0.648", "0.898"]
valley = ["0.268", "0.318", "0.568"]
"""


def build_town(store: ClickHouseStore, households: int, days: int, start: date) -> int:
    """Readings and openings of the town, written by ClickHouse; the readings count."""
    store.migrate()
    prefix = [0]
    for wh in SHAPE_WH:
        prefix.append(prefix[-1] + wh)
    daily = prefix[-1]
    slots = days * 96 + 1  # through 00:00 after the last day
    zone = "Asia/Shanghai"
    # Register in Wh of household h after s quarter hours: a base, whole days of the shape
    # scaled 0.5–2×, and the day's prefix so far.
    store.command(
        "INSERT INTO readings (meter_id, account_id, ts, energy_kwh, source)"
        " SELECT concat('TM', leftPad(toString(h), 6, '0')),"
        " concat('T', leftPad(toString(h), 6, '0')),"
        f" toDateTime64('{start.isoformat()} 00:00:00', 3, '{zone}') + toIntervalSecond(s * 900),"
        " toDecimal64(1000000 + (h * 7919) % 9000000 + intDiv((intDiv(s, 96) * "
        f"{daily} + {prefix}[(s % 96) + 1]) * (50 + (h * 31) % 151), 100), 3) / 1000, ''"
        f" FROM (SELECT number % {households} AS h, intDiv(number, {households}) AS s"
        f" FROM numbers({households * slots}))"
    )
    store.command(
        "INSERT INTO account_events (event_id, account_id, ts, type, meter_id, plan, payload)"
        " SELECT concat('open:T', leftPad(toString(number), 6, '0')),"
        " concat('T', leftPad(toString(number), 6, '0')),"
        f" toDateTime64('{start.isoformat()} 00:00:00', 3, '{zone}'), 'open',"
        " concat('TM', leftPad(toString(number), 6, '0')),"
        " if(number % 4 = 0, 'zhejiang-tou', 'zhejiang-tiered'),"
        " concat('{\"district\": \"D', toString(number % 8), '\"}')"
        f" FROM numbers({households})"
    )
    return households * slots


def write_daily_usage(store: ClickHouseStore, settings: object) -> int:
    """``daily_usage`` from the batch rater over the readings (the stream's rows, as it bills)."""
    rules = settings.rules  # type: ignore[attr-defined]
    zone = str(rules.zone)
    events, rebases = tables.account_events(store), tables.regressions(store)
    ids = events["account_id"].unique().sort().to_list()
    written = 0
    for accounts in account_ranges(ids, ACCOUNTS_PER_PASS):
        inputs = RatingInputs(tables.readings(store, zone, accounts), rebases, events)
        batch, _ = recompute(inputs, rules.plans, zone, int(rules.register_max_kwh * 1000))
        written += _insert_days(store, batch)
    return written


def _insert_days(store: ClickHouseStore, batch: pl.DataFrame) -> int:
    rows = [
        {
            "account_id": r["account_id"],
            "day": r["day"],
            **{c: kwh(r[c]) for c in ("kwh", "kwh_peak", "kwh_valley", "ytd_kwh")},
            **{f"kwh_tier{k}": kwh(r[f"kwh_tier{k}"]) for k in (1, 2, 3)},
            "charge": fen(r["charge"]),
            "closing_balance": fen(0),
        }
        for r in batch.iter_rows(named=True)
    ]
    for first in range(0, len(rows), 50_000):
        store.insert_rows("daily_usage", rows[first : first + 50_000])
    return len(rows)


def floor(store: ClickHouseStore, zone: str) -> float:
    """Seconds to read the readings into polars and scan them once."""
    started = time.perf_counter()
    readings = tables.readings(store, zone)
    readings.group_by("account_id").agg(
        used=pl.col("milli").max() - pl.col("milli").min(), readings=pl.len()
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 1))
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "data" / "whatif")
    parser.add_argument("--baseline", help="another checkout: run its tariff-whatif in turns")
    parser.add_argument("--rounds", type=int, default=1, help="turns each")
    args = parser.parse_args()
    work = args.work / f"h{args.households}-d{args.days}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dsn = f"chdb://{work / 'clickhouse'}"
    settings = load_settings(None, env={}, clickhouse_dsn=dsn)
    zone = str(settings.rules.zone)
    last = args.start + timedelta(days=args.days - 1)
    with ClickHouseStore(dsn) as store:
        started = time.perf_counter()
        readings = build_town(store, args.households, args.days, args.start)
        rows = write_daily_usage(store, settings)
        built = time.perf_counter() - started
        scan = floor(store, zone)
    proposal = work / "proposal.toml"
    proposal.write_text(PROPOSAL, encoding="utf-8")
    trees = {"after": ROOT}
    if args.baseline:
        trees = {"before": Path(args.baseline).resolve(), "after": ROOT}
    best: dict[str, float] = {}
    summary: dict[str, object] = {}
    for round_no in range(1, args.rounds + 1):
        for name, tree in trees.items():
            out = work / f"out-{name}"
            command = [
                *("tariff-whatif", "--from", f"{args.start:%Y-%m}", "--to", f"{last:%Y-%m}"),
                *("--proposed", str(proposal), "--out", str(out), "--clickhouse", dsn),
                "--quiet",
            ]
            env = {**os.environ, "PYTHONPATH": str(tree)}
            started = time.perf_counter()
            done = subprocess.run(
                [*WATTPAY, *command], cwd=tree, env=env, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"tariff-whatif in {tree} failed:\n{done.stderr}")
            summary = json.loads(done.stdout)
            print(f"round {round_no}, {name}: {seconds:.2f} s", flush=True)
            best[name] = min(best.get(name, seconds), seconds)
    account_days = args.households * args.days
    print(f"machine: {platform.machine()}, {platform.python_version()}, {datetime.now(UTC).date()}")
    print(f"town built in {built:.1f} s: {readings:,} readings, {rows:,} daily_usage rows")
    print(f"baseline (read + scan): {scan:.2f} s, {account_days / scan:,.0f} account-days/s")
    for name, whatif in best.items():
        print(
            f"tariff-whatif {name}: {whatif:.2f} s (best of {args.rounds}), "
            f"{account_days / whatif:,.0f} account-days/s; {summary['worse_off']} worse off, "
            f"{summary['better_off']} better off"
        )
        print(
            f"| {datetime.now(UTC).date()} | {name} | {args.households:,} × {args.days} | "
            f"{readings:,} | {scan:.2f} | {account_days / scan:,.0f} | {whatif:.2f} | "
            f"{account_days / whatif:,.0f} | {whatif / scan:.1f}× |"
        )
    if len(trees) == 2:
        for produced in ("accounts.csv", "report.html"):
            same = (work / "out-before" / produced).read_bytes() == (
                work / "out-after" / produced
            ).read_bytes()
            print(f"{produced}: {'identical' if same else 'DIFFERENT'} before and after")


if __name__ == "__main__":
    main()
