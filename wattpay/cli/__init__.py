"""The ``wattpay`` command line (SPEC S11)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import urlopen

from config.settings import SettingsError
from wattpay.cli.common import settings_from_args as _settings
from wattpay.cli.live import add_live_commands
from wattpay.cli.meters import add_meter_commands
from wattpay.cli.notify import add_notify_commands
from wattpay.cli.publish import add_publish_commands


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
    from wattpay.instance import running_instance

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
    from simulate.example import write_example

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
    add_publish_commands(commands)
    add_meter_commands(commands)
    add_notify_commands(commands)
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
