"""``wattpay up``: the whole system on one machine (SPEC S11).

Broker (embedded Tansu unless ``--brokers`` names a cluster), topics, ClickHouse migration,
the billing flow (a supervised child process with crash recovery), the ClickHouse loader,
a Prometheus endpoint and the read-only query endpoint, until Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import start_http_server

from config.settings import Settings
from notify.service import run_notify_in_up
from pipelines.live import INPUT_TOPICS, OUTPUT_TOPICS
from pipelines.recovery import ensure_recovery_dir
from simulate.households import SimulatedHouseholds, SimulationOptions
from sinks.clickhouse import ClickHouseError, ClickHouseStore
from sinks.kafka import ensure_topics, kafka_config
from sinks.loader import Loader
from sinks.metrics import STATUSES, Metrics, create_metrics
from wattpay.broker import EmbeddedBroker
from wattpay.instance import STATE_FILE
from wattpay.query_server import serve_queries

log = logging.getLogger(__name__)


@dataclass
class UpOptions:
    """Where ``wattpay up`` keeps its state and listens."""

    state_dir: Path = Path(".wattpay")
    host: str = "127.0.0.1"
    query_port: int = 8124
    metrics_port: int = 9464
    billing_metrics_port: int = 9465
    partitions: int = 4
    workers: int = 1
    epoch_seconds: float = 2.0
    simulation: SimulationOptions | None = None


class Up:
    """The running system; `start`, then `wait` (Ctrl-C) or `stop`."""

    def __init__(self, settings: Settings, options: UpOptions) -> None:
        self.settings = settings
        self.options = options
        self.broker: EmbeddedBroker | None = None
        self.store = ClickHouseStore(settings.clickhouse_dsn)
        self.metrics: Metrics = create_metrics()
        self.stop_event = threading.Event()
        self.billing: subprocess.Popen[bytes] | None = None
        self.threads: list[threading.Thread] = []
        self.config: dict[str, str] = {}
        self.fresh_topics = False
        self.households: SimulatedHouseholds | None = None

    def start(self) -> None:
        """Bring everything up, in dependency order."""
        options = self.options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.brokers:
            self.config = kafka_config(self.settings)
        else:
            self.broker = EmbeddedBroker().start()
            self.config = {**self.broker.config, **self.settings.kafka}
            self.fresh_topics = True
        names = [self.settings.topic(t) for t in INPUT_TOPICS + OUTPUT_TOPICS]
        ensure_topics(self.config, names, options.partitions)
        self.store.migrate()
        start_http_server(options.metrics_port, addr=options.host, registry=self.metrics.registry)
        self.query_server = serve_queries(self.store, options.host, options.query_port)
        loader = Loader(
            self.config,
            self.settings.topic("facts"),
            self.store,
            max_rows=self.settings.batch_rows,
            max_seconds=self.settings.batch_seconds,
            on_batch=self._observe_batch,
        )
        self.loader = loader
        self._thread("loader", lambda: loader.run(self.stop_event))
        self._thread("accounts-gauge", self._account_gauge)
        self._thread("notify", lambda: run_notify_in_up(self))
        ensure_recovery_dir(options.state_dir / "recovery")
        self._start_billing()
        self._thread("billing-supervisor", self._supervise)
        if options.simulation is not None:
            self.households = SimulatedHouseholds(
                options.simulation, self.config, self.settings.topic_prefix, options.state_dir
            )
            self.households.start()
        self._write_state()

    def _thread(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self.threads.append(thread)

    def _observe_batch(self, _table: str, rows: int, seconds: float) -> None:
        self.metrics.clickhouse_batch_rows.observe(rows)
        self.metrics.clickhouse_insert_seconds.observe(seconds)

    def _account_gauge(self) -> None:
        """Accounts by status, from ClickHouse (every process of the billing flow feeds it)."""
        while not self.stop_event.wait(5.0):
            try:
                _, rows = self.store.query(
                    "SELECT status, count() FROM accounts FINAL GROUP BY status"
                )
            except ClickHouseError:
                continue
            counts = dict(rows)
            for status in STATUSES:
                self.metrics.accounts.labels(status).set(counts.get(status, 0))

    def billing_command(self) -> list[str]:
        """The child process that runs the billing flow."""
        options = self.options
        command = [
            sys.executable,
            "-m",
            "wattpay.cli",
            "billing",
            "--brokers",
            self.config["bootstrap.servers"],
            "--recovery-dir",
            str(options.state_dir / "recovery"),
            "--workers",
            str(options.workers),
            "--epoch-seconds",
            str(options.epoch_seconds),
            "--metrics-port",
            str(options.billing_metrics_port),
            "--metrics-host",
            options.host,
        ]
        if self.fresh_topics:
            command.append("--fresh-topics")
        return command

    def _start_billing(self) -> None:
        log_file = (self.options.state_dir / "billing.log").open("ab")
        self.billing = subprocess.Popen(  # noqa: S603
            self.billing_command(), stdout=log_file, stderr=subprocess.STDOUT
        )
        log_file.close()
        self.fresh_topics = False  # a restart of the child resumes from its snapshot

    def _supervise(self) -> None:
        """Restart the billing flow if it dies; it resumes from its last snapshot."""
        while not self.stop_event.wait(1.0):
            process = self.billing
            if process is not None and process.poll() is not None and not self.stop_event.is_set():
                log.warning("billing flow exited with %s; restarting", process.returncode)
                self._start_billing()

    def _write_state(self) -> None:
        options = self.options
        state = {
            "pid": os.getpid(),
            "brokers": self.config["bootstrap.servers"],
            "query": f"http://{options.host}:{options.query_port}",
            "metrics": [
                f"http://{options.host}:{options.metrics_port}/metrics",
                f"http://{options.host}:{options.billing_metrics_port}/metrics",
            ],
            "clickhouse": self.settings.clickhouse_dsn,
        }
        if self.households is not None:
            state["meters"] = str(self.households.registry_path)
            state["simulated_clock"] = {
                "start": self.households.clock.start.isoformat(),
                "speed": self.households.clock.speed,
                "anchor": self.households.clock.anchor,
            }
        (options.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        self.state = state

    def wait(self) -> None:
        """Run until SIGINT or SIGTERM, then stop."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop_event.set())
        while not self.stop_event.wait(0.5):
            pass
        self.stop()

    def stop(self) -> None:
        """Stop billing, drain the loader into ClickHouse, then the endpoints and the broker."""
        self.stop_event.set()
        started = time.monotonic()
        if self.households is not None:
            self.households.stop()
        process, self.billing = self.billing, None
        if process is not None and process.poll() is None:
            # Terminate, then kill: with recovery on, even a hard stop loses nothing
            # (the flow resumes from its last snapshot and repeats outputs with their ids).
            for stop_signal in (signal.SIGTERM, signal.SIGKILL):
                process.send_signal(stop_signal)
                try:
                    process.wait(5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        log.info("billing flow stopped after %.1fs", time.monotonic() - started)
        for thread in self.threads:
            thread.join(timeout=60)
            log.info("%s stopped after %.1fs", thread.name, time.monotonic() - started)
        if hasattr(self, "query_server"):
            self.query_server.shutdown()
        self.store.close()
        if self.broker is not None:
            self.broker.stop()
            log.info("broker stopped after %.1fs", time.monotonic() - started)
        (self.options.state_dir / STATE_FILE).unlink(missing_ok=True)


def banner(state: dict[str, object], embedded: bool) -> str:
    """What ``wattpay up`` prints once it runs."""
    lines = [
        "wattpay is up"
        + (f", with simulated meters in {state['meters']}" if "meters" in state else ""),
        f"  Kafka brokers   {state['brokers']}" + ("  (embedded, in memory)" if embedded else ""),
        f"  query endpoint  {state['query']}/query?sql=SELECT…   (wattpay sql uses it)",
        "  metrics         " + "  ".join(str(m) for m in state["metrics"]),  # type: ignore[union-attr]
        f"  ClickHouse      {state['clickhouse']}",
        "Ctrl-C stops everything; the next `wattpay up` resumes.",
    ]
    return "\n".join(lines)


def run_up(settings: Settings, options: UpOptions) -> int:
    """Start, print where everything is, run until interrupted."""
    up = Up(settings, options)
    try:
        up.start()
    except Exception:
        up.stop()
        raise
    print(banner(up.state, up.broker is not None), flush=True)
    up.wait()
    print(f"wattpay stopped; {up.loader.stats.rows_written} rows written this run", flush=True)
    return 0
