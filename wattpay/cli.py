"""The ``wattpay`` command line (SPEC S11)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import urlopen

from wattpay.live_cli import add_live_commands
from wattpay.settings import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    brokers = getattr(args, "brokers", None)
    if hasattr(args, "brokers") and not brokers and not os.environ.get("WATTPAY_BROKERS"):
        from wattpay.up import running_instance

        instance = running_instance()  # publish to the local `wattpay up` when one runs
        brokers = str(instance["brokers"]) if instance else None
    return load_settings(
        args.config,
        clickhouse_dsn=getattr(args, "clickhouse", None),
        brokers=brokers,
    )


def cmd_replay(args: argparse.Namespace) -> int:
    """Run the billing dataflow over a directory of JSONL inputs into ClickHouse."""
    from bytewax.run import cli_main

    from ingest.replay_source import ReplaySource
    from pipelines.billing import build_billing_flow
    from sinks.analytics import ClickHouseSink
    from sinks.clickhouse import ClickHouseStore
    from sinks.topics import TopicFileSink
    from wattpay.summary import print_summary

    settings = _settings(args)
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"wattpay replay: {directory} is not a directory", file=sys.stderr)
        return 2
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        store.migrate()
    out = directory / "out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    flow = build_billing_flow(
        settings.rules,
        source=ReplaySource(directory, progress=None if args.quiet else sys.stderr),
        rows=ClickHouseSink(
            settings.clickhouse_dsn,
            max_rows=settings.batch_rows,
            max_seconds=settings.batch_seconds,
        ),
        messages=TopicFileSink(out, settings.topic_prefix),
    )
    # Replay runs without recovery: one long epoch avoids snapshotting state for nothing.
    cli_main(flow, workers_per_process=args.workers, epoch_interval=timedelta(days=1))
    elapsed = time.monotonic() - started
    if not args.quiet:
        with ClickHouseStore(settings.clickhouse_dsn) as store:
            print_summary(store, out, settings.topic_prefix, elapsed, sys.stdout)
    return 0


def _query_endpoint(args: argparse.Namespace) -> str | None:
    """The query endpoint to use, if any.

    ``--endpoint``, else a running ``wattpay up``'s when no ClickHouse DSN was named (its
    embedded ClickHouse is locked by that process).
    """
    from wattpay.up import running_instance

    if args.endpoint:
        return str(args.endpoint)
    if args.clickhouse or os.environ.get("WATTPAY_CLICKHOUSE_DSN"):
        return None
    instance = running_instance()
    return str(instance["query"]) if instance else None


def _sql_over_http(endpoint: str, query: str, fmt: str) -> int:
    request = f"{endpoint.rstrip('/')}/query?" + urlencode({"sql": query, "format": fmt})
    try:
        with urlopen(request, timeout=60) as response:  # noqa: S310 - our own endpoint
            text = response.read().decode("utf-8")
    except HTTPError as err:
        print(f"wattpay sql: {err.read().decode('utf-8', 'replace').strip()}", file=sys.stderr)
        return 2
    except URLError as err:
        print(f"wattpay sql: {endpoint} does not answer: {err.reason}", file=sys.stderr)
        return 1
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Print a query result from the configured ClickHouse (or a running ``wattpay up``)."""
    from sinks.clickhouse import ClickHouseStore
    from wattpay.sqlformat import format_result

    endpoint = _query_endpoint(args)
    if endpoint is not None:
        return _sql_over_http(endpoint, args.query, args.format)
    settings = _settings(args)
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        try:
            columns, rows = store.query_readonly(args.query)
        except ValueError as err:
            print(f"wattpay sql: {err}", file=sys.stderr)
            return 2
    text = format_result(columns, rows, args.format)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the ClickHouse tables."""
    from sinks.clickhouse import ClickHouseStore

    settings = _settings(args)
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        applied = store.migrate()
        versions = store.applied_migrations()
    print(f"migrations applied now: {applied or 'none'}; schema version {max(versions, default=0)}")
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    """Write a deterministic example input set built from real household load profiles."""
    from ingest.example import write_example

    start = date.fromisoformat(args.start) if args.start else None
    summary = write_example(
        Path(args.directory),
        households=args.households,
        days=args.days,
        seed=args.seed,
        start=start,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with secrets masked."""
    settings = _settings(args)
    print(json.dumps(settings.masked(), indent=2, ensure_ascii=False))
    return 0


