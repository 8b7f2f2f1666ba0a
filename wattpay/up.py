"""``wattpay up``: the whole system on one machine (SPEC S11).

Broker (embedded Tansu on an embedded S3 store, or in memory with ``--memory-broker``,
unless ``--brokers`` names a cluster), topics, ClickHouse migration, the billing flow (a
supervised child process with crash recovery), the ClickHouse loader, a Prometheus endpoint
and the read-only query endpoint, until Ctrl-C. The embedded broker and store are
supervised too: one that dies is started again on the same address.
"""

from __future__ import annotations

import errno
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

from config.errors import OperatorError
from config.settings import Settings
from jobs.schedule import monthly_scheduler
from notify.service import run_notify_in_up
from pipelines.live import INPUT_TOPICS, OUTPUT_TOPICS
from pipelines.recovery import ensure_recovery_dir
from simulate.households import SimulatedHouseholds, SimulationOptions
from sinks.clickhouse import ClickHouseError, ClickHouseStore, QueryLimits, mask_dsn
from sinks.kafka import ensure_topics, kafka_config, require_brokers
from sinks.loader import Loader
from sinks.metrics import STATUSES, Metrics, create_metrics
from wattpay.durable import EmbeddedKafka
from wattpay.instance import InstanceRunning, StateDirLock, claim_state_dir
from wattpay.query_server import require_token_beyond_loopback, serve_queries
from web.server import serve_web

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
    memory_broker: bool = False


class Up:
    """The running system; `start`, then `wait` (Ctrl-C) or `stop`."""

    def __init__(self, settings: Settings, options: UpOptions) -> None:
        self.settings = settings
        self.options = options
        self.broker: EmbeddedKafka | None = None
        self.store = ClickHouseStore(settings.clickhouse_dsn)
        self.metrics: Metrics = create_metrics()
        self.stop_event = threading.Event()
        self.broker_stop = threading.Event()
        self.problem: str | None = None
        self.billing: subprocess.Popen[bytes] | None = None
        self.threads: list[threading.Thread] = []
        self.config: dict[str, str] = {}
        self.fresh_topics = False
        self.households: SimulatedHouseholds | None = None
        self.lock: StateDirLock | None = None

    def start(self) -> None:
        """Bring everything up, in dependency order."""
        options = self.options
        require_token_beyond_loopback(options.host, self.settings.query_token)
        self.lock = claim_state_dir(options.state_dir)  # before anything else is touched
        if self.settings.brokers:
            self.config = kafka_config(self.settings)
            require_brokers(self.config)
        else:
            self.broker = EmbeddedKafka(options.state_dir, memory=options.memory_broker).start()
            self.config = {**self.broker.config, **self.settings.kafka}
            # Restarts happen in a thread that lives until the broker stops: the servers
            # are told to exit when the thread that started them exits.
            self.broker_thread = threading.Thread(
                target=self._supervise_broker, name="broker-supervisor", daemon=True
            )
            self.broker_thread.start()
        names = [self.settings.topic(t) for t in INPUT_TOPICS + OUTPUT_TOPICS]
        created = ensure_topics(self.config, names, options.partitions)
        # Input topics created just now (an in-memory broker, a new cluster) are read from
        # their start whatever position the billing flow's recovery snapshot holds.
        self.fresh_topics = any(self.settings.topic(t) in created for t in INPUT_TOPICS)
        self.store.migrate()
        start_http_server(options.metrics_port, addr=options.host, registry=self.metrics.registry)
        self.query_server = serve_queries(
            self.store,
            options.host,
            options.query_port,
            token=self.settings.query_token,
            limits=QueryLimits(
                max_seconds=self.settings.query_max_seconds,
                max_result_rows=self.settings.query_max_rows,
            ),
        )
        loader = Loader(
            self.config,
            self.settings.topic("facts"),
            self.store,
            max_rows=self.settings.batch_rows,
            max_seconds=self.settings.batch_seconds,
            on_batch=self._observe_batch,
        )
        self.loader = loader
        self._thread("loader", self._run_loader)
        self._thread("accounts-gauge", self._account_gauge)
        self._thread(
            "monthly-bills",
            monthly_scheduler(
                self.settings, self.config, options.state_dir / "jobs", self.stop_event
            ),
        )
        self._thread("notify", lambda: run_notify_in_up(self))
        ensure_recovery_dir(options.state_dir / "recovery")
        self._start_billing()
        self._thread("billing-supervisor", self._supervise)
        if options.simulation is not None:
            self.households = SimulatedHouseholds(
                options.simulation, self.settings, self.config, options.state_dir
            )
            self.households.start()
        self._write_state()
        self.web = serve_web(self)  # S17 pages and API, in the process that owns ClickHouse

    def _thread(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self.threads.append(thread)

    def _run_loader(self) -> None:
        """The loader, started again if it fails (a broker outage); it resumes from its offsets."""
        while True:
            try:
                self.loader.run(self.stop_event)
            except Exception:  # noqa: BLE001 - logged, then the loader starts over
                log.exception("the loader failed; restarting it")
                if self.stop_event.wait(1.0):
                    return
            else:
                return

    def _supervise_broker(self) -> None:
        """Restart the embedded broker or its S3 store if one dies; stop if it cannot be."""
        assert self.broker is not None
        while not self.broker_stop.wait(1.0):
            try:
                for line in self.broker.check():
                    log.warning("%s", line)
            except Exception as err:  # noqa: BLE001 - any failure to restart stops up cleanly
                self.problem = str(err)
                log.error("%s", err)
                loader = getattr(self, "loader", None)
                if loader is not None:
                    loader.drain_seconds = 0.0  # nothing left to drain from
                self.stop_event.set()
                self.broker_stop.wait()
        self.broker.stop()

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
            self.billing_command(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.settings.child_environment()},
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
            "clickhouse": mask_dsn(self.settings.clickhouse_dsn),
        }
        if self.households is not None:
            state["meters"] = str(self.households.registry_path)
            state["simulated_clock"] = {
                "start": self.households.clock.start.isoformat(),
                "speed": self.households.clock.speed,
                "anchor": self.households.clock.anchor,
            }
        if self.lock is not None:
            self.lock.write_state(state)  # mode 0600; the DSN above carries no secret
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
            self.broker_stop.set()
            self.broker_thread.join(timeout=60)
            self.broker.stop()
            log.info("broker stopped after %.1fs", time.monotonic() - started)
        if self.lock is not None:
            self.lock.release()  # removes up.json: only the holder of the lock may


