"""City-scale benchmarks: a quarter-hour burst billed live, and a whole city day replayed.

Usage: .venv/bin/python bench/city.py burst [--accounts 274000] [--epochs 2,10]
                                      [--few 1000] [--partitions 4]
       .venv/bin/python bench/city.py day [--households 274000] [--workers 1] [--processes 1]

Both drive wattpay through its command line only; the input comes from bench/citygen.py.

**burst** (per ``--epochs`` value, each on a fresh embedded broker and recovery directory):
``wattpay billing`` runs with that epoch interval. It first bills ``--few`` accounts (opened,
two quarter hours of readings) and the resident size of the process is read
(``/proc/<pid>/status`` VmRSS). The other accounts are then opened through the accounts
topic and send their first register (both timed). Then one quarter hour of readings, one per
meter, is published at once: the burst. Its billing time runs from the first burst message
counted in to the last one applied or rejected by its account (``wattpay_messages_in`` and
``wattpay_messages_applied`` / ``_rejected``); it is also given from the start of
publishing. After an epoch has closed, VmRSS is read again: (RSS now − RSS with the few
accounts) / (accounts − few) is the memory per account. The baseline, same run, after
billing has stopped: one consumer reads the burst's messages (from the offsets the broker
gave them) and ``json.loads`` each, timed from the first message it reads.

**day**: writes a city day (every account opens at midnight, 96 quarter-hour registers per
meter, a top-up from every twentieth household) once into bench/data/, then, in this run,
the bare read + ``json.loads`` of the three files (baseline, bench/replay.py) and
``wattpay replay`` of them into a fresh embedded ClickHouse (its default output).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.billing_process import BillingProcess, Progress, metric_sum  # noqa: E402
from bench.citygen import City, write_day  # noqa: E402
from bench.live import (  # noqa: E402
    PREFIX,
    QUIET_CLIENT,
    _produce,
    bare_consume,
    machine,
    snapshot_split,
    start_broker,
    today,
)
from bench.replay import bare_pass, replay_pass  # noqa: E402
from billing.clock import LOCAL_ZONE  # noqa: E402
from bus.kafka import new_producer  # noqa: E402

CITY = 274_000
BURST_START = datetime(2026, 6, 1, 10, 0, tzinfo=LOCAL_ZONE)
DAY = date(2026, 3, 2)


# ---------------------------------------------------------------- burst


class Publisher:
    """A keyed producer that remembers the first offset it was given in each partition."""

    def __init__(self, config: dict[str, str]) -> None:
        self.producer = new_producer(
            config,
            extra={
                **QUIET_CLIENT,
                "linger.ms": "20",
                "partitioner": "murmur2",
                "queue.buffering.max.messages": "500000",
            },
        )
        self.first: dict[tuple[str, int], int] = {}

    def _delivered(self, error: object, message: object) -> None:
        if error is not None:
            raise RuntimeError(f"not delivered: {error}")
        where = (message.topic(), message.partition())  # type: ignore[attr-defined]
        offset = message.offset()  # type: ignore[attr-defined]
        if offset < self.first.get(where, offset + 1):
            self.first[where] = offset

    def publish(self, topic: str, lines: Iterable[tuple[str, str]], *, track: bool = False) -> int:
        """Produce (key, line) pairs to ``topic``; return how many. Waits for every ack."""
        self.first = {}
        count = 0
        callback = self._delivered if track else None
        for key, line in lines:
            _produce(self.producer, PREFIX + topic, line.encode(), key.encode(), callback)
            count += 1
        if self.producer.flush(300):
            raise RuntimeError(f"the broker did not confirm every {topic} message")
        return count


def settle(billing: BillingProcess) -> None:
    """Until input stops and an epoch has closed (its snapshots written)."""
    billing.wait_idle()
    time.sleep(2 * billing.epoch_seconds + 1)


def billed_until(billing: BillingProcess, topic: str, target: float) -> Progress:
    """Until ``target`` messages of ``topic`` were applied or rejected by their accounts."""
    return billing.wait_counted(target, topic=topic, billed=True, timeout=7200, every=0.1)


def burst_run(accounts: int, few: int, epoch: float, partitions: int, work: Path) -> dict:
    """One burst run with ``epoch``-second epochs; returns its figures."""
    city = City(accounts, int(BURST_START.timestamp()))
    broker = start_broker(partitions)
    out: dict = {"epoch": epoch, "accounts": accounts, "few": few}
    try:
        publisher = Publisher(broker.config)
        with BillingProcess(broker.bootstrap, work, epoch, f"burst-e{epoch:g}") as billing:
            billing.wait_idle()
            publisher.publish("accounts", city.accounts(0, few))
            billed_until(billing, "accounts", few)
            publisher.publish("readings", city.quarter(0, few))  # first registers
            city.advance()
            publisher.publish("readings", city.quarter(0, few))  # a quarter of consumption
            billed_until(billing, "readings", 2 * few)
            settle(billing)
            out["rss_few"] = billing.rss_bytes()

            started = time.perf_counter()
            publisher.publish("accounts", city.accounts(few))
            billed_until(billing, "accounts", accounts)
            out["open_s"] = time.perf_counter() - started
            started = time.perf_counter()
            publisher.publish("readings", city.quarter(few))  # the others' first registers
            city.advance()
            billed_until(billing, "readings", few + accounts)
            out["first_s"] = time.perf_counter() - started
            settle(billing)
            out["rss_open"] = billing.rss_bytes()

            before = billing.billed("readings")
            cpu, snaps = billing.cpu(), billing.snapshot_seconds()
            began = time.monotonic() - billing.spawned
            out["burst"] = publisher.publish("readings", city.quarter(), track=True)
            out["publish_s"] = time.monotonic() - billing.spawned - began
            starts = dict(publisher.first)
            progress = billed_until(billing, "readings", before + out["burst"])
            done = progress.samples[-1][0]
            first = next(at for at, value in progress.samples if value > before)
            out["billed_s"] = done - began  # from the start of publishing
            out["processing_s"] = done - first  # from the first burst message billed
            out["cpu_s"] = billing.cpu() - cpu
            out["burst_snapshots"] = {
                step: value - snaps.get(step, 0.0)
                for step, value in billing.snapshot_seconds().items()
            }
            samples = billing.samples()
            out["rejected"] = metric_sum(samples, "wattpay_messages_rejected_total")
            settle(billing)
            out["rss_after"] = billing.rss_bytes()
            out["snapshots"] = billing.snapshot_seconds()
        bare = bare_consume(broker.config, starts=starts)
        if bare.messages != out["burst"]:
            raise RuntimeError(f"bare consume read {bare.messages:,} of {out['burst']:,}")
        out["bare_s"] = bare.from_first
        out["bare_total_s"] = bare.seconds
    finally:
        broker.stop()
    return out


def burst_report(runs: list[dict]) -> None:
    """The figures of every burst run, then Markdown rows for BENCHMARKS.md."""
    print()
    print(
        "| date | accounts | epoch s | open accounts/s | burst readings | bare consume s "
        "| billed s (from publish) | processing s | billing / bare | billing CPU s "
        "| RSS few / all accounts MB | RSS per account kB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        per_account = (run["rss_after"] - run["rss_few"]) / (run["accounts"] - run["few"])
        print(
            f"| {today()} | {run['accounts']:,} | {run['epoch']:g} "
            f"| {(run['accounts'] - run['few']) / run['open_s']:,.0f} | {run['burst']:,} "
            f"| {run['bare_s']:.2f} | {run['billed_s']:.1f} | {run['processing_s']:.1f} "
            f"| {run['bare_s'] / run['billed_s']:.3f} | {run['cpu_s']:.1f} "
            f"| {run['rss_few'] / 2**20:,.0f} / {run['rss_after'] / 2**20:,.0f} "
            f"| {per_account / 1024:.2f} |"
        )


def burst(args: argparse.Namespace) -> None:
    """Run the burst benchmark at every epoch interval, one after the other."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="wattpay-bench-city-") as work:
        for epoch in args.epochs:
            run = burst_run(args.accounts, args.few, epoch, args.partitions, Path(work))
            directory, accounts, other, store = snapshot_split(run.pop("snapshots"))
            in_burst = snapshot_split(run.pop("burst_snapshots"))
            print(
                f"epoch {epoch:g} s: opened {args.accounts - args.few:,} accounts in "
                f"{run['open_s']:.1f} s, first registers in {run['first_s']:.1f} s; burst of "
                f"{run['burst']:,} published in {run['publish_s']:.1f} s, billed "
                f"{run['billed_s']:.1f} s after publishing began ({run['processing_s']:.1f} s "
                f"from its first billed message, CPU {run['cpu_s']:.1f} s, "
                f"{run['rejected']:,.0f} rejected in the run); bare consume + parse "
                f"{run['bare_s']:.2f} s from its first message ({run['bare_total_s']:.2f} s with "
                f"the client's start-up); RSS {run['rss_few'] / 2**20:,.0f} MB with "
                f"{args.few:,} accounts, {run['rss_open'] / 2**20:,.0f} MB all open, "
                f"{run['rss_after'] / 2**20:,.0f} MB after the burst; snapshots over the run: "
                f"directory {directory:.1f} s, accounts {accounts:.1f} s, other {other:.1f} s, "
                f"store writes {store:.1f} s; during the burst: directory {in_burst[0]:.1f} s, "
                f"accounts {in_burst[1]:.1f} s, other {in_burst[2]:.1f} s, store writes "
                f"{in_burst[3]:.1f} s",
                flush=True,
            )
            runs.append(run)
    burst_report(runs)


