"""The ``wattpay`` command line (SPEC S11)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from config.errors import OperatorError
from wattpay.cli.backup import add_backup_commands
from wattpay.cli.common import add_command, examples_epilog
from wattpay.cli.common import settings_from_args as _settings
from wattpay.cli.jobs import add_job_commands
from wattpay.cli.live import add_live_commands
from wattpay.cli.meters import add_meter_commands
from wattpay.cli.notify import add_notify_commands
from wattpay.cli.publish import add_publish_commands
from wattpay.cli.web import add_web_commands

if TYPE_CHECKING:
    from config.settings import Settings
    from pipelines.cluster import Cluster
    from store.clickhouse import ClickHouseStore


def cmd_replay(args: argparse.Namespace) -> int:
    """Run the billing dataflow over a directory of JSONL inputs into ClickHouse."""
    from pipelines.cluster import start_followers
    from wattpay.collector import tune_for_long_lived_state

    settings = _settings(args)
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"wattpay replay: {directory} is not a directory", file=sys.stderr)
        return 2
    if args.processes < 1 or args.workers < 1:
        print("wattpay replay: --processes and --workers must be at least 1", file=sys.stderr)
        return 2
    if (args.process_id is None) != (args.addresses is None):
        # A follower without its cluster's addresses would retry connecting for ever.
        print("wattpay replay: --process-id and --addresses go together", file=sys.stderr)
        return 2
    tune_for_long_lived_state()
    cluster = start_followers(args, main)
    try:
        return _replay(args, settings, directory, cluster)
    except BaseException:
        if cluster is not None:
            cluster.stop()
        raise


def _replay(
    args: argparse.Namespace, settings: Settings, directory: Path, cluster: Cluster | None
) -> int:
    """The replay of one process: the first also migrates ClickHouse and prints the summary."""
    from store.clickhouse import open_migrated

    leader = args.process_id in (None, 0)
    # The first process of a cluster writes ClickHouse, opened and migrated on a thread
    # while the flow starts reading; every process reads the files (the last reads for all
    # when the keys' places are not known: ``pipelines.replay``).
    prepared = open_migrated(settings.clickhouse_dsn) if leader else None
    ready: Future[ClickHouseStore] | None = None
    if prepared is not None:
        if args.addresses is not None:
            prepared.result()  # a first process started by hand cannot end the others
        # Bytewax reports a sink's error as a panic, and aborts every process of a cluster
        # when one fails while they run: if ClickHouse cannot be opened, this process ends
        # itself (and the others) with the reason, and its sink is never told.
        ready = Future()
        prepared.add_done_callback(partial(_ready_or_end, ready, cluster, args.debug))
    try:
        return _replay_flow(args, settings, directory, cluster, ready)
    finally:
        if prepared is not None and prepared.done() and prepared.exception() is None:
            prepared.result().close()


def _ready_or_end(
    ready: Future[ClickHouseStore],
    cluster: Cluster | None,
    debug: bool,
    prepared: Future[ClickHouseStore],
) -> None:
    """The store for the sink, or, if it could not be prepared, the end of the replay."""
    from pipelines.cluster import end_now

    failure = prepared.exception()
    if failure is None:
        ready.set_result(prepared.result())
        return
    if cluster is not None:
        cluster.stop()
    if debug:
        traceback.print_exception(failure)
        code = 1
    else:
        code = report_failure("wattpay replay", failure)
    end_now(code)  # the flow is running on the main thread: nothing else would end it


def _replay_flow(
    args: argparse.Namespace,
    settings: Settings,
    directory: Path,
    cluster: Cluster | None,
    prepared: Future[ClickHouseStore] | None,
) -> int:
    from pipelines.cluster import run_replay_cluster
    from pipelines.replay import build_replay_flow
    from store.clickhouse import ClickHouseStore
    from wattpay.summary import print_summary

    leader = prepared is not None
    processes = args.processes if args.addresses is None else len(str(args.addresses).split(";"))
    reader = (args.process_id or 0) == processes - 1
    out = directory / "out"
    if leader:
        shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    progress = None if args.quiet else sys.stderr
    flow = build_replay_flow(
        settings,
        directory,
        leader=leader,
        reader=reader,
        workers=args.workers,
        processes=processes,
        progress=progress,
        process_id=args.process_id or 0,
        ready=prepared,
    )
    run_replay_cluster(flow, args, cluster)
    elapsed = time.monotonic() - started
    if leader and not args.quiet:
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


def _sql_over_http(endpoint: str, query: str, fmt: str, token: str) -> int:
    url = f"{endpoint.rstrip('/')}/query?" + urlencode({"sql": query, "format": fmt})
    request = Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urlopen(request, timeout=60) as response:  # noqa: S310 - our own endpoint
            text = response.read().decode("utf-8")
    except HTTPError as err:
        body = err.read().decode("utf-8", "replace").strip()
        try:
            body = str(json.loads(body)["error"])
        except (ValueError, KeyError, TypeError):
            pass
        print(f"wattpay sql: {' '.join(body.split())}", file=sys.stderr)
        return 2
    except URLError as err:
        print(f"wattpay sql: {endpoint} does not answer: {err.reason}", file=sys.stderr)
        return 1
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Print a query result from the configured ClickHouse (or a running ``wattpay up``)."""
    from config.settings import DEFAULT_DSN
    from store.clickhouse import ClickHouseStore, MissingDirectory, QueryLimits
    from wattpay.sqlformat import format_result

    settings = _settings(args)
    endpoint = _query_endpoint(args)
    if endpoint is not None:
        return _sql_over_http(endpoint, args.query, args.format, settings.query_token)
    limits = QueryLimits(
        max_seconds=settings.query_max_seconds, max_result_rows=settings.query_max_rows
    )
    # A read never creates a chdb directory: a missing one means nothing to read.
    store = ClickHouseStore(settings.clickhouse_dsn, create=False)
    try:
        store.connect()
    except MissingDirectory as err:
        if settings.clickhouse_dsn != DEFAULT_DSN:
            raise
        raise OperatorError(NO_CLICKHOUSE) from err
    with store:
        columns, rows = store.query_readonly(args.query, limits)
    text = format_result(columns, rows, args.format)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