def banner(state: dict[str, object], embedded: str | None) -> str:
    """What ``wattpay up`` prints once it runs."""
    lines = [
        "wattpay is up"
        + (f", with simulated meters in {state['meters']}" if "meters" in state else ""),
        f"  Kafka brokers   {state['brokers']}" + (f"  ({embedded})" if embedded else ""),
        f"  query endpoint  {state['query']}/query?sql=SELECT…   (wattpay sql uses it)",
        *([f"  web pages       {state['web']}/"] if "web" in state else []),
        "  metrics         " + "  ".join(str(m) for m in state["metrics"]),  # type: ignore[union-attr]
        f"  ClickHouse      {mask_dsn(str(state['clickhouse']))}",
        "Ctrl-C stops everything; the next `wattpay up` resumes.",
    ]
    return "\n".join(lines)


def run_up(settings: Settings, options: UpOptions) -> int:
    """Start, print where everything is, run until interrupted."""
    up = Up(settings, options)
    try:
        up.start()
    except InstanceRunning:
        raise  # nothing was started, and the other instance's files stay as they are
    except OSError as err:
        up.stop()
        if err.errno != errno.EADDRINUSE:
            raise
        raise OperatorError(
            f"a port is already in use ({err.strerror}): choose others with --query-port, "
            "--metrics-port and --billing-metrics-port"
        ) from err
    except Exception:
        up.stop()
        raise
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(banner(up.state, up.broker.description if up.broker else None), flush=True)
    up.wait()
    print(f"wattpay stopped; {up.loader.stats.rows_written} rows written this run", flush=True)
    if up.problem is not None:
        print(f"wattpay up stopped because {up.problem}", file=sys.stderr, flush=True)
        return 1
    return 0
