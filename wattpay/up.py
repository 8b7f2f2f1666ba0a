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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import start_http_server

from bus.kafka import ensure_topics, facts_feed, kafka_config, require_brokers, topic_names
from bus.topics import BILLING_INPUTS, FACTS, RESULTS
from config.errors import OperatorError
from config.settings import Settings
from jobs.schedule import monthly_scheduler
from notify.service import run_notify_service
from pipelines.metrics import STATUSES, Metrics, create_metrics
from pipelines.recovery import ensure_recovery_dir
from simulate.households import SimulatedHouseholds, SimulationOptions
from store.clickhouse import ClickHouseError, ClickHouseStore, QueryLimits, mask_dsn
from store.loader import Loader
from wattpay.backup import clickhouse_directory, restored_clickhouse_problem
from wattpay.documents import (
    prepare_in_background,
    render_bill_on_demand,
    render_invoice_on_demand,
)
from wattpay.durable import BUCKET, EmbeddedKafka
from wattpay.instance import InstanceRunning, StateDirLock, claim_state_dir
from wattpay.notices import notification_texts
from wattpay.query_server import require_token_beyond_loopback, serve_queries
from wattpay.retention import BatchObjects, Janitor, JanitorRound
from web.server import WebServer, options_from_env, serve_web
from web.sources import CommandOutcomes

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


class StartInterrupted(Exception):  # noqa: N818 - it is what happened, not an error
    """SIGINT or SIGTERM arrived while ``up`` was starting."""


