"""Helpers for tests of the live system: a real broker, real processes, real ClickHouse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bus.kafka import consume_json, ensure_topics, new_producer
from bus.ports import free_port
from bus.topics import CATALOGUE, FAILURES
from pipelines.replay_files import INPUT_FILES
from wattpay.broker import EmbeddedBroker

WATTPAY = [sys.executable, "-m", "wattpay.cli"]
TOPICS = [t.name for t in CATALOGUE if t.name != FAILURES.name]
TABLE_QUERIES = {
    "daily_usage": "SELECT * FROM daily_usage FINAL ORDER BY account_id, day",
    "ledger": "SELECT * FROM ledger FINAL ORDER BY account_id, seq",
    "points_ledger": "SELECT * FROM points_ledger FINAL ORDER BY account_id, seq",
    "accounts": "SELECT * EXCEPT (updated_at) FROM accounts FINAL ORDER BY account_id",
    "rejected": "SELECT rejection_id, topic, reason FROM rejected FINAL ORDER BY rejection_id",
    "intervals": "SELECT count() AS n, sum(kwh) AS kwh, sum(cost) AS cost FROM intervals FINAL",
    "events": "SELECT event_id, type, ts, data FROM events FINAL ORDER BY event_id",
}


def start_broker(partitions: int = 3) -> EmbeddedBroker:
    broker = EmbeddedBroker().start()
    ensure_topics(broker.config, [f"wattpay.{t}" for t in TOPICS], partitions)
    return broker


def produce_inputs(broker: EmbeddedBroker, directory: Path) -> int:
    """Publish a replay directory's files to the input topics, keyed as S2 says."""
    # murmur2 places keyless lines (bad input) on one partition, so every run of the same
    # files gives the same offsets, hence the same rejection ids.
    producer = new_producer(broker.config, extra={"linger.ms": "20", "partitioner": "murmur2"})
    count = 0
    for topic, name in INPUT_FILES.items():
        path = directory / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                payload = json.loads(line)
            except ValueError:
                payload = None
            field = "meter_id" if topic == "readings" else "account_id"
            key = payload.get(field) if isinstance(payload, dict) else None
            producer.produce(
                f"wattpay.{topic}", value=line.encode(), key=str(key).encode() if key else None
            )
            producer.poll(0)
            count += 1
    assert producer.flush(30) == 0
    return count


