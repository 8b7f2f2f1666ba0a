"""Notification delivery: `wattpay notify` to a local webhook receiver vs a bare POST loop.

Usage: .venv/bin/python bench/notify.py [--notifications 3000] [--concurrency 8]
       [--rate 100] [--latency-seconds 20] [--channel webhook|sms]

A receiver process on 127.0.0.1 answers every POST with 200 at once and logs when it
accepted which key. In this same run:

- **bare:** the bench POSTs a notification-sized JSON body to the receiver, once in a plain
  sequential loop (latency per POST, p50/p99) and once from ``--concurrency`` threads
  (requests/s): what HTTP alone costs on this machine (the baseline);
- **throughput:** N notifications are published to the embedded broker first, then
  `wattpay notify` (a subprocess; ``--concurrency`` per channel, no rate limit, no quiet
  hours) renders, signs and delivers them and records a ``deliveries`` fact for each;
  notifications/s from the receiver's first to its last acceptance;
- **latency:** with the worker caught up, notifications are published at ``--rate`` per
  second for ``--latency-seconds``; latency is from handing each to the producer to the
  receiver accepting it (broker, worker, rendering, HTTP), p50/p99.

Prints the figures and a Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bus.kafka import assign_at_end, ensure_topics, new_consumer, new_producer  # noqa: E402
from bus.ports import free_port  # noqa: E402
from wattpay.broker import EmbeddedBroker  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-signing-key-of-32-bytes!!!").decode()
TOPICS = ("notifications", "accounts", "facts", "notification-failures")


# ---------------------------------------------------------------- receiver (own process)


def serve(port: int, out: Path) -> None:
    """Accept every POST with 200; on SIGTERM write ``key accepted_at`` lines to ``out``."""
    accepted: list[tuple[str, float]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                body = str(len(accepted)).encode()
            self._reply(body)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = self.headers.get("webhook-id") or json.loads(body).get("idempotency_key", "")
            with lock:
                accepted.append((key, time.time()))
            self._reply(b'{"ok":true}')

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    with lock:
        out.write_text("".join(f"{k}\t{t}\n" for k, t in accepted), encoding="utf-8")


def accepted_count(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.read())


# ---------------------------------------------------------------- helpers


def notification(event_id: str, index: int) -> dict:
    return {
        "event_id": event_id,
        "type": "low_balance",
        "account_id": f"A{index % 500:05d}",
        "ts": "2026-03-01T10:15:00+08:00",
        "locale": "zh-CN" if index % 10 else "en",
        "phone": f"138{index % 100_000_000:08d}",
        "data": {"available": "12.34", "threshold": "20.00", "days_left": 3},
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def post(url: str, body: bytes, key: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the local receiver
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


def bare(url: str, count: int, concurrency: int) -> tuple[list[float], float]:
    """Sequential POST latencies, and requests/s with ``concurrency`` threads."""
    body = json.dumps(notification("bare", 1), ensure_ascii=False).encode()
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        post(url, body, f"bare-seq-{i}")
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: post(url, body, f"bare-par-{i}"), range(count)))
    return latencies, count / (time.perf_counter() - started)


def broker_round_trip(config: dict[str, str], rate: float, seconds: float) -> list[float]:
    """Produce to a ping topic at ``rate`` and consume it back: seconds per message."""
    topic = "wattpay.bench-ping"
    ensure_topics(config, [topic], 4)
    consumer = new_consumer({**config, "fetch.wait.max.ms": "50"}, "bench-ping")
    assign_at_end(consumer, topic, range(4))
    consumer.poll(1.0)
    producer = new_producer(config)
    count = int(rate * seconds)
    sent: dict[bytes, float] = {}
    received: dict[bytes, float] = {}

    def consume() -> None:
        deadline = time.monotonic() + seconds + 30
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                received[message.value()] = time.time()

    thread = threading.Thread(target=consume)
    thread.start()
    begin = time.perf_counter()
    for i in range(count):
        time.sleep(max(begin + i / rate - time.perf_counter(), 0))
        value = str(i).encode()
        sent[value] = time.time()
        producer.produce(topic, value, value)
        producer.poll(0)
    producer.flush(30)
    thread.join()
    consumer.close()
    return [received[k] - t for k, t in sent.items() if k in received]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0, help="offered notifications/s")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--channel", choices=["webhook", "sms"], default="webhook")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return

    work = Path(tempfile.mkdtemp(prefix="wattpay-bench-notify-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    accepted_log = work / "accepted.tsv"
    receiver = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(accepted_log)])
    broker = EmbeddedBroker().start()
    worker = None
    try:
        wait_for(lambda: _answers(url), 30, "receiver")
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}"
        )
        seq, par_rate = bare(url, min(args.notifications, 2000), args.concurrency)
        print(
            f"bare POST: sequential p50 {ms(quantile(seq, 0.5))} ms, p99 "
            f"{ms(quantile(seq, 0.99))} ms ({1 / (sum(seq) / len(seq)):,.0f}/s); "
            f"{args.concurrency} threads {par_rate:,.0f}/s"
        )

        ensure_topics(broker.config, [f"wattpay.{t}" for t in TOPICS], 4)
        ping = broker_round_trip(broker.config, args.rate, min(args.latency_seconds, 10))
        print(
            f"broker round trip at {args.rate:g}/s: p50 {ms(quantile(ping, 0.5))} ms, "
            f"p99 {ms(quantile(ping, 0.99))} ms"
        )
        producer = new_producer(broker.config)
        for i in range(args.notifications):
            value = notification(f"low_balance:bench:{i}", i)
            producer.produce(
                "wattpay.notifications", json.dumps(value).encode(), value["account_id"].encode()
            )
            producer.poll(0)
        producer.flush(60)
        config = work / "wattpay.toml"
        config.write_text(
            f"""