PUBLISH_TIMEOUT = 15.0
NO_BROKERS = (
    "no Kafka brokers configured: pass --brokers HOST:PORT or set WATTPAY_BROKERS "
    "(the embedded broker runs only inside `wattpay up`)"
)


def _now_text(settings: Settings) -> str:
    """Now in the billing time zone, to the second, with its offset."""
    return datetime.now(settings.rules.zone).replace(microsecond=0).isoformat()


def _put_optional(
    message: dict[str, object], args: argparse.Namespace, names: dict[str, str]
) -> None:
    """Copy the options that were given (argparse name → message field)."""
    for option, field_name in names.items():
        value = getattr(args, option, None)
        if value is not None:
            message[field_name] = value


def _input_problem(settings: Settings, topic: str, message: dict[str, object]) -> str | None:
    """Why the billing engine would reject ``message`` on its face (S14.2), or None."""
    from billing.engine import valid_topup_amount
    from billing.messages import Envelope, Malformed, TopUp, parse_message
    from sinks.kafka import encode_json

    raw = encode_json(message).decode("utf-8")
    envelope = Envelope.decode(topic, "cli", raw, datetime.now(settings.rules.zone))
    try:
        parsed = parse_message(envelope, settings.rules)
    except Malformed as err:
        return f"malformed: {err}"
    if isinstance(parsed, TopUp) and not valid_topup_amount(parsed.amount, settings.rules):
        limit = settings.rules.max_topup
        return f"invalid_amount: {parsed.amount} must be > 0, ≤ {limit}, at most 2 decimals"
    return None


def _publish(args: argparse.Namespace, topic: str, message: dict[str, object]) -> int:
    """Validate one input message, publish it keyed by account and wait for delivery."""
    from sinks.kafka import DeliveryError, JsonProducer, KafkaException, encode_json, kafka_config

    settings = _settings(args)
    command = " ".join(["wattpay", args.command, *([args.event] if "event" in args else [])])
    if message.get("ts") is None:
        message["ts"] = _now_text(settings)
    problem = _input_problem(settings, topic, message)
    if problem is not None:
        print(f"{command}: refused, nothing published: {problem}", file=sys.stderr)
        return 2
    try:
        config = kafka_config(settings)
    except ValueError:
        print(f"{command}: {NO_BROKERS}", file=sys.stderr)
        return 2
    full_topic, key = settings.topic(topic), str(message["account_id"])
    producer = JsonProducer(
        {"message.timeout.ms": str(int(args.timeout * 1000)), **config},
        flush_timeout=args.timeout + 5,
    )
    try:
        producer.send(full_topic, key, message)
        producer.flush()
    except (DeliveryError, KafkaException) as err:
        print(f"{command}: not published to {full_topic}: {err}", file=sys.stderr)
        return 1
    finally:
        producer.close()
    print(encode_json(message).decode("utf-8"))
    print(f"{command}: delivered to {full_topic} (key {key})", file=sys.stderr)
    return 0


def cmd_topup(args: argparse.Namespace) -> int:
    """Publish a top-up to the payments topic."""
    message: dict[str, object] = {
        "type": "topup",
        "payment_id": args.payment_id or f"cli-{uuid.uuid4().hex}",
        "account_id": args.account,
        "amount": args.amount,
        "channel": args.channel,
        "ts": args.ts,
    }
    _put_optional(message, args, {"request_id": "request_id"})
    return _publish(args, "payments", message)


def cmd_account(args: argparse.Namespace) -> int:
    """Publish an account event (open, close or update) to the accounts topic."""
    if args.event == "update" and all(
        getattr(args, name) is None for name in ("threshold", "auto_topup", "phone", "locale")
    ):
        print("wattpay account update: nothing to update, nothing published", file=sys.stderr)
        return 2
    message: dict[str, object] = {"type": args.event, "account_id": args.account}
    if args.event == "open":
        message.update(meter_id=args.meter, plan=args.plan)
    message["ts"] = args.ts
    _put_optional(
        message,
        args,
        {
            "opening_balance": "opening_balance",
            "ytd_kwh": "ytd_kwh",
            "threshold": "low_balance_threshold",
            "phone": "phone",
            "locale": "locale",
            "district": "district",
            "landlord": "landlord_id",
            "final_kwh": "final_kwh",
        },
    )
    if getattr(args, "auto_topup", None) is not None:
        message["auto_topup_amount"] = None if args.auto_topup == "off" else args.auto_topup
    return _publish(args, "accounts", message)