def start_billing(
    broker: EmbeddedBroker,
    recovery: Path,
    metrics_port: int,
    *extra: str,
    process_id: int | None = None,
    addresses: str | None = None,
) -> subprocess.Popen[bytes]:
    command = [
        *WATTPAY,
        "billing",
        "--brokers",
        broker.bootstrap,
        "--recovery-dir",
        str(recovery),
        "--metrics-port",
        str(metrics_port),
        "--epoch-seconds",
        "0.5",
        *extra,
    ]
    if process_id is not None:
        command += ["-i", str(process_id), "-a", str(addresses)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_loader(broker: EmbeddedBroker, dsn: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*WATTPAY, "load", "--brokers", broker.bootstrap, "--clickhouse", dsn],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def metric(port: int, name: str) -> float:
    """Sum of a metric's samples on a Prometheus endpoint (0 when absent or down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def wait_until(condition, timeout: float, what: str, interval: float = 0.3, explain=None) -> None:
    """Wait for ``condition``; on a timeout, fail with ``explain()`` (say, a log's end) too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    detail = f"\n{explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def settled(read, ready, quiet: float = 3.0, limit: float = 120.0):
    """``read()`` once ``ready()`` holds and two reads ``quiet`` seconds apart agree.

    Caught up, live billing applies messages in arrival order (S14.1 live mode), and the
    broker delivers the topics independently: a payment fed just before the sentinel may
    reach billing after it, so the sentinel's row alone does not mean every input is billed.
    """
    deadline = time.monotonic() + limit
    previous = None
    while True:
        wait_until(ready, 60, "every fact loaded", interval=0.5)
        current = read()
        if current == previous:
            return current
        assert time.monotonic() < deadline, "the billed tables kept changing"
        previous = current
        time.sleep(quiet)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tables(dsn: str) -> dict[str, list[dict]]:
    """The analysts' view (FINAL) of every table, via `wattpay sql`."""
    result = {}
    for name, query in TABLE_QUERIES.items():
        done = subprocess.run(
            [
                *WATTPAY,
                "sql",
                query,
                "--clickhouse",
                dsn,
                "--format",
                "json",
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "WATTPAY_CLICKHOUSE_DSN": ""},
        )
        result[name] = json.loads(done.stdout)
    return result


def output_ids(broker: EmbeddedBroker) -> dict[str, set[str]]:
    """Every id on the output topics (duplicates collapse: consumers de-duplicate by id)."""
    ids = {}
    for topic, field in (
        ("notifications", "event_id"),
        ("meter-commands", "command_id"),
        ("payment-requests", "request_id"),
        ("dlq", "rejection_id"),
    ):
        ids[topic] = {
            value[field] for _, value in consume_json(broker.config, f"wattpay.{topic}", timeout=20)
        }
    return ids


def free_ports() -> dict[str, int]:
    """A free port for each endpoint of one ``wattpay up``."""
    return {name: free_port() for name in ("query", "metrics", "billing", "web")}


PORT_TAKEN = "a port is already in use"
"""What ``wattpay up`` says when a port it was given is bound by someone else."""
FIRST_START_ATTEMPTS = 3
"""A test's ports are drawn free, but another test running beside it may bind one of them
before ``wattpay up`` does: a first start that meets one taken draws new ports and tries
again. A restart keeps its ports (it must be able to bind them again)."""


def start_up(  # noqa: PLR0913 - how to start, where it writes, how long to wait
    launch: Callable[[dict[str, int]], subprocess.Popen[bytes]],
    ports: dict[str, int],
    log_path: Path,
    state_file: Path,
    timeout: float,
    *,
    first: bool,
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """Start ``wattpay up`` with ``launch(ports)`` until it writes ``state_file``.

    Returns the process and the ports it runs on. A first start that meets a port taken
    tries again on new ones (``FIRST_START_ATTEMPTS``); otherwise an ``up`` that ends while
    starting fails with the end of its log.
    """
    attempts = FIRST_START_ATTEMPTS if first else 1
    for attempt in range(1, attempts + 1):
        started_at = log_path.stat().st_size if log_path.exists() else 0
        process = launch(ports)
        wait_until(
            lambda: state_file.exists() or process.poll() is not None,  # noqa: B023 - this loop's
            timeout,
            "wattpay up to write its state file",
        )
        if process.poll() is None:
            return process, ports
        said = log_path.read_bytes()[started_at:].decode("utf-8", "replace")
        if PORT_TAKEN not in said or attempt == attempts:
            break
        ports = free_ports()  # another test bound one meanwhile
    raise AssertionError(f"wattpay up ended while starting:\n{said[-3000:]}")


def up_command(
    dsn: str, ports: dict[str, int], *extra: str, config: Path | None = None
) -> list[str]:
    """``wattpay up`` on ClickHouse ``dsn`` and the given ports, 2 partitions, 1 s epochs."""
    return [
        *WATTPAY,
        *(["--config", str(config)] if config is not None else []),
        "up",
        "--clickhouse",
        dsn,
        "--query-port",
        str(ports["query"]),
        "--metrics-port",
        str(ports["metrics"]),
        "--billing-metrics-port",
        str(ports["billing"]),
        "--partitions",
        "2",
        "--epoch-seconds",
        "1",
        *extra,
    ]


def up_environment(ports: dict[str, int]) -> dict[str, str]:
    """The environment of a test's ``wattpay up``: its web app on its own free port."""
    return {**os.environ, "WATTPAY_WEB_PORT": str(ports["web"])}


class Instance:
    """A `wattpay up` child process working in its own directory."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.ports = free_ports()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, config: Path | None = None) -> dict:
        """Start ``wattpay up`` (with settings file ``config`` if given) and wait for it."""
        state_file = self.work / ".wattpay" / "up.json"
        state_file.unlink(missing_ok=True)
        log_path = self.work / "up.log"

        def launch(ports: dict[str, int]) -> subprocess.Popen[bytes]:
            if getattr(self, "log", None) is not None:
                self.log.close()  # an attempt that met a port taken
            self.log = log_path.open("ab")
            return subprocess.Popen(
                up_command(f"chdb://{self.work / 'clickhouse'}", ports, *extra, config=config),
                cwd=self.work,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env=up_environment(ports),
            )

        self.process, self.ports = start_up(
            launch, self.ports, log_path, state_file, 60, first=self.process is None
        )
        self.state = json.loads(state_file.read_text())
        return self.state

    def log_tail(self, lines: int = 60) -> str:
        """The end of this instance's log, to explain a failed wait (pytest keeps few tmp dirs)."""
        self.log.flush()
        text = (self.work / "up.log").read_text(encoding="utf-8", errors="replace")
        return "up.log, last lines:\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(90)
        self.log.close()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*WATTPAY, *args],
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def sql(self, query: str) -> list[dict]:
        done = self.run("sql", query, "--format", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


__all__ = [
    "free_port",
    "metric",
    "output_ids",
    "produce_inputs",
    "start_billing",
    "start_broker",
    "start_loader",
    "stop",
    "tables",
    "wait_until",
]
