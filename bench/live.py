"""Live throughput and latency: `wattpay billing` on the embedded broker vs a bare consume.

Usage: .venv/bin/python bench/live.py [--readings N] [--households 400] [--days 30]
       [--partitions 4] [--epoch-seconds 2] [--rate 200] [--latency-seconds 30]
       [--fetch-wait-ms 10] [--processes 1]

Starts the embedded Tansu broker on 127.0.0.1 and publishes the accounts, payments and (the
first N, default all) readings of a `wattpay example` set (bench/data/, written once, the
same set as bench/replay.py) before anything is measured. Then, in this same run:

- **bare:** one confluent-kafka consumer reads every input partition from the start and
  `json.loads` each message, nothing else (the baseline);
- **billing:** `wattpay billing` as a subprocess, fresh recovery directory; messages/s from
  its `wattpay_messages_in_total` counter, sampled until it has counted every published
  message;
- **latency:** at a fixed offered load (`--rate` readings/s for `--latency-seconds`), the
  time from producing a reading to consuming the `low_balance` notification it causes. Each
  reading goes to a fresh account opened just above its threshold, so every one of them
  crosses it; the notification's event_id (`low_balance:ACCOUNT:METER@TS`) names the reading.
  The broker round trip (produce, then consume, a ping topic at the same rate) is measured
  first as the latency baseline. The accounts of every latency run are opened before the
  first one, so each run sees the same state (400 + 2 × rate × seconds open accounts). With
  ``--fetch-wait-ms`` (default 10; 0 skips it) the billing process is then restarted on its
  recovery store with that ``fetch.wait.max.ms`` (``WATTPAY_KAFKA_FETCH_WAIT_MAX_MS``) and
  the latency measured again: the live source waits for every partition to report its end
  before it applies caught-up messages, and an empty fetch only returns after that wait.

With ``--processes N`` billing runs as a Bytewax cluster of N local processes
(``wattpay billing -i K -a …``, one recovery store); its counters are summed over them.

With ``--compare-storage`` it measures only bare consume and billing throughput, once on
the in-memory broker and once on the durable one (Tansu on the embedded SeaweedFS S3 store,
as `wattpay up` runs it), each on a fresh broker with the same published set, in this run.

Prints the figures and Markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.billing_process import (  # noqa: E402
    STORE,
    BillingProcess,
    billing_process,
    metric_sum,
)
from billing.clock import parse_ts, ts_text  # noqa: E402
from bus.kafka import (  # noqa: E402
    Producer,
    assign,
    assign_at_end,
    ensure_topics,
    is_end_of_partition,
    new_consumer,
    new_producer,
    partitions_of,
)
from bus.topics import BILLING_INPUTS, CATALOGUE, names  # noqa: E402
from config.settings import DEFAULT_TOPIC_PREFIX  # noqa: E402

INPUT_TOPICS = tuple(names(BILLING_INPUTS))
OUTPUT_TOPICS = tuple(n for n in names(CATALOGUE) if n not in INPUT_TOPICS)
from pipelines.replay_files import INPUT_FILES  # noqa: E402
from simulate.example import write_example  # noqa: E402
from wattpay.broker import EmbeddedBroker  # noqa: E402
from wattpay.durable import EmbeddedKafka  # noqa: E402

PREFIX = DEFAULT_TOPIC_PREFIX  # the billing process runs with the default settings
PING_TOPIC = PREFIX + "bench-ping"
QUIET_CLIENT = {"log_level": "3"}  # no librdkafka chatter when the broker goes away at the end
# Latency accounts: opened just above the default threshold; one baseline reading, then one
# reading 2 kWh later (≈ 1.08 yuan on the tiered plan) that takes them below it.
LATENCY_OPEN = "2026-06-01T00:00:00+08:00"
LATENCY_READING = "2026-06-01T06:00:00+08:00"


# ---------------------------------------------------------------- input


def example_inputs(households: int, days: int, seed: int) -> Path:
    """The example set of bench/replay.py (written once into bench/data/)."""
    inputs = ROOT / "bench" / "data" / f"h{households}-d{days}-s{seed}" / "input"
    if not (inputs / "readings.jsonl").exists():
        write_example(inputs, households=households, days=days, seed=seed, start=date(2026, 3, 2))
    return inputs


def start_broker(partitions: int) -> EmbeddedBroker:
    """A fresh in-memory broker with every wattpay topic (and the ping topic)."""
    broker = EmbeddedBroker().start()
    topics = [PREFIX + t for t in (*INPUT_TOPICS, *OUTPUT_TOPICS)] + [PING_TOPIC]
    ensure_topics(broker.config, topics, partitions)
    return broker


def _produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None,
    on_delivery: Callable[[object, object], None] | None = None,
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def publish_inputs(config: dict[str, str], directory: Path, readings: int | None) -> dict[str, int]:
    """Publish the set's files to the input topics, keyed as S2 says; return counts by topic.

    With ``readings`` only that many reading lines (the earliest) are published.
    """
    producer = new_producer(
        config,
        extra={
            **QUIET_CLIENT,
            "linger.ms": "20",
            "partitioner": "murmur2",
            "queue.buffering.max.messages": "500000",
        },
    )
    counts = {}
    for topic, name in INPUT_FILES.items():
        field_name = "meter_id" if topic == "readings" else "account_id"
        count = 0
        with (directory / name).open("rb") as lines:
            for line in lines:
                if topic == "readings" and readings is not None and count >= readings:
                    break
                line = line.rstrip(b"\n")
                if not line.strip():
                    continue
                try:
                    payload = json.loads(line)
                except ValueError:
                    payload = None
                key = payload.get(field_name) if isinstance(payload, dict) else None
                _produce(producer, PREFIX + topic, line, str(key).encode() if key else None)
                count += 1
        counts[topic] = count
    if producer.flush(300):
        raise RuntimeError("the broker did not confirm every input message")
    return counts


# ---------------------------------------------------------------- bare consume


@dataclass
class BarePass:
    messages: int
    readings: int
    seconds: float
    from_first: float = 0.0  # from the first message read to the end (no client start-up)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def bare_consume(
    config: dict[str, str],
    timeout: float = 600,
    starts: dict[tuple[str, int], int] | None = None,
) -> BarePass:
    """Read every input partition from the start and parse each message; nothing else.

    With ``starts`` ((topic, partition) → first offset) only those partitions, from there.
    """
    started = time.perf_counter()
    consumer = new_consumer(
        config, f"bench-bare-{uuid.uuid4().hex}", end_of_partition=True, extra=QUIET_CLIENT
    )
    try:
        parts = (
            [(t, p, offset) for (t, p), offset in starts.items()]
            if starts is not None
            else [
                (PREFIX + t, p, None)
                for t in INPUT_TOPICS
                for p in partitions_of(consumer, PREFIX + t)
            ]
        )
        assign(consumer, parts)
        at_end: set[tuple[str, int]] = set()
        messages = readings = 0
        first = 0.0
        deadline = time.monotonic() + timeout
        while len(at_end) < len(parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consume: {messages} messages, not at the end")
            for message in consumer.consume(2000, 0.05):
                error = message.error()
                if error is not None:
                    if is_end_of_partition(error):
                        at_end.add((message.topic(), message.partition()))
                        continue
                    raise RuntimeError(str(error))
                if not messages:
                    first = time.perf_counter()
                try:
                    json.loads(message.value())
                except ValueError:
                    pass
                messages += 1
                if message.topic() == PREFIX + "readings":
                    readings += 1
    finally:
        consumer.close()
    ended = time.perf_counter()
    return BarePass(messages, readings, ended - started, ended - first if messages else 0.0)


# ---------------------------------------------------------------- latency


@dataclass
class Latency:
    sent: int
    latencies: list[float]
    unexpected: int

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def paced_latency(
    config: dict[str, str],
    messages: list[tuple[str, bytes, bytes, str]],
    out_topic: str,
    identify: Callable[[bytes], str | None],
    rate: float,
    drain: float = 30.0,
) -> Latency:
    """Produce ``(topic, key, value, id)`` at ``rate``/s; time each until its id is consumed."""
    sent_at: dict[str, float] = {}
    seen: dict[str, float] = {}
    unexpected = 0
    stop = threading.Event()
    consumer = new_consumer(
        config,
        f"bench-latency-{uuid.uuid4().hex}",
        extra={**QUIET_CLIENT, "fetch.wait.max.ms": "10"},
    )
    assign_at_end(consumer, out_topic, partitions_of(consumer, out_topic))
    # The embedded broker reports the end of a partition as the last batch's first offset + 1,
    # so the tail of the last batch written before now is read first: skip it.
    drained = time.monotonic() + 10
    while consumer.poll(0.3) is not None and time.monotonic() < drained:
        pass

    def consume() -> None:
        nonlocal unexpected
        while not stop.is_set():
            message = consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            arrived = time.monotonic()
            ident = identify(message.value())
            if ident is None:
                continue
            if ident in sent_at:
                seen.setdefault(ident, arrived)
            else:
                unexpected += 1

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    producer = new_producer(config, extra={**QUIET_CLIENT, "linger.ms": "0"})
    try:
        began = time.monotonic()
        for index, (topic, key, value, ident) in enumerate(messages):
            pause = began + index / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent_at[ident] = time.monotonic()
            _produce(producer, topic, value, key)
        producer.flush(30)
        deadline = time.monotonic() + drain
        while len(seen) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        reader.join(5)
        consumer.close()
    return Latency(len(messages), [seen[i] - sent_at[i] for i in seen], unexpected)


def ping_messages(count: int) -> list[tuple[str, bytes, bytes, str]]:
    return [
        (PING_TOPIC, str(i).encode(), json.dumps({"id": f"ping-{i}"}).encode(), f"ping-{i}")
        for i in range(count)
    ]


def _ping_id(value: bytes) -> str | None:
    return json.loads(value).get("id")


def _low_balance_id(value: bytes) -> str | None:
    ident = json.loads(value).get("event_id", "")
    return ident if ident.startswith("low_balance:BENCH") else None


def prepare_latency_accounts(
    config: dict[str, str], billing: BillingProcess, count: int, tag: str
) -> list[tuple[str, bytes, bytes, str]]:
    """Open ``count`` accounts just above threshold with a baseline reading each.

    Returns the readings that will take each below its threshold, with the event_id of the
    notification each must cause.
    """
    producer = new_producer(
        config, extra={**QUIET_CLIENT, "linger.ms": "20", "partitioner": "murmur2"}
    )
    ids = [(f"BENCH{tag}-A{i:05d}", f"BENCH{tag}-M{i:05d}") for i in range(count)]
    stages = (
        (
            "accounts",
            lambda aid, meter: {
                "type": "open",
                "account_id": aid,
                "meter_id": meter,
                "plan": "zhejiang-tiered",
                "ts": LATENCY_OPEN,
                "opening_balance": "20.50",
                "low_balance_threshold": "20.00",
            },
        ),
        (
            "readings",
            lambda aid, meter: {"meter_id": meter, "ts": LATENCY_OPEN, "energy_kwh": "1000.000"},
        ),
    )
    for topic, build in stages:
        before = billing.counted(topic)
        for aid, meter in ids:
            key = (aid if topic == "accounts" else meter).encode()
            _produce(producer, PREFIX + topic, json.dumps(build(aid, meter)).encode(), key)
        if producer.flush(60):
            raise RuntimeError("latency set-up messages not confirmed")
        billing.wait_counted(before + count, topic=topic, timeout=300)
        billing.wait_idle()
    time.sleep(2 * billing.epoch_seconds + 1)  # let an epoch close before measuring
    cause_ts = ts_text(parse_ts(LATENCY_READING))
    return [
        (
            PREFIX + "readings",
            meter.encode(),
            json.dumps(
                {"meter_id": meter, "ts": LATENCY_READING, "energy_kwh": "1002.000"}
            ).encode(),
            f"low_balance:{aid}:{meter}@{cause_ts}",
        )
        for aid, meter in ids
    ]


# ---------------------------------------------------------------- report


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def measure_latency(
    broker: EmbeddedBroker,
    billing: BillingProcess,
    rate: float,
    seconds: float,
    readings: list[tuple[str, bytes, bytes, str]] | None = None,
) -> Latency:
    """Reading -> low_balance latency at ``rate`` readings/s for ``seconds`` (fresh accounts).

    ``readings`` are prepared ones (see ``prepare_latency_accounts``); by default new ones.
    """
    count = int(rate * seconds)
    readings = readings or prepare_latency_accounts(broker.config, billing, count, "S")
    cpu_before, snaps_before, began = billing.cpu(), billing.snapshot_seconds(), time.monotonic()
    latency = paced_latency(
        broker.config, readings, PREFIX + "notifications", _low_balance_id, rate
    )
    billing.check_alive()
    print(
        f"reading -> low_balance at {rate:g}/s for {seconds:g} s "
        f"(epoch {billing.epoch_seconds:g} s): {len(latency.latencies)}/{latency.sent} "
        f"(+{latency.unexpected} repeats for earlier latency accounts), "
        f"p50 {ms(latency.quantile(0.5))} ms, p90 {ms(latency.quantile(0.9))} ms, "
        f"p99 {ms(latency.quantile(0.99))} ms, max {ms(latency.quantile(1.0))} ms; "
        f"billing CPU {billing.cpu() - cpu_before:.1f} s, "
        f"{snapshot_text(snaps_before, billing.snapshot_seconds(), time.monotonic() - began)}"
    )
    return latency


def snapshot_split(seconds: dict[str, float]) -> tuple[float, float, float, float]:
    """Seconds in snapshots of (the directory, accounts, sources and sinks; store writes)."""
    directory = seconds.get("route", 0.0)
    accounts = seconds.get("accounts", 0.0)
    store = seconds.get(STORE, 0.0)
    return directory, accounts, sum(seconds.values()) - directory - accounts - store, store


def snapshot_text(before: dict[str, float], after: dict[str, float], wall: float) -> str:
    spent = {step: value - before.get(step, 0.0) for step, value in after.items()}
    directory, accounts, other, store = snapshot_split(spent)
    total = directory + accounts + other + store
    return (
        f"snapshots + store writes {total:.1f} s = {total / wall:.0%} of {wall:.0f} s "
        f"(directory {directory:.2f} s, accounts {accounts:.2f} s, sources and sinks "
        f"{other:.2f} s, store writes {store:.2f} s)"
    )


def latency_row(label: str, rate: float, seconds: float, ping: Latency, lat: Latency) -> str:
    return (
        f"| {today()} | {label} | {rate:g}/s × {seconds:g} s "
        f"| {len(lat.latencies):,}/{lat.sent:,} "
        f"| {ms(ping.quantile(0.5))} / {ms(ping.quantile(0.99))} "
        f"| {ms(lat.quantile(0.5))} / {ms(lat.quantile(0.9))} / {ms(lat.quantile(0.99))} "
        f"/ {ms(lat.quantile(1.0))} | {lat.quantile(0.5) / ping.quantile(0.5):.0f} |"
    )


def compare_storage(args: argparse.Namespace, inputs: Path) -> None:
    """Bare consume and billing throughput, in-memory broker vs durable broker, same run."""
    rows = []
    for kind in ("memory", "durable"):
        workdir = Path(tempfile.mkdtemp(prefix=f"wattpay-bench-{kind}-"))
        kafka = EmbeddedKafka(workdir / "state", memory=kind == "memory").start()
        try:
            topics = [PREFIX + t for t in (*INPUT_TOPICS, *OUTPUT_TOPICS)]
            ensure_topics(kafka.config, topics, args.partitions)
            started = time.perf_counter()
            counts = publish_inputs(kafka.config, inputs, args.readings)
            total = sum(counts.values())
            published = time.perf_counter() - started
            bare = bare_consume(kafka.config)
            if bare.messages != total:
                raise RuntimeError(f"bare consume read {bare.messages:,} of {total:,}")
            bootstrap = kafka.config["bootstrap.servers"]
            with BillingProcess(bootstrap, workdir, args.epoch_seconds, kind) as billing:
                seconds, rate = billing.wait_counted(total).processing(total)
            disk = sum(f.stat().st_size for f in (workdir / "state").rglob("*") if f.is_file())
            print(
                f"{kind}: published {total:,} in {published:.1f} s = {total / published:,.0f}/s; "
                f"bare {bare.rate:,.0f} msg/s; billing {rate:,.0f} msg/s ({seconds:.1f} s); "
                f"state dir {disk / 1e6:.1f} MB"
            )
            rows.append((kind, total, total / published, bare.rate, rate, disk))
        finally:
            kafka.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    memory = rows[0]
    print()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        "| date | broker | messages | produce msg/s | bare msg/s | billing msg/s "
        "| billing / bare | billing / in-memory billing |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, total, produce, bare_rate, rate, _disk in rows:
        print(
            f"| {today()} | {kind} | {total:,} | {produce:,.0f} | {bare_rate:,.0f} | {rate:,.0f} "
            f"| {rate / bare_rate:.3f} | {rate / memory[4]:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=None, help="publish only N readings")
    parser.add_argument("--households", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--epoch-seconds", type=float, default=2.0)
    parser.add_argument(
        "--processes", type=int, default=1, help="billing as a cluster of N processes (-i/-a)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="offered readings/s")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=10,
        help="also measure latency after a restart with this fetch.wait.max.ms (0: skip)",
    )
    parser.add_argument(
        "--compare-storage",
        action="store_true",
        help="only throughput, in-memory vs durable embedded broker",
    )
    args = parser.parse_args()

    inputs = example_inputs(args.households, args.days, args.seed)
    if args.compare_storage:
        compare_storage(args, inputs)
        return
    workdir = Path(tempfile.mkdtemp(prefix="wattpay-bench-live-"))
    broker = start_broker(args.partitions)
    rows = []
    try:
        started = time.perf_counter()
        counts = publish_inputs(broker.config, inputs, args.readings)
        total = sum(counts.values())
        print(f"machine: {machine()}")
        print(f"published {total:,} messages {counts} in {time.perf_counter() - started:.1f} s")
        bare = bare_consume(broker.config)
        if bare.messages != total:
            raise RuntimeError(f"bare consume read {bare.messages:,} of {total:,}")
        print(f"bare consume + parse: {bare.seconds:.1f} s = {bare.rate:,.0f} messages/s")

        main_billing = billing_process(
            broker.bootstrap, workdir, args.epoch_seconds, "main", processes=args.processes
        )
        with main_billing as billing:
            progress = billing.wait_counted(total)
            seconds, rate = progress.processing(total)
            cpu = billing.cpu()
            print(
                f"wattpay billing ({args.processes} process(es), epoch {args.epoch_seconds:g} s): "
                f"{seconds:.1f} s processing "
                f"= {rate:,.0f} messages/s ({counts['readings'] / seconds:,.0f} readings/s); "
                f"{progress.wall(total):.1f} s from spawn; CPU {cpu:.0f} s; "
                f"ratio to bare {rate / bare.rate:.3f}"
            )
            print(f"  {snapshot_text({}, billing.snapshot_seconds(), seconds)}")
            billing.wait_idle()
            notifications = metric_sum(billing.samples(), "wattpay_notifications_total")
            print(f"notifications emitted: {notifications:,.0f}")
            print(f"recovery store after the backlog: {billing.recovery_bytes() / 1e6:.1f} MB")

            count = int(args.rate * args.latency_seconds)
            ping = paced_latency(
                broker.config, ping_messages(count), PING_TOPIC, _ping_id, args.rate
            )
            print(
                f"broker round trip at {args.rate:g}/s: {len(ping.latencies)}/{ping.sent}, "
                f"p50 {ms(ping.quantile(0.5))} ms, p99 {ms(ping.quantile(0.99))} ms"
            )
            # Both latency runs get their accounts now, so both run with the same state size.
            phases = 2 if args.fetch_wait_ms else 1
            prepared = prepare_latency_accounts(broker.config, billing, phases * count, "L")
            lat = measure_latency(
                broker, billing, args.rate, args.latency_seconds, prepared[:count]
            )
            rows.append(latency_row("default client", args.rate, args.latency_seconds, ping, lat))
        if args.fetch_wait_ms:
            tuned = billing_process(
                broker.bootstrap,
                workdir,
                args.epoch_seconds,
                "tuned",
                processes=args.processes,
                recovery=billing.recovery,
                env={"WATTPAY_KAFKA_FETCH_WAIT_MAX_MS": str(args.fetch_wait_ms)},
            )
            with tuned:
                tuned.wait_idle(quiet=5.0)
                lat = measure_latency(
                    broker, tuned, args.rate, args.latency_seconds, prepared[count:]
                )
                label = f"fetch.wait.max.ms={args.fetch_wait_ms}"
                rows.append(latency_row(label, args.rate, args.latency_seconds, ping, lat))
        print()
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        print(
            "| date | messages | readings | billing processes | epoch s | bare msg/s "
            "| billing msg/s | billing / bare |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print(
            f"| {today()} | {total:,} | {counts['readings']:,} | {args.processes} "
            f"| {args.epoch_seconds:g} "
            f"| {bare.rate:,.0f} | {rate:,.0f} | {rate / bare.rate:.3f} |"
        )
        print()
        print(
            "| date | billing consumer | offered load | notified / sent | broker p50 / p99 ms "
            "| billing p50 / p90 / p99 / max ms | p50 / broker p50 |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
