"""Recovery snapshot cost: per account state and meter directory, and per epoch interval.

Usage: .venv/bin/python bench/snapshots.py [--days 1,30,365] [--meters 10000,100000]
       [--payments-per-account 12] [--epochs 0.5,2,10] [--readings N]
       [--dormant 100000] [--dormant-readings 300000] [--latency-seconds 15] [--skip-macro]

At the end of every epoch Bytewax snapshots each key whose state changed: it calls the
logic's ``snapshot``, pickles the result and writes it to the recovery store. In the billing
flow that is one ``AccountState`` per account touched in the epoch, and the meter directory,
a single key holding every meter, in every epoch that saw any message. Both steps return
their state pickled to bytes (a plain ``stateful_map`` would deep-copy it instead).

- **micro:** builds account states by applying N days of quarter-hour readings (plus a
  monthly top-up) with ``billing.engine.apply``, with the live duplicate memory (and the
  replay one for comparison), and meter directories of 10k / 100k meters; times the pickle
  of each (and a deep copy + pickle, for comparison) and reports the pickled size. The
  baseline, measured in the same run, is the cost of applying one reading, so a snapshot is
  also given in "readings' worth of work";
- **macro:** for each ``--epochs`` value, a fresh embedded broker with the published input
  of bench/live.py, a bare consume + parse of it (baseline), then `wattpay billing` with
  that epoch interval and a fresh recovery directory: messages/s, the recovery store's size
  and what it holds, and the reading -> notification latency at 200 readings/s. With
  ``--dormant N`` the same runs are repeated with N extra accounts opened first (no readings),
  so the directory snapshot has N more meters.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import sqlite3
import statistics
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from live import (  # noqa: E402
    PREFIX,
    QUIET_CLIENT,
    BillingProcess,
    _produce,
    bare_consume,
    example_inputs,
    machine,
    measure_latency,
    ms,
    publish_inputs,
    snapshot_split,
    snapshot_text,
    start_broker,
    today,
)

from billing.clock import LOCAL_ZONE  # noqa: E402
from billing.directory import MeterDirectory  # noqa: E402
from billing.engine import Routed, apply  # noqa: E402
from billing.messages import AccountEvent, Envelope, Reading, TopUp  # noqa: E402
from billing.rules import BillingRules  # noqa: E402
from billing.state import AccountState  # noqa: E402
from bus.kafka import new_producer  # noqa: E402
from config.settings import Settings  # noqa: E402

START = datetime(2026, 1, 5, tzinfo=LOCAL_ZONE)
QUARTER = timedelta(minutes=15)
# A day's load shape in kWh per quarter hour: low at night, peaks morning and evening.
SHAPE = [0.05] * 24 + [0.2] * 12 + [0.1] * 32 + [0.3] * 20 + [0.1] * 8


# ---------------------------------------------------------------- micro


@dataclass
class Cost:
    """Snapshot cost of one state: the flow's pickle, and a plain stateful map's deep copy."""

    pickle: float
    deepcopy: float
    size: int

    @property
    def copy_then_pickle(self) -> float:
        return self.deepcopy + self.pickle


def per_call(function, repeat: int = 5) -> float:
    """Median seconds per call over ``repeat`` runs of an auto-ranged loop."""
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    return statistics.median(t / number for t in timer.repeat(repeat, number))


def snapshot_cost(state: object, repeat: int = 5) -> Cost:
    """The flow's snapshot (pickled bytes) of ``state``, and a deep copy for comparison."""
    return Cost(
        per_call(lambda: pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), repeat),
        per_call(lambda: copy.deepcopy(state), repeat),
        len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)),
    )


