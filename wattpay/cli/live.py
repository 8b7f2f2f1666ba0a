"""``wattpay billing`` and ``wattpay load``: the live billing flow and the ClickHouse loader."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from datetime import datetime
from pathlib import Path

from pipelines.recovery import ensure_recovery_dir
from wattpay.cli.common import add_command
from wattpay.cli.common import settings_from_args as _settings

DEFAULT_RECOVERY = ".wattpay/recovery"


def cmd_billing(args: argparse.Namespace) -> int:
    """Run the live billing flow on Kafka with crash recovery."""
    from prometheus_client import start_http_server

    from bus.kafka import kafka_config, require_brokers
    from pipelines.live import run_live_flow
    from pipelines.metrics import create_metrics
    from wattpay.collector import tune_for_long_lived_state

    settings = _settings(args)
    tune_for_long_lived_state()
    require_brokers(kafka_config(settings))
    recovery = ensure_recovery_dir(Path(args.recovery_dir))
    addresses = args.addresses.split(";") if args.addresses else None
    metrics = create_metrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_host, registry=metrics.registry)
    run_live_flow(
        settings,
        recovery,
        workers=args.workers,
        process_id=args.process_id,
        addresses=addresses,
        epoch_seconds=args.epoch_seconds,
        fresh_topics=args.fresh_topics,
        metrics=metrics,
    )
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Load the facts topic into ClickHouse until interrupted."""
    from bus.kafka import facts_feed, kafka_config, require_brokers
    from bus.topics import FACTS
    from store.clickhouse import ClickHouseStore
    from store.loader import Loader

    settings = _settings(args)
    require_brokers(kafka_config(settings))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        store.migrate()
        loader = Loader(
            facts_feed(kafka_config(settings), settings.topic(FACTS.name)),
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


def port_number(text: str) -> int:
    """A TCP port given on the command line or in the environment (1-65535)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {text[:40]!r}")
    return int(text)


def add_live_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``up``, ``demo``, ``billing`` and ``load`` on the main parser."""
    up = add_command(
        commands,
        "up",
        "run the whole system on this machine until Ctrl-C",
        """
        wattpay up                                 # embedded Kafka and ClickHouse in .wattpay/
        wattpay up --simulate 8 --speed 720        # with 8 simulated meters, a day in 2 minutes
        wattpay up --brokers kafka1:9092 --clickhouse http://wattpay@db:8123/billing
        """,
        description="Run Kafka (embedded unless --brokers), the live billing, the ClickHouse "
        "loader, the query endpoint and the metrics endpoints on this machine until Ctrl-C. "
        "Other wattpay commands started from the same directory find it by themselves.",
    )
    up.add_argument(
        "--brokers", metavar="HOST:PORT,…", help="use this Kafka cluster, not an embedded one"
    )
    up.add_argument(
        "--memory-broker",
        action="store_true",
        help="embedded broker in memory: faster, but a restart starts with empty topics",
    )
    up.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb:///dir or http(s)://user@host:8123/db (env WATTPAY_CLICKHOUSE_DSN)",
    )
    up.add_argument(
        "--state-dir",
        default=".wattpay",
        metavar="DIR",
        help="logs, recovery snapshots and up.json (default: %(default)s)",
    )
    up.add_argument(
        "--host", default="127.0.0.1", help="address the endpoints bind to (default: %(default)s)"
    )
    for option, env, default, what in (
        ("--query-port", "WATTPAY_QUERY_PORT", 8124, "query endpoint port"),
        ("--metrics-port", "WATTPAY_METRICS_PORT", 9464, "metrics port of the loader and accounts"),
        ("--billing-metrics-port", "WATTPAY_BILLING_METRICS_PORT", 9465, "billing metrics port"),
    ):
        up.add_argument(
            option,
            type=port_number,
            default=os.environ.get(env) or str(default),
            help=f"{what} (default: {default}; env {env})",
        )
    up.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions of each topic created here (default: %(default)s)",
    )
    up.add_argument(
        "-w", "--workers", type=int, default=1, help="billing worker threads (default: %(default)s)"
    )
    up.add_argument(
        "--epoch-seconds",
        type=float,
        default=2.0,
        help="seconds between recovery snapshots (default: %(default)s)",
    )
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
        help="simulated seconds per real second (default: %(default)s, a day in 4 minutes)",
    )
    up.add_argument(
        "--sim-start",
        metavar="TIME",
        help="simulated start time, ISO-8601 with offset (default: a Monday 4 weeks ago)",
    )
    up.set_defaults(handler=cmd_up)

    demo = add_command(
        commands,
        "demo",
        "watch simulated households run low, get cut off, pay and come back",
        """
        wattpay demo
        wattpay demo --meters 4 --speed 2880 --timeout 120
        """,
        description="Bring the system up with simulated meters and narrate alerts, cuts, "
        "top-ups and reconnections as they happen; stop once a household has been cut off "
        "and reconnected.",
    )
    demo.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb:///dir or http(s)://user@host:8123/db (env WATTPAY_CLICKHOUSE_DSN)",
    )
    demo.add_argument(
        "--state-dir",
        default=".wattpay/live-demo",
        metavar="DIR",
        help="logs and recovery snapshots (default: %(default)s)",
    )
    demo.add_argument(
        "--meters", type=int, default=8, help="simulated meters (default: %(default)s)"
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1440.0,
        help="simulated seconds per real second (default: %(default)s, a day a minute)",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up after this long (default: %(default)s)",
    )
    demo.set_defaults(handler=cmd_demo)

    billing = add_command(
        commands,
        "billing",
        "run the live billing on Kafka, resuming from its recovery snapshots",
        """
        wattpay billing --brokers kafka1:9092
        wattpay billing --brokers kafka1:9092 -w 2 --metrics-port 9465
        wattpay billing -i 0 -a "10.0.0.1:2101;10.0.0.2:2101"   # process 0 of two machines
        """,
        description="Read the accounts, payments and readings topics, bill them and publish "
        "notifications, meter commands, payment requests, rejections and analytics facts. "
        "After a crash it resumes from its last snapshot without losing or doubling anything.",
    )
    billing.add_argument(
        "--brokers", metavar="HOST:PORT,…", help="Kafka bootstrap servers (env WATTPAY_BROKERS)"
    )
    billing.add_argument(
        "--recovery-dir",
        default=DEFAULT_RECOVERY,
        metavar="DIR",
        help="recovery snapshots (default: %(default)s)",
    )
    billing.add_argument(
        "-w", "--workers", type=int, default=1, help="workers per process (default: %(default)s)"
    )
    billing.add_argument(
        "-i", "--process-id", type=int, default=None, help="this process's index in --addresses"
    )
    billing.add_argument(
        "-a", "--addresses", default=None, help="host:port;host:port of every process"
    )
    billing.add_argument(
        "--epoch-seconds",
        type=float,
        default=2.0,
        help="seconds between recovery snapshots (default: %(default)s)",
    )
    billing.add_argument(
        "--metrics-port", type=int, default=0, help="metrics endpoint port (default: none)"
    )
    billing.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics endpoint binds to (default: %(default)s)",
    )
    billing.add_argument(
        "--fresh-topics",
        action="store_true",
        help="the input topics were just created: read them from the start",
    )
    billing.set_defaults(handler=cmd_billing)

    load = add_command(
        commands,
        "load",
        "load the analytics facts from Kafka into ClickHouse until interrupted",
        """
        wattpay load --brokers kafka1:9092
        wattpay load --brokers kafka1:9092 --clickhouse http://wattpay@db:8123/billing
        """,
    )
    load.add_argument(
        "--brokers", metavar="HOST:PORT,…", help="Kafka bootstrap servers (env WATTPAY_BROKERS)"
    )
    load.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb:///dir or http(s)://user@host:8123/db (env WATTPAY_CLICKHOUSE_DSN)",
    )
    load.set_defaults(handler=cmd_load)