@dataclass
class Service:
    """One part of ``wattpay up``: ``start`` brings it up, ``stop`` waits for it to end.

    ``up`` starts its services in the order declared in ``Up.services`` and stops those that
    started in the reverse order, after setting the one stop event every thread watches.
    """

    name: str
    start: Callable[[], None]
    stop: Callable[[], None] = lambda: None


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
        self.config: dict[str, str] = {}
        self.fresh_topics = False
        self.households: SimulatedHouseholds | None = None
        self.lock: StateDirLock | None = None
        self.web: WebServer | None = None
        self.state: dict[str, object] = {}
        self.started: list[Service] = []
        self.loader = Loader(
            lambda: facts_feed(self.config, settings.topic(FACTS.name))(),
            self.store,
            max_rows=settings.batch_rows,
            max_seconds=settings.batch_seconds,
            on_batch=self._observe_batch,
        )

    def services(self) -> list[Service]:
        """Everything ``up`` runs, in the order it starts (and, reversed, stops)."""
        return [
            Service("state directory", self._claim_state_dir, self._release_state_dir),
            Service("broker", self._start_broker, self._stop_broker),
            Service("topics", self._ensure_topics),
            Service("clickhouse", self.store.migrate, self.store.close),
            Service("metrics endpoint", self._serve_metrics),
            Service("query endpoint", self._serve_queries, self._stop_queries),
            self._thread("loader", self._run_loader),
            self._thread("retention", self._run_retention),
            self._thread("accounts-gauge", self._account_gauge),
            self._thread("monthly-bills", self._run_monthly_bills),
            self._thread("notify", self._run_notify),
            Service("billing", self._start_billing_flow, self._stop_billing),
            self._thread("billing-supervisor", self._supervise),
            Service("households", self._start_households, self._stop_households),
            Service("web", self._serve_web, self._stop_web),
        ]

    def start(self) -> None:
        """Bring every service up, in the declared order.

        Raises ``StartInterrupted`` if the stop event is set meanwhile (a signal): the
        services started so far are left for ``stop``.
        """
        require_token_beyond_loopback(self.options.host, self.settings.query_token)
        for service in self.services():
            if self.stop_event.is_set():
                raise StartInterrupted
            service.start()
            self.started.append(service)
        if self.stop_event.is_set():
            raise StartInterrupted
        self._write_state()

    def stop_on_signals(self) -> None:
        """SIGINT and SIGTERM set the stop event, from now on (also while starting)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop_event.set())

    def _claim_state_dir(self) -> None:
        problem = restored_clickhouse_problem(self.options.state_dir, self.settings.clickhouse_dsn)
        if problem is not None:
            raise OperatorError(problem)
        self.lock = claim_state_dir(self.options.state_dir)  # before anything else is touched

    def _release_state_dir(self) -> None:
        if self.lock is not None:
            self.lock.release()  # removes up.json: only the holder of the lock may

    def _start_broker(self) -> None:
        if self.settings.brokers:
            self.config.update(kafka_config(self.settings))
            require_brokers(self.config)
            return
        self.broker = EmbeddedKafka(self.options.state_dir, memory=self.options.memory_broker)
        self.broker.start()
        self.config.update({**self.broker.config, **self.settings.kafka})
        # Restarts happen in a thread that lives until the broker stops: the servers
        # are told to exit when the thread that started them exits.
        self.broker_thread = threading.Thread(
            target=self._supervise_broker, name="broker-supervisor", daemon=True
        )
        self.broker_thread.start()

    def _stop_broker(self) -> None:
        if self.broker is not None:
            self.broker_stop.set()
            self.broker_thread.join(timeout=60)
            self.broker.stop()

    def _ensure_topics(self) -> None:
        created = ensure_topics(self.config, topic_names(self.settings), self.options.partitions)
        # Input topics created just now (an in-memory broker, a new cluster) are read from
        # their start whatever position the billing flow's recovery snapshot holds.
        inputs = topic_names(self.settings, BILLING_INPUTS)
        self.fresh_topics = any(name in created for name in inputs)

    def _serve_metrics(self) -> None:
        options = self.options
        start_http_server(options.metrics_port, addr=options.host, registry=self.metrics.registry)

    def _serve_queries(self) -> None:
        self.query_server = serve_queries(
            self.store,
            self.options.host,
            self.options.query_port,
            token=self.settings.query_token,
            limits=QueryLimits(
                max_seconds=self.settings.query_max_seconds,
                max_result_rows=self.settings.query_max_rows,
            ),
        )

    def _stop_queries(self) -> None:
        self.query_server.shutdown()

    def _thread(self, name: str, target: Callable[[], None]) -> Service:
        """A service that is one thread, ended by the stop event."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        return Service(name, thread.start, lambda: thread.join(timeout=60))

    def _run_monthly_bills(self) -> None:
        jobs = self.options.state_dir / "jobs"
        monthly_scheduler(self.settings, self.config, jobs, self.stop_event)()

    def _run_notify(self) -> None:
        run_notify_service(
            self.settings,
            self.config,
            self.options.state_dir / "notifications.log",
            self.metrics.registry,
            self.stop_event,
        )

    def _start_billing_flow(self) -> None:
        ensure_recovery_dir(self.options.state_dir / "recovery")
        self._start_billing()

    def _start_households(self) -> None:
        if self.options.simulation is not None:
            self.households = SimulatedHouseholds(
                self.options.simulation, self.settings, self.config, self.options.state_dir
            )
            self.households.start()

    def _stop_households(self) -> None:
        if self.households is not None:
            self.households.stop()

    def _serve_web(self) -> None:
        """S17 pages and API, in the process that owns ClickHouse (SPEC S1)."""
        options = self.options
        web = options_from_env(options.host)
        # Without a token of its own, the one the rest of ``up`` requires beyond loopback.
        web.token = web.token or self.settings.query_token or None
        web.documents = web.documents or options.state_dir / "jobs"  # the monthly jobs' output
        web.render_invoice = render_invoice_on_demand
        web.render_bill = render_bill_on_demand
        web.notification_text = notification_texts(self.settings)
        web.plans = self.settings.rules.plans
        web.plan_names = self.settings.plan_names
        web.metrics_urls = (
            f"http://{options.host}:{options.metrics_port}/metrics",
            f"http://{options.host}:{options.billing_metrics_port}/metrics",
        )
        outcomes = CommandOutcomes(self.config, self.settings.topic(RESULTS.name))
        self.web = serve_web(self.store, web, outcomes, self.stop_event)
        if self.web is not None:
            prepare_in_background(self.settings.seller_name)  # the first PDF is then as quick

    def _stop_web(self) -> None:
        if self.web is not None:
            self.web.stop()

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

    def _run_retention(self) -> None:
        """The janitor of the embedded durable broker's records (`wattpay/retention.py`)."""
        broker = self.broker
        if broker is None or broker.store is None or not self.settings.retention.enabled:
            return  # a cluster applies its own retention; an in-memory broker loses all anyway
        store = broker.store
        Janitor(
            self.settings.retention,
            self.settings.topic_prefix,
            self.config,
            lambda: BatchObjects(store.endpoint, BUCKET, broker.cluster_id),
            self.options.state_dir / "recovery",
            vacuum=store.vacuum,
            on_round=self._observe_retention,
        ).run(self.stop_event)

    def _observe_retention(self, done: JanitorRound) -> None:
        for topic, removed in done.removed.items():
            self.metrics.retention_removed.labels(topic).inc(removed)

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
        embedded = clickhouse_directory(self.settings.clickhouse_dsn)
        if embedded is not None:  # absolute, for `wattpay backup` wherever it runs from
            state["clickhouse_dir"] = str(embedded)
        if self.households is not None:
            state["meters"] = str(self.households.registry_path)
            state["simulated_clock"] = {
                "start": self.households.clock.start.isoformat(),
                "speed": self.households.clock.speed,
                "anchor": self.households.clock.anchor,
            }
        if self.web is not None:
            state["web"] = self.web.url
        self.state = state
        if self.lock is not None:
            self.lock.write_state(state)  # mode 0600; the DSN above carries no secret

    def wait(self) -> None:
        """Run until SIGINT or SIGTERM, then stop."""
        self.stop_on_signals()
        while not self.stop_event.wait(0.5):
            pass
        self.stop()

    def stop(self) -> None:
        """Set the stop event, then stop the started services in reverse order.

        Billing stops before the loader drains into ClickHouse; the broker goes last.
        """
        self.stop_event.set()
        started = time.monotonic()
        while self.started:
            service = self.started.pop()
            service.stop()
            log.info("%s stopped after %.1fs", service.name, time.monotonic() - started)

    def _stop_billing(self) -> None:
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
    up.stop_on_signals()  # before anything starts: an early Ctrl-C stops what did start
    try:
        up.start()
    except InstanceRunning:
        raise  # nothing was started, and the other instance's files stay as they are
    except StartInterrupted:
        up.stop()
        print("wattpay stopped while starting; nothing is left running", flush=True)
        return 0
    except OSError as err:
        up.stop()
        if err.errno != errno.EADDRINUSE:
            raise
        raise OperatorError(
            f"a port is already in use ({err.strerror}): choose others with --query-port, "
            "--metrics-port and --billing-metrics-port"
        ) from err
    except Exception:
        interrupted = up.stop_event.is_set() and up.problem is None  # a signal, mid-start
        up.stop()
        if interrupted:
            log.warning("interrupted while starting", exc_info=True)
            print("wattpay stopped while starting; nothing is left running", flush=True)
            return 0
        raise
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(banner(up.state, up.broker.description if up.broker else None), flush=True)
    up.wait()
    print(f"wattpay stopped; {up.loader.stats.rows_written} rows written this run", flush=True)
    if up.problem is not None:
        print(f"wattpay up stopped because {up.problem}", file=sys.stderr, flush=True)
        return 1
    return 0
