"""``wattpay simulate``, ``wattpay ingest modbus`` and ``wattpay execute`` (SPEC S13)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

from wattpay.cli.common import add_command, examples_epilog
from wattpay.cli.common import settings_from_args as _settings


def _duration(text: str) -> timedelta:
    """``15m``, ``900s``, ``1h`` or plain seconds as a positive timedelta."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        span = timedelta(seconds=float(number) * units[unit])
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 15m, 30s)") from err
    if span <= timedelta(0):
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return span


def _start_time(text: str) -> datetime:
    """ISO-8601 time; without an offset it is read in the billing time zone (Asia/Shanghai)."""
    from billing.clock import LOCAL_ZONE

    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_ZONE)


def _run_async(main_coroutine: object) -> None:
    """Run a coroutine until it ends, Ctrl-C or SIGTERM, cleaning up either way."""
    import asyncio
    import signal

    async def guarded() -> None:
        task = asyncio.ensure_future(main_coroutine)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(guarded())
    except KeyboardInterrupt:
        pass


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve simulated meters over Modbus TCP, consuming like real households."""
    from meters.clock import SimClock
    from meters.modbus import quiet_modbus_logs
    from meters.registers import parse_relay
    from simulate.simulator import Simulator, serve

    quiet_modbus_logs()
    try:
        relay = None if args.no_relay else parse_relay(args.relay)
        clock = SimClock(args.start, args.speed, args.anchor)
        simulator = Simulator(
            args.meters,
            model=args.model,
            host=args.host,
            first_port=args.port,
            units_per_port=args.units_per_port,
            clock=clock,
            seed=args.seed,
            relay=relay,
            latency=args.latency_ms / 1000,
        )
    except ValueError as err:
        print(f"wattpay simulate: {err}", file=sys.stderr)
        return 2

    def ready(sim: Simulator) -> None:
        poll = ["wattpay", "ingest", "modbus", "--registry", str(args.registry_out or "FILE")]
        poll += ["--start", clock.start.isoformat(), "--speed", repr(clock.speed)]
        poll += ["--anchor", repr(clock.anchor)]
        summary = {
            "meters": len(sim.meters),
            "model": args.model,
            "host": sim.host,
            "ports": sim.ports,
            "registry": str(args.registry_out) if args.registry_out else None,
            "clock": {"start": clock.start.isoformat(), "speed": clock.speed},
            "anchor": clock.anchor,
            "poll_with": " ".join(poll),
        }
        print(json.dumps(summary), flush=True)

    try:
        _run_async(
            serve(simulator, registry_out=args.registry_out, duration=args.duration, on_ready=ready)
        )
    except OSError as err:
        print(f"wattpay simulate: {err}", file=sys.stderr)
        return 1
    return 0


DEFAULT_INGEST_DIR = Path(".wattpay/ingest")


def cmd_ingest_modbus(args: argparse.Namespace) -> int:
    """Poll Modbus meters listed in a registry and publish their readings."""
    import logging

    from bus.kafka import DeliveryError, KafkaPublisher, kafka_config
    from meters.clock import SimClock
    from meters.modbus import ModbusClient, quiet_modbus_logs
    from meters.poller import JsonlPublisher, Poller, PollStats, Publisher
    from meters.registers import RegistryError, load_registry
    from pipelines.metrics import serve_poll_metrics

    quiet_modbus_logs()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        registry = load_registry(args.registry)
    except RegistryError as err:
        print(f"wattpay ingest modbus: {err}", file=sys.stderr)
        return 2
    settings = _settings(args)
    shared = registry.clock  # the simulator's clock, when it wrote the registry
    clock = SimClock(
        args.start or (shared.start if shared else None),
        args.speed or (shared.speed if shared else 1.0),
        args.anchor if args.anchor is not None else (shared.anchor if shared else None),
    )
    # An explicit --out writes JSONL; otherwise Kafka when brokers are known (--brokers,
    # WATTPAY_BROKERS or a running `wattpay up`), else JSONL to the default directory.
    publisher: Publisher
    if settings.brokers and args.out is None:
        publisher = KafkaPublisher(kafka_config(settings), settings.topic_prefix)
        where = f"Kafka {settings.brokers} topic {settings.topic('readings')}"
    else:
        publisher = JsonlPublisher(args.out or DEFAULT_INGEST_DIR, settings.topic_prefix)
        where = f"{args.out or DEFAULT_INGEST_DIR}/{settings.topic('readings')}.jsonl"
    print(f"wattpay ingest modbus: publishing readings to {where}", file=sys.stderr)
    poll_stats = PollStats()
    if args.metrics_port:
        serve_poll_metrics(poll_stats, args.metrics_port)

    async def run() -> None:
        async with ModbusClient(
            connections=args.connections, timeout=args.timeout, retries=args.retries
        ) as client:
            poller = Poller(
                registry.meters,
                client,
                publisher,
                interval=args.interval,
                clock=clock,
                stats=poll_stats,
            )
            try:
                await poller.run(rounds=args.rounds)
            finally:
                stats = poller.stats
                failures = {f"{model}/{kind}": n for (model, kind), n in stats.failures.items()}
                print(
                    json.dumps(
                        {"rounds": stats.rounds, "readings": stats.readings, "failed": failures}
                    ),
                    file=sys.stderr,
                )

    try:
        _run_async(run())
    except DeliveryError as err:
        print(f"wattpay ingest modbus: {err}", file=sys.stderr)
        return 1
    finally:
        publisher.close()
    return 0


def cmd_execute(args: argparse.Namespace) -> int:
    """Apply meter commands from Kafka to relays and publish their outcomes."""
    import asyncio
    import logging
    import signal

    from meters.modbus import ModbusClient, quiet_modbus_logs
    from meters.registers import RegistryError, load_registry
    from wattpay.executor_service import run_executor

    quiet_modbus_logs()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        registry = load_registry(args.registry)
    except RegistryError as err:
        print(f"wattpay execute: {err}", file=sys.stderr)
        return 2
    settings = _settings(args)
    if not settings.brokers:
        print(
            "wattpay execute: no Kafka brokers (--brokers, WATTPAY_BROKERS or a running "
            "`wattpay up`)",
            file=sys.stderr,
        )
        return 2

    async def run() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)  # finish the batch in hand, then stop
        async with ModbusClient(
            connections=args.connections, timeout=args.timeout, retries=args.retries
        ) as client:
            stats = await run_executor(settings, registry, stop=stop, client=client)
        return vars(stats)

    print(json.dumps(asyncio.run(run())), file=sys.stderr)
    return 0


def add_meter_commands(commands: argparse._SubParsersAction) -> None:
    """``wattpay simulate``, ``wattpay ingest modbus`` and ``wattpay execute``."""
    from meters.registers import MAX_UNIT_ID, MODELS

    def with_clock(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--start",
            type=_start_time,
            metavar="TIME",
            help="simulated start time, ISO-8601 (no offset: billing time zone)",
        )
        sub.add_argument("--speed", type=float, help="simulated seconds per real second")
        sub.add_argument(
            "--anchor", type=float, help="Unix time at which the simulated clock reads --start"
        )
        return sub

    simulate = with_clock(
        add_command(
            commands,
            "simulate",
            "serve simulated meters over Modbus TCP, consuming like real households",
            """
            wattpay simulate --meters 10 --registry-out meters.toml
            wattpay simulate --meters 500 --port 0 --speed 360 --registry-out meters.toml
            wattpay simulate --model ddsu666 --no-relay --duration 60
            """,
            description="Serve simulated electricity meters over Modbus TCP. Each follows a "
            "real household load profile on a simulated clock; opening its relay stops the "
            "consumption. The registry it writes is what ingest modbus and execute read.",
        )
    )
    simulate.add_argument(
        "--meters", type=int, default=10, help="how many meters (default: %(default)s)"
    )
    simulate.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="sdm120",
        help="meter model and register map (default: %(default)s)",
    )
    simulate.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    simulate.add_argument(
        "--port",
        type=int,
        default=5020,
        help="first TCP port, 0 for any free one (default: %(default)s)",
    )
    simulate.add_argument(
        "--units-per-port",
        type=int,
        default=MAX_UNIT_ID,
        help="Modbus unit ids per port, at most 247 (default: %(default)s)",
    )
    simulate.add_argument(
        "--seed", type=int, default=1, help="another seed, other households (default: %(default)s)"
    )
    simulate.add_argument(
        "--relay", default="coil:0", help="relay coil of every meter (default: %(default)s)"
    )
    simulate.add_argument("--no-relay", action="store_true", help="meters without a relay")
    simulate.add_argument(
        "--registry-out", type=Path, metavar="FILE", help="write the meter registry (TOML) here"
    )
    simulate.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this many real seconds"
    )
    simulate.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay every answer, like a gateway round trip (default: %(default)s)",
    )
    simulate.set_defaults(handler=cmd_simulate, speed=1.0)

    ingest = commands.add_parser(
        "ingest",
        help="read meters and publish their readings",
        description="Read meters and publish their readings.",
        epilog=examples_epilog(
            """
            wattpay ingest modbus --registry meters.toml
            wattpay ingest modbus --help
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sources = ingest.add_subparsers(
        dest="source", required=True, metavar="SOURCE", help="where the readings come from"
    )
    modbus = with_clock(
        add_command(
            sources,
            "modbus",
            "poll Modbus meters listed in a registry and publish their readings",
            """
            wattpay ingest modbus --registry meters.toml                   # to Kafka or wattpay up
            wattpay ingest modbus --registry meters.toml --interval 1m --rounds 3 --out readings
            wattpay ingest modbus --registry meters.csv --brokers kafka1:9092 --metrics-port 9466
            """,
            description="Poll every meter of the registry once per interval (on the clock, "
            "from local midnight) and publish the readings to the readings topic, or to "
            "JSON Lines files with --out. A meter that does not answer is skipped and counted.",
        )
    )
    modbus.add_argument(
        "--registry", required=True, type=Path, metavar="FILE", help="the meters: TOML or CSV"
    )
    modbus.add_argument(
        "--interval",
        type=_duration,
        default=timedelta(minutes=15),
        help="round length on the clock grid from local midnight, e.g. 15m or 30s (default 15m)",
    )
    modbus.add_argument("--rounds", type=int, help="stop after this many rounds")
    modbus.add_argument(
        "--metrics-port", type=int, default=0, help="metrics endpoint port (default: none)"
    )
    modbus.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"write JSON Lines here instead of Kafka (without brokers: {DEFAULT_INGEST_DIR})",
    )
    modbus.add_argument(
        "--brokers", metavar="HOST:PORT,…", help="Kafka bootstrap servers (env WATTPAY_BROKERS)"
    )
    execute = add_command(
        commands,
        "execute",
        "switch meter relays for the meter commands on Kafka and publish the outcomes",
        """
        wattpay execute --registry meters.toml                 # next to a running wattpay up
        wattpay execute --registry meters.csv --brokers kafka1:9092 --timeout 2
        """,
        description="Read the meter-commands topic, open or close each meter's relay over "
        "Modbus, read it back, and publish the outcome to the meter-command-results topic. "
        "SIGTERM finishes the commands in hand first.",
    )
    execute.add_argument(
        "--registry", required=True, type=Path, metavar="FILE", help="the meters: TOML or CSV"
    )
    execute.add_argument(
        "--brokers", metavar="HOST:PORT,…", help="Kafka bootstrap servers (env WATTPAY_BROKERS)"
    )
    for sub in (modbus, execute):
        sub.add_argument(
            "--connections",
            type=int,
            default=4,
            help="connections per meter host:port (default: %(default)s)",
        )
        sub.add_argument(
            "--timeout", type=float, default=1.0, help="seconds per request (default: %(default)s)"
        )
        sub.add_argument(
            "--retries",
            type=int,
            default=2,
            help="further attempts per request (default: %(default)s)",
        )
    modbus.set_defaults(handler=cmd_ingest_modbus)
    execute.set_defaults(handler=cmd_execute)