# ---------------------------------------------------------------- day


def day(args: argparse.Namespace) -> None:
    """Write the city day once, then bare read + parse and `wattpay replay` of it."""
    data = ROOT / "bench" / "data" / f"city-day-h{args.households}"
    inputs = data / "input"
    if not (inputs / "readings.jsonl").exists():
        started = time.perf_counter()
        counts = write_day(inputs, args.households, DAY)
        print(f"wrote {counts} in {time.perf_counter() - started:.1f} s", flush=True)
    readings, bare = bare_pass(inputs)
    print(f"bare read + parse: {bare:.1f} s = {readings / bare:,.0f} readings/s", flush=True)
    full, cpu = replay_pass(inputs, args.workers, args.processes)
    print(
        f"wattpay replay (processes={args.processes}, workers={args.workers}): {full:.1f} s "
        f"= {readings / full:,.0f} readings/s; CPU {cpu:.1f} s"
    )
    print()
    print(
        "| date | households | readings | processes × workers | bare s | bare readings/s "
        "| replay s "
        "| replay readings/s | replay / bare | replay CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {today()} | {args.households:,} | {readings:,} | {args.processes} × {args.workers} "
        f"| {bare:.1f} "
        f"| {readings / bare:,.0f} | {full:.1f} | {readings / full:,.0f} | {bare / full:.3f} "
        f"| {cpu:.1f} |"
    )
    if args.households != CITY:
        print(
            f"\nthis day has {args.households:,} households, not the city's {CITY:,}: its "
            f"figures are for {readings:,} readings only. At the same rate the city's "
            f"{CITY * 96:,} readings would take {CITY * 96 / (readings / full) / 60:.1f} min "
            "(a linear estimate, not a measurement)."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    burst_parser = commands.add_parser("burst", help="a quarter-hour burst billed live")
    burst_parser.add_argument("--accounts", type=int, default=CITY)
    burst_parser.add_argument(
        "--epochs",
        type=lambda text: [float(part) for part in text.split(",") if part],
        default=[2.0, 10.0],
        help="epoch intervals, one run each (2 s is the default of wattpay billing)",
    )
    burst_parser.add_argument("--few", type=int, default=1000, help="accounts of the RSS base")
    burst_parser.add_argument("--partitions", type=int, default=4)
    day_parser = commands.add_parser("day", help="a city day replayed end to end")
    day_parser.add_argument("--households", type=int, default=CITY)
    day_parser.add_argument("--workers", type=int, default=1)
    day_parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {machine()}; date {today()}")
    print(f"command: python {' '.join(sys.argv)}", flush=True)
    (burst if args.command == "burst" else day)(args)


if __name__ == "__main__":
    main()