[notify]
concurrency = {args.concurrency}
rate_per_second = 1000000
quiet_hours = false
[notify.routes]
default = ["{args.channel}"]
[notify.sms]
url = "{url}"
[notify.webhook]
url = "{url}"
secret = "{SECRET}"
""",
            encoding="utf-8",
        )
        before = accepted_count(url)
        log = (work / "notify.log").open("ab")
        started = time.time()
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wattpay.cli",
                "--config",
                str(config),
                "notify",
                "--brokers",
                broker.bootstrap,
            ],
            stdout=log,
            stderr=log,
            cwd=ROOT,
        )
        wait_for(lambda: accepted_count(url) - before >= args.notifications, 600, "throughput")
        wall = time.time() - started

        sent: dict[str, float] = {}
        count = int(args.rate * args.latency_seconds)
        begin = time.perf_counter()
        for i in range(count):
            due = begin + i / args.rate
            time.sleep(max(due - time.perf_counter(), 0))
            event_id = f"low_balance:latency:{i}"
            value = notification(event_id, i)
            sent[event_id] = time.time()
            producer.produce(
                "wattpay.notifications", json.dumps(value).encode(), value["account_id"].encode()
            )
            producer.poll(0)
        producer.flush(60)
        target = before + args.notifications + count
        wait_for(lambda: accepted_count(url) >= target, 120, "latency run")
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(60)
        broker.stop()

    accepted = {}
    for line in accepted_log.read_text(encoding="utf-8").splitlines():
        key, at = line.split("\t")
        accepted.setdefault(key, float(at))
    times = sorted(t for k, t in accepted.items() if k.startswith("low_balance:bench:"))
    rate = (len(times) - 1) / (times[-1] - times[0])
    latencies = [accepted[k] - t for k, t in sent.items()]
    p50, p99 = quantile(latencies, 0.5), quantile(latencies, 0.99)
    print(
        f"notify throughput: {len(times):,} {args.channel} notifications, {rate:,.0f}/s "
        f"(first to last acceptance; {wall:.1f} s wall incl. start-up); "
        f"{rate / par_rate:.2f} × the bare {args.concurrency}-thread POST rate"
    )
    print(
        f"notify latency at {args.rate:g}/s: p50 {ms(p50)} ms, p99 {ms(p99)} ms "
        f"(broker round trip p50 {ms(quantile(ping, 0.5))} ms, p99 {ms(quantile(ping, 0.99))} ms)"
    )
    day = datetime.now(UTC).date().isoformat()
    print(
        "\n| date | channel | notifications | bare POST/s (threads) | notify/s | notify / bare "
        "| bare POST p50 / p99 ms | broker round trip p50 / p99 ms | notify p50 / p99 ms |"
    )
    print(
        f"| {day} | {args.channel} | {len(times):,} | {par_rate:,.0f} ({args.concurrency}) | "
        f"{rate:,.0f} | {rate / par_rate:.2f} | {ms(quantile(seq, 0.5))} / "
        f"{ms(quantile(seq, 0.99))} | {ms(quantile(ping, 0.5))} / {ms(quantile(ping, 0.99))} | "
        f"{ms(p50)} / {ms(p99)} |"
    )


def _answers(url: str) -> bool:
    try:
        accepted_count(url)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