def account_after(days: int, rules: BillingRules) -> tuple[AccountState, int, float]:
    """An account after ``days`` of quarter-hour readings; (state, messages, seconds)."""
    envelope = Envelope("readings", "bench:0", "", START)
    opened = AccountEvent(
        "open",
        "A-BENCH",
        START,
        "M-BENCH",
        "zhejiang-tou",
        {"opening_balance": Decimal("5000.00"), "ytd_kwh": Decimal(0)},
    )
    state = apply(None, Routed(envelope, opened), rules).state
    messages = 1
    energy = Decimal("12000.000")
    started = time.perf_counter()
    for day in range(days):
        day_start = START + timedelta(days=day)
        if day % 30 == 15:
            topup = TopUp(f"P-{day}", "A-BENCH", Decimal("200.00"), "app", day_start)
            state = apply(state, Routed(envelope, topup), rules).state
            messages += 1
        for slot, kwh in enumerate(SHAPE):
            energy += Decimal(str(kwh)) + Decimal(day % 7) / 1000
            reading = Reading("M-BENCH", day_start + slot * QUARTER, int(energy * 1000), "modbus")
            state = apply(state, Routed(envelope, reading), rules).state
            messages += 1
    assert state is not None
    return state, messages, time.perf_counter() - started


def directory_with(meters: int, payments_per_account: int) -> MeterDirectory:
    """A directory of ``meters`` open accounts, each with its claimed payment ids."""
    directory = MeterDirectory()
    for index in range(meters):
        account = f"A{index:07d}"
        event = AccountEvent("open", account, START, f"M{index:07d}", "zhejiang-tiered")
        directory.check(event)
        for payment in range(payments_per_account):
            directory.payment_ids[f"P-{account}-{payment}"] = (account, True)
    return directory


def micro(days_list: list[int], meters_list: list[int], payments: int) -> dict[str, object]:
    live = replace(BillingRules(), duplicate_memory=Settings().live_duplicate_memory)
    replay = BillingRules()
    print(
        "micro: account states after N days of quarter-hour readings (duplicate memory: "
        f"live {live.duplicate_memory:,}, replay {replay.duplicate_memory:,})"
    )
    accounts: dict[tuple[int, int], Cost] = {}
    per_reading = []
    cases = [(days, live) for days in days_list] + [(max(days_list), replay)]
    for days, rules in cases:
        state, messages, seconds = account_after(days, rules)
        per_reading.append(seconds / messages)
        cost = snapshot_cost(state)
        logs = len(pickle.dumps(state.logs, protocol=pickle.HIGHEST_PROTOCOL))
        accounts[(days, rules.duplicate_memory)] = cost
        print(
            f"  {days:>4} days, memory {rules.duplicate_memory:,}: {messages:,} messages at "
            f"{seconds / messages * 1e6:.0f} µs; pickle {cost.pickle * 1e6:,.0f} µs "
            f"(deepcopy {cost.deepcopy * 1e6:,.0f} µs), {cost.size / 1e3:,.1f} kB "
            f"({logs / cost.size:.0%} of it the reading log)"
        )
    apply_cost = statistics.median(per_reading)
    directories: dict[tuple[int, int], Cost] = {}
    print("micro: the meter directory (one key, snapshotted in every epoch with input)")
    for meters in meters_list:
        for claimed in sorted({0, payments}):
            directory = directory_with(meters, claimed)
            cost = snapshot_cost(directory, repeat=3)
            directories[(meters, claimed)] = cost
            print(
                f"  {meters:>7,} meters, {claimed} payment ids each: pickle "
                f"{cost.pickle * 1e3:,.0f} ms (deepcopy {cost.deepcopy * 1e3:,.0f} ms), "
                f"{cost.size / 1e6:,.1f} MB = {cost.pickle / apply_cost:,.0f} readings' work"
            )
    return {"apply": apply_cost, "accounts": accounts, "directories": directories, "live": live}