NO_CLICKHOUSE = (
    "no wattpay up is running here and there is no ClickHouse to read: start `wattpay up`, "
    "or name one with --clickhouse DSN (env WATTPAY_CLICKHOUSE_DSN) or --endpoint URL"
)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the ClickHouse tables (or print a cluster's DDL)."""
    if args.cluster:
        from store.cluster import cluster_statements

        for statement in cluster_statements(args.cluster, args.database):
            print(statement + ";\n")
        return 0
    from store.clickhouse import ClickHouseStore

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
        rules=_settings(args).rules,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with secrets masked."""
    settings = _settings(args)
    if args.plan:
        from billing.tariffs import plan_toml

        plans = settings.rules.plans
        unknown = [p for p in args.plan if p not in plans]
        if unknown:
            known = ", ".join(sorted(plans))
            raise OperatorError(f"no plan {unknown[0]!r}; the plans are: {known}")
        print("\n".join(plan_toml(plans[p]) for p in args.plan), end="")
        return 0
    print(json.dumps(settings.masked(), indent=2, ensure_ascii=False))
    return 0


DESCRIPTION = """\
wattpay bills prepaid electricity from meter readings and payments: it rates consumption on
tiered and time-of-use tariffs, keeps every household's balance, warns when money runs low,
cuts and restores supply, and keeps every figure in ClickHouse for analysis.

Run "wattpay COMMAND --help" for the options and examples of one command."""

EXAMPLES = """
wattpay up --simulate 8       # the whole system, with 8 simulated meters
wattpay demo                  # watch households run low, get cut off, pay, come back
wattpay example data          # a month of example input, then ...
wattpay replay data           # ... bill it
wattpay topup H0001 100.00 --channel wechat
wattpay sql "SELECT account_id, balance FROM accounts FINAL LIMIT 5"
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="wattpay",
        description=DESCRIPTION,
        epilog=examples_epilog(EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (default: wattpay.toml if present; env WATTPAY_CONFIG)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback when a command fails"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (see below)"
    )

    def with_clickhouse(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--clickhouse",
            metavar="DSN",
            help="chdb:///dir or http(s)://user@host:8123/db (env WATTPAY_CLICKHOUSE_DSN)",
        )
        return sub

    replay = with_clickhouse(
        add_command(
            commands,
            "replay",
            "bill a directory of input files (accounts, payments, readings) into ClickHouse",
            """
            wattpay replay data                # reads data/*.jsonl, writes data/out/
            wattpay replay data --workers 2 --quiet
            wattpay replay data --processes 2  # a 2-process cluster on this machine
            wattpay replay data --clickhouse chdb:///tmp/wattpay-ch
            """,
            description="Run the billing over DIRECTORY/accounts.jsonl, payments.jsonl and "
            "readings.jsonl (a missing file counts as empty), merged in time order, into "
            "ClickHouse. Notifications, meter commands, payment requests and rejected lines "
            "are written to DIRECTORY/out/, one JSON Lines file per topic.",
        )
    )
    replay.add_argument("directory", help="directory holding the input files")
    replay.add_argument(
        "--workers", type=int, default=1, help="worker threads per process (default: %(default)s)"
    )
    replay.add_argument(
        "--processes",
        type=int,
        default=1,
        help="processes of a cluster on this machine, on loopback (default: %(default)s)",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress and no summary")
    # How the first process starts the others: not for people.
    replay.add_argument("--process-id", type=int, default=None, help=argparse.SUPPRESS)
    replay.add_argument("--addresses", default=None, help=argparse.SUPPRESS)
    replay.add_argument("--first-pid", type=int, default=None, help=argparse.SUPPRESS)
    replay.set_defaults(handler=cmd_replay)

    sql = with_clickhouse(
        add_command(
            commands,
            "sql",
            "run one read-only query on the billing tables and print the result",
            """
            wattpay sql "SELECT account_id, balance, status FROM accounts FINAL"
            wattpay sql "SELECT day, sum(kwh) FROM daily_usage FINAL GROUP BY day" --format csv
            wattpay sql "SELECT count() FROM rejected" --endpoint http://127.0.0.1:8124
            """,
            description="Run one read-only SELECT on the configured ClickHouse, or on the one "
            "of a wattpay up running from this directory, and print the result.",
        )
    )
    sql.add_argument("query", help="one SELECT statement (quote it for the shell)")
    sql.add_argument(
        "--endpoint",
        metavar="URL",
        help="query endpoint of a running wattpay up (default: found in .wattpay/up.json)",
    )
    sql.add_argument(
        "--format",
        choices=["csv", "json", "table"],
        default="table",
        help="output format: table, csv or json (default: %(default)s)",
    )
    sql.set_defaults(handler=cmd_sql)

    migrate = with_clickhouse(
        add_command(
            commands,
            "migrate",
            "create or upgrade the ClickHouse tables",
            """
            wattpay migrate
            wattpay migrate --clickhouse http://wattpay@db.internal:8123/billing
            wattpay migrate --cluster province > cluster.sql
            """,
        )
    )
    migrate.add_argument(
        "--cluster",
        metavar="NAME",
        help="print the DDL for a ClickHouse cluster NAME (replicated and distributed tables) "
        "instead of migrating",
    )
    migrate.add_argument(
        "--database", default="wattpay", help="database name used with --cluster (default: wattpay)"
    )
    migrate.set_defaults(handler=cmd_migrate)

    example = add_command(
        commands,
        "example",
        "write a realistic example input set built from real household load profiles",
        """
        wattpay example data                         # 300 households, 30 days
        wattpay example small --households 20 --days 7 --seed 2
        wattpay example march --start 2026-03-02
        """,
        description="Write accounts.jsonl, payments.jsonl and readings.jsonl for a small town "
        "of prepaid households: top-ups, rebates, auto top-ups, arrears, cuts, move-outs and "
        "a sprinkle of bad lines. The same options always give the same bytes.",
    )
    example.add_argument("directory", help="where to write the three files")
    example.add_argument(
        "--households", type=int, default=300, help="how many households (default: %(default)s)"
    )
    example.add_argument(
        "--days", type=int, default=30, help="how many days of readings (default: %(default)s)"
    )
    example.add_argument(
        "--seed", type=int, default=1, help="another seed, another town (default: %(default)s)"
    )
    example.add_argument(
        "--start", metavar="YYYY-MM-DD", help="first day (default: a Monday chosen by the seed)"
    )
    example.set_defaults(handler=cmd_example)

    add_live_commands(commands)

    config = add_command(
        commands,
        "config",
        "check the configuration and print it with secrets masked",
        """
        wattpay config
        wattpay --config /etc/wattpay.toml config --check
        WATTPAY_TOPIC_PREFIX=acme. wattpay config
        wattpay config --plan zhejiang-tou   # the plan as a [plans.ID] table, to edit
        """,
    )
    config.add_argument("--check", action="store_true", help="validate and print (the default)")
    config.add_argument(
        "--plan",
        metavar="ID",
        action="append",
        help="print this plan (built-in or configured) as a [plans.ID] table instead; repeatable",
    )
    config.set_defaults(handler=cmd_config)
    add_publish_commands(commands)
    add_meter_commands(commands)
    add_job_commands(commands)
    add_web_commands(commands)
    add_notify_commands(commands)
    add_backup_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command of the ``wattpay`` command line; its exit code."""
    return _run(build_parser().parse_args(argv))


def program() -> int:
    """Entry point of the ``wattpay`` console script and of ``python -m wattpay.cli``.

    ``main``; a replay then ends its process at once. Everything it wrote is closed by then
    (ClickHouse and the topic files; the output is flushed here), and tearing the
    interpreter down after a replay took about 0.1 s: a replay's billing state and the
    embedded ClickHouse's, freed piece by piece for nothing (BENCHMARKS.md, step 16).
    """
    args = build_parser().parse_args()
    code = _run(args)
    if args.command == "replay":
        from pipelines.cluster import end_now

        end_now(code)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if args.debug:
            raise
        return report_failure(f"wattpay {args.command}", err)


def report_failure(command: str, err: BaseException) -> int:
    """Print why ``command`` failed on one line (a settings error: a line per problem).

    Returns the exit code: 2 for what the operator can mend (``OperatorError``), else 1.
    """
    if isinstance(err, OperatorError):
        text = str(err) if len(getattr(err, "problems", ())) > 1 else " ".join(str(err).split())
        print(f"{command}: {text}", file=sys.stderr, flush=True)
        return 2
    reason = " ".join(str(err).split()) or "no details"
    print(
        f"{command}: {type(err).__name__}: {reason} (--debug shows where)",
        file=sys.stderr,
        flush=True,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
