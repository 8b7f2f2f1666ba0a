"""``wattpay billing`` and ``wattpay load``: the live billing flow and the ClickHouse loader."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import datetime, timedelta
from pathlib import Path

from pipelines.recovery import ensure_recovery_dir
from wattpay.cli.common import settings_from_args as _settings

DEFAULT_RECOVERY = ".wattpay/recovery"


def cmd_billing(args: argparse.Namespace) -> int:
    """Run the live billing flow on Kafka with crash recovery."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main
    from prometheus_client import start_http_server

    from pipelines.live import build_live_flow
    from sinks.metrics import create_metrics

    settings = _settings(args)
    recovery = ensure_recovery_dir(Path(args.recovery_dir))
    addresses = args.addresses.split(";") if args.addresses else None
    metrics = create_metrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_host, registry=metrics.registry)
    cli_main(
        build_live_flow(settings, fresh_topics=args.fresh_topics, metrics=metrics),
        workers_per_process=args.workers,
        process_id=args.process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=args.epoch_seconds),
        recovery_config=RecoveryConfig(str(recovery)),
    )
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Load the facts topic into ClickHouse until interrupted."""
    from sinks.clickhouse import ClickHouseStore
    from sinks.kafka import kafka_config
    from sinks.loader import Loader

    settings = _settings(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        store.migrate()
        loader = Loader(
            kafka_config(settings),
            settings.topic("facts"),
            store,
            max_rows=settings.batch_rows,
            max_seconds=settings.batch_seconds,
        )
        loader.run(stop)
    logging.getLogger(__name__).info("loader stopped after %d rows", loader.stats.rows_written)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Run the whole system on this machine until Ctrl-C."""
    from simulate.households import SimulationOptions
    from wattpay.up import UpOptions, run_up

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = _settings(args)
    options = UpOptions(
        state_dir=Path(args.state_dir),
        host=args.host,
        query_port=args.query_port,
        metrics_port=args.metrics_port,
        billing_metrics_port=args.billing_metrics_port,
        partitions=args.partitions,
        workers=args.workers,
        epoch_seconds=args.epoch_seconds,
        memory_broker=args.memory_broker,
        simulation=SimulationOptions(
            meters=args.simulate,
            speed=args.speed,
            start=datetime.fromisoformat(args.sim_start) if args.sim_start else None,
        )
        if args.simulate
        else None,
    )
    return run_up(settings, options)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the live system with simulated households and narrate until the loop closes."""
    from wattpay.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    settings = _settings(args)
    return run_demo(
        settings, Path(args.state_dir), meters=args.meters, speed=args.speed, timeout=args.timeout
    )


def add_live_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``up``, ``billing`` and ``load`` on the main parser."""
    up = commands.add_parser("up", help=cmd_up.__doc__)
    up.add_argument("--brokers", metavar="HOST:PORT,…", help="an external Kafka cluster")
    up.add_argument(
        "--memory-broker",
        action="store_true",
        help="embedded broker in memory: faster, but a restart starts with empty topics",
    )
    up.add_argument("--clickhouse", metavar="DSN")
    up.add_argument("--state-dir", default=".wattpay")
    up.add_argument("--host", default="127.0.0.1", help="address the endpoints bind to")
    up.add_argument("--query-port", type=int, default=8124)
    up.add_argument("--metrics-port", type=int, default=9464)
    up.add_argument("--billing-metrics-port", type=int, default=9465)
    up.add_argument("--partitions", type=int, default=4)
    up.add_argument("-w", "--workers", type=int, default=1)
    up.add_argument("--epoch-seconds", type=float, default=2.0)
    up.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="add N simulated Modbus meters, their poller, executor and households",
    )
    up.add_argument(
        "--speed",
        type=float,
        default=360.0,
        help="simulated seconds per real second (360: a day in 4 minutes)",
    )
    up.add_argument("--sim-start", help="simulated start time (ISO with offset)")
    up.set_defaults(handler=cmd_up)

    demo = commands.add_parser("demo", help=cmd_demo.__doc__)
    demo.add_argument("--clickhouse", metavar="DSN")
    demo.add_argument("--state-dir", default=".wattpay/live-demo")
    demo.add_argument("--meters", type=int, default=8)
    demo.add_argument("--speed", type=float, default=1440.0, help="simulated seconds per second")
    demo.add_argument("--timeout", type=float, default=300.0, help="give up after (seconds)")
    demo.set_defaults(handler=cmd_demo)

    billing = commands.add_parser("billing", help=cmd_billing.__doc__)
    billing.add_argument("--brokers", metavar="HOST:PORT,…", help="env WATTPAY_BROKERS")
    billing.add_argument("--recovery-dir", default=DEFAULT_RECOVERY)
    billing.add_argument("-w", "--workers", type=int, default=1, help="workers per process")
    billing.add_argument("-i", "--process-id", type=int, default=None)
    billing.add_argument(
        "-a", "--addresses", default=None, help="host:port;host:port of every process"
    )
    billing.add_argument(
        "--epoch-seconds", type=float, default=2.0, help="snapshot interval (see BENCHMARKS.md)"
    )
    billing.add_argument("--metrics-port", type=int, default=0, help="Prometheus endpoint port")
    billing.add_argument("--metrics-host", default="127.0.0.1")
    billing.add_argument(
        "--fresh-topics",
        action="store_true",
        help="input topics were just created: read them from the start",
    )
    billing.set_defaults(handler=cmd_billing)

    load = commands.add_parser("load", help=cmd_load.__doc__)
    load.add_argument("--brokers", metavar="HOST:PORT,…", help="env WATTPAY_BROKERS")
    load.add_argument("--clickhouse", metavar="DSN")
    load.set_defaults(handler=cmd_load)