def print_micro(result: dict[str, object], payments: int, epochs: list[float]) -> None:
    apply_cost: float = result["apply"]  # type: ignore[assignment]
    accounts: dict[tuple[int, int], Cost] = result["accounts"]  # type: ignore[assignment]
    directories: dict[tuple[int, int], Cost] = result["directories"]  # type: ignore[assignment]
    live: BillingRules = result["live"]  # type: ignore[assignment]
    print()
    print(f"applying one reading (baseline): {apply_cost * 1e6:.0f} µs")
    print(
        "| state | snapshot (pickle) ms | pickled kB | snapshot / one reading applied "
        "| deepcopy + pickle ms (a plain stateful map) |"
    )
    print("|---|---|---|---|---|")
    for (days, memory), cost in accounts.items():
        print(
            f"| account after {days} days, duplicate memory {memory:,} "
            f"| {cost.pickle * 1e3:.3f} | {cost.size / 1e3:,.1f} "
            f"| {cost.pickle / apply_cost:,.1f} | {cost.copy_then_pickle * 1e3:.3f} |"
        )
    for (meters, claimed), cost in directories.items():
        print(
            f"| directory, {meters:,} meters, {claimed} payment ids each "
            f"| {cost.pickle * 1e3:,.1f} | {cost.size / 1e3:,.0f} "
            f"| {cost.pickle / apply_cost:,.0f} | {cost.copy_then_pickle * 1e3:,.1f} |"
        )
    # Quarter-hour meters: N/900 readings/s. Live, each reading is the only change to its
    # account in its epoch (the next comes 15 minutes later), so every reading costs one
    # account snapshot whatever the epoch; the directory is snapshotted once per epoch.
    days = sorted(d for d, memory in accounts if memory == live.duplicate_memory)
    month = accounts[(min(days, key=lambda d: abs(d - 30)), live.duplicate_memory)]
    print()
    print(
        "| meters | readings/s | epoch s | directory snapshot s | directory, share of a core "
        "| account snapshots, share of a core | applying readings, share of a core |"
    )
    print("|---|---|---|---|---|---|---|")
    for (meters, claimed), cost in directories.items():
        if claimed != payments:
            continue
        arrivals = meters / 900
        for epoch in epochs:
            print(
                f"| {meters:,} | {arrivals:,.0f} | {epoch:g} | {cost.pickle:.2f} "
                f"| {cost.pickle / epoch:.1%} | {arrivals * month.pickle:.1%} "
                f"| {arrivals * apply_cost:.1%} |"
            )


# ---------------------------------------------------------------- macro


def publish_dormant(config: dict[str, str], count: int) -> int:
    """Open ``count`` accounts at the set's start that never send a reading."""
    producer = new_producer(
        config, extra={**QUIET_CLIENT, "linger.ms": "20", "partitioner": "murmur2"}
    )
    for index in range(count):
        account = f"DORM-A{index:06d}"
        value = (
            '{"type": "open", "account_id": "%s", "meter_id": "DORM-M%06d", '
            '"plan": "zhejiang-tiered", "ts": "2026-03-02T00:00:00+08:00", '
            '"opening_balance": "100.00"}' % (account, index)
        )
        _produce(producer, PREFIX + "accounts", value.encode(), account.encode())
    if producer.flush(120):
        raise RuntimeError("dormant accounts not confirmed")
    return count


def store_contents(recovery: Path) -> dict[str, tuple[int, int, int]]:
    """Snapshots in the recovery store by step: (rows, bytes, largest)."""
    steps: dict[str, list[int]] = {}
    for part in sorted(recovery.glob("part-*.sqlite3")):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT step_id, count(*), sum(length(ser_change)), max(length(ser_change)) "
                "FROM snaps GROUP BY step_id"
            ).fetchall()
        for step, count, size, largest in rows:
            entry = steps.setdefault(step.split(".")[1], [0, 0, 0])
            entry[0] += count
            entry[1] += size or 0
            entry[2] = max(entry[2], largest or 0)
    return {step: (v[0], v[1], v[2]) for step, v in steps.items()}


@dataclass
class MacroRun:
    dormant: int
    epoch: float
    messages: int
    bare_rate: float
    rate: float
    cpu: float
    store_mb: float
    directory_kb: float
    account_rows: int
    seconds: float
    snapshots: tuple[float, float, float, float]
    latency: tuple[float, float, float] | None