def _add_publish_commands(commands: argparse._SubParsersAction) -> None:
    """``wattpay topup`` and ``wattpay account open|close|update`` (S2 inputs, S11)."""

    def with_brokers(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--brokers", metavar="HOST:PORT,…", help="env WATTPAY_BROKERS")
        sub.add_argument("--ts", help="ISO-8601 with offset (default: now, billing time zone)")
        sub.add_argument(
            "--timeout", type=float, default=PUBLISH_TIMEOUT, help="seconds to wait for delivery"
        )
        return sub

    topup = with_brokers(commands.add_parser("topup", help=cmd_topup.__doc__))
    topup.add_argument("account")
    topup.add_argument("amount", help="yuan, a decimal such as 100.00")
    topup.add_argument("--channel", default="app", help="app, alipay, wechat, bank or counter")
    topup.add_argument("--payment-id", help="idempotency id (default: a new unique id)")
    topup.add_argument("--request-id", help="the auto top-up request this payment answers")
    topup.set_defaults(handler=cmd_topup)

    account = commands.add_parser("account", help=cmd_account.__doc__)
    events = account.add_subparsers(dest="event", required=True)
    opening = with_brokers(events.add_parser("open", help="open an account"))
    opening.add_argument("account")
    opening.add_argument("--meter", required=True)
    opening.add_argument("--plan", required=True, help="e.g. zhejiang-tiered, zhejiang-tou")
    opening.add_argument("--opening-balance", help="yuan (default 0.00)")
    opening.add_argument("--ytd-kwh", help="kWh already used this tier year (default 0)")
    update = with_brokers(events.add_parser("update", help="change an account's settings"))
    update.add_argument("account")
    for event in (opening, update):
        event.add_argument("--threshold", help="low-balance alert threshold, yuan")
        event.add_argument("--auto-topup", help="auto top-up amount in yuan, or 'off'")
        event.add_argument("--phone")
        event.add_argument("--locale", help="e.g. zh-CN")
    opening.add_argument("--district")
    opening.add_argument("--landlord")
    close = with_brokers(events.add_parser("close", help="move-out settlement"))
    close.add_argument("account")
    close.add_argument("--final-kwh", help="a last register reading, kWh")
    account.set_defaults(handler=cmd_account)


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
    from ingest.modbus import quiet_modbus_logs
    from ingest.registers import parse_relay
    from ingest.simulator import SimClock, Simulator, serve

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

    from ingest.meter_bus import KafkaPublisher
    from ingest.modbus import ModbusClient, quiet_modbus_logs
    from ingest.poller import JsonlPublisher, Poller, PollStats, Publisher
    from ingest.registers import RegistryError, load_registry
    from ingest.simulator import SimClock
    from sinks.kafka import DeliveryError, kafka_config
    from sinks.metrics import serve_poll_metrics

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
        publisher = KafkaPublisher(kafka_config(settings))
        where = f"Kafka {settings.brokers} topic {settings.topic('readings')}"
    else:
        publisher = JsonlPublisher(args.out or DEFAULT_INGEST_DIR)
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
                topic=settings.topic("readings"),
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

    from ingest.meter_bus import run_executor
    from ingest.modbus import ModbusClient, quiet_modbus_logs
    from ingest.registers import RegistryError, load_registry

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


def _add_meter_commands(commands: argparse._SubParsersAction) -> None:
    """``wattpay simulate``, ``wattpay ingest modbus`` and ``wattpay execute`` (S13)."""
    from ingest.registers import MAX_UNIT_ID, MODELS

    def with_clock(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--start", type=_start_time, help="simulated start time (ISO-8601)")
        sub.add_argument("--speed", type=float, help="simulated seconds per real second")
        sub.add_argument(
            "--anchor", type=float, help="Unix time at which the simulated clock reads --start"
        )
        return sub

    simulate = with_clock(commands.add_parser("simulate", help=cmd_simulate.__doc__))
    simulate.add_argument("--meters", type=int, default=10, help="how many meters (default 10)")
    simulate.add_argument("--model", choices=sorted(MODELS), default="sdm120")
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulate.add_argument("--port", type=int, default=5020, help="first TCP port (0: any free)")
    simulate.add_argument(
        "--units-per-port", type=int, default=MAX_UNIT_ID, help="unit ids per port (≤ 247)"
    )
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--relay", default="coil:0", help="relay coil of every meter")
    simulate.add_argument("--no-relay", action="store_true", help="meters without a relay")
    simulate.add_argument("--registry-out", type=Path, help="write the meter registry here")
    simulate.add_argument("--duration", type=float, help="stop after this many real seconds")
    simulate.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay every answer (gateway round trip)"
    )
    simulate.set_defaults(handler=cmd_simulate, speed=1.0)

    ingest = commands.add_parser("ingest", help="read meters and publish their readings")
    sources = ingest.add_subparsers(dest="source", required=True)
    modbus = with_clock(sources.add_parser("modbus", help=cmd_ingest_modbus.__doc__))
    modbus.add_argument("--registry", required=True, type=Path, help="meters: TOML or CSV")
    modbus.add_argument(
        "--interval",
        type=_duration,
        default=timedelta(minutes=15),
        help="round length on the clock grid from local midnight (e.g. 15m, 30s)",
    )
    modbus.add_argument("--rounds", type=int, help="stop after this many rounds")
    modbus.add_argument("--metrics-port", type=int, default=0, help="Prometheus endpoint port")
    modbus.add_argument(
        "--out", type=Path, help=f"write JSONL here instead of Kafka (default {DEFAULT_INGEST_DIR})"
    )
    modbus.add_argument("--brokers", metavar="HOST:PORT,…", help="env WATTPAY_BROKERS")
    execute = commands.add_parser("execute", help=cmd_execute.__doc__)
    execute.add_argument("--registry", required=True, type=Path, help="meters: TOML or CSV")
    execute.add_argument("--brokers", metavar="HOST:PORT,…", help="env WATTPAY_BROKERS")
    for sub in (modbus, execute):
        sub.add_argument("--connections", type=int, default=4, help="per host:port")
        sub.add_argument("--timeout", type=float, default=1.0, help="seconds per request")
        sub.add_argument("--retries", type=int, default=2, help="further attempts per request")
    modbus.set_defaults(handler=cmd_ingest_modbus)
    execute.set_defaults(handler=cmd_execute)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="wattpay", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (default: wattpay.toml if present)")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_clickhouse(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--clickhouse",
            metavar="DSN",
            help="chdb:///dir or http(s)://user@host:8123/db (env WATTPAY_CLICKHOUSE_DSN)",
        )
        return sub

    replay = with_clickhouse(commands.add_parser("replay", help=cmd_replay.__doc__))
    replay.add_argument("directory")
    replay.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    replay.add_argument("--quiet", action="store_true", help="no progress and no summary")
    replay.set_defaults(handler=cmd_replay)

    sql = with_clickhouse(commands.add_parser("sql", help=cmd_sql.__doc__))
    sql.add_argument("query")
    sql.add_argument("--endpoint", help="query endpoint of a running wattpay up (found by default)")
    sql.add_argument("--format", choices=["csv", "json", "table"], default="table")
    sql.set_defaults(handler=cmd_sql)

    migrate = with_clickhouse(commands.add_parser("migrate", help=cmd_migrate.__doc__))
    migrate.set_defaults(handler=cmd_migrate)

    example = commands.add_parser("example", help=cmd_example.__doc__)
    example.add_argument("directory")
    example.add_argument("--households", type=int, default=300)
    example.add_argument("--days", type=int, default=30)
    example.add_argument("--seed", type=int, default=1)
    example.add_argument("--start", help="first day (YYYY-MM-DD)")
    example.set_defaults(handler=cmd_example)

    add_live_commands(commands)

    config = commands.add_parser("config", help=cmd_config.__doc__)
    config.add_argument("--check", action="store_true", help="validate and print (the default)")
    config.set_defaults(handler=cmd_config)
    _add_publish_commands(commands)
    _add_meter_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wattpay`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SettingsError as err:
        print(f"wattpay: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