def macro_run(
    inputs: Path,
    epoch: float,
    *,
    readings: int | None,
    dormant: int,
    partitions: int,
    latency_seconds: float,
    workdir: Path,
) -> MacroRun:
    broker = start_broker(partitions)
    try:
        extra = publish_dormant(broker.config, dormant) if dormant else 0
        total = extra + sum(publish_inputs(broker.config, inputs, readings).values())
        bare = bare_consume(broker.config)
        tag = f"d{dormant}-e{epoch:g}"
        tuned = {"WATTPAY_KAFKA_FETCH_WAIT_MAX_MS": "10"}
        with BillingProcess(broker.bootstrap, workdir, epoch, tag, env=tuned) as billing:
            progress = billing.wait_counted(total)
            seconds, rate = progress.processing(total)
            cpu = billing.cpu()
            snaps = snapshot_split(billing.snapshot_seconds())
            print(f"  {snapshot_text({}, billing.snapshot_seconds(), seconds)}")
            billing.wait_idle()
            time.sleep(2 * epoch + 1)  # the last epoch's snapshots are written
            store = billing.recovery_bytes()
            contents = store_contents(billing.recovery)
            latency = None
            if latency_seconds:
                measured = measure_latency(broker, billing, 200.0, latency_seconds)
                latency = (
                    measured.quantile(0.5),
                    measured.quantile(0.99),
                    measured.quantile(1.0),
                )
        directory = contents.get("route", (0, 0, 0))[2]
        account_rows = contents.get("accounts", (0, 0, 0))[0]
        print(
            f"macro epoch {epoch:g} s, {dormant:,} dormant: {total:,} messages, bare "
            f"{bare.rate:,.0f}/s, billing {rate:,.0f}/s over {seconds:.1f} s "
            f"(ratio {rate / bare.rate:.3f}), CPU {cpu:.0f} s; store {store / 1e6:.1f} MB, "
            f"directory snapshot {directory / 1e3:,.1f} kB, {account_rows:,} account snapshots; "
            f"snaps {contents}"
        )
        return MacroRun(
            dormant,
            epoch,
            total,
            bare.rate,
            rate,
            cpu,
            store / 1e6,
            directory / 1e3,
            account_rows,
            seconds,
            snaps,
            latency,
        )
    finally:
        broker.stop()


def print_macro(runs: list[MacroRun]) -> None:
    print()
    print(
        "| date | dormant accounts | epoch s | messages | bare msg/s | billing msg/s "
        "| billing / bare | snapshot s: directory / accounts / other / store writes (share) "
        "| directory snapshot kB | recovery store MB | latency p50 / p99 / max ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        latency = " / ".join(ms(v) for v in run.latency) if run.latency else "–"
        directory, accounts, other, store = run.snapshots
        share = sum(run.snapshots) / run.seconds
        print(
            f"| {today()} | {run.dormant:,} | {run.epoch:g} | {run.messages:,} "
            f"| {run.bare_rate:,.0f} | {run.rate:,.0f} | {run.rate / run.bare_rate:.3f} "
            f"| {directory:.1f} / {accounts:.1f} / {other:.1f} / {store:.1f} ({share:.0%}) "
            f"| {run.directory_kb:,.0f} | {run.store_mb:.1f} | {latency} |"
        )


def numbers(text: str, kind: type = float) -> list:
    return [kind(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", default="1,30,365", help="account ages to snapshot")
    parser.add_argument("--meters", default="10000,100000", help="directory sizes")
    parser.add_argument("--payments-per-account", type=int, default=12)
    parser.add_argument("--epochs", default="0.5,2,10", help="epoch intervals (s)")
    parser.add_argument("--readings", type=int, default=None, help="publish only N readings")
    parser.add_argument("--dormant", type=int, default=0, help="extra accounts, no readings")
    parser.add_argument("--dormant-readings", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--skip-macro", action="store_true")
    args = parser.parse_args()
    epochs = numbers(args.epochs)

    print(f"machine: {machine()}; date {today()}")
    print(f"command: python {' '.join(sys.argv)}")
    result = micro(numbers(args.days, int), numbers(args.meters, int), args.payments_per_account)
    runs = []
    if not args.skip_macro:
        inputs = example_inputs(400, 30, 11)
        with tempfile.TemporaryDirectory(prefix="wattpay-bench-snapshots-") as work:
            grid = [(0, args.readings)]
            if args.dormant:
                grid.append((args.dormant, args.dormant_readings))
            for dormant, readings in grid:
                for epoch in epochs:
                    runs.append(
                        macro_run(
                            inputs,
                            epoch,
                            readings=readings,
                            dormant=dormant,
                            partitions=args.partitions,
                            latency_seconds=args.latency_seconds,
                            workdir=Path(work),
                        )
                    )
    print_micro(result, args.payments_per_account, epochs)
    if runs:
        print_macro(runs)


if __name__ == "__main__":
    main()
