"""``wattpay bills`` and ``wattpay reconcile``: the monthly and checking batch jobs (SPEC S15)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, datetime
from pathlib import Path

from wattpay.cli.common import settings_from_args

DEFAULT_OUT = ".wattpay/jobs"

BILLS_EPILOG = """\
examples:
  wattpay bills --month 2026-06 --clickhouse chdb://.wattpay/demo/clickhouse
  wattpay bills --month 2026-06 --account A0001 --out /tmp/bills
  wattpay bills --now --brokers 127.0.0.1:9092     # this month to date, with forecasts
"""

RECONCILE_EPILOG = """\
examples:
  wattpay reconcile --clickhouse chdb://.wattpay/demo/clickhouse
  wattpay reconcile --from 2026-06-01 --to 2026-06-30 --out /tmp/reconcile
exit status: 0 when every daily_usage row matches, 1 when any differs.
"""


def _month(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()  # noqa: DTZ007 - a calendar month
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {text!r}") from None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def cmd_bills(args: argparse.Namespace) -> int:
    """Monthly bills, e-invoices, usage analysis and monthly_bill notices for a month."""
    from jobs.monthly import run_monthly

    settings = settings_from_args(args)
    today = datetime.now(settings.rules.zone).date()
    month = args.month or today.replace(day=1)
    started = time.monotonic()
    result = run_monthly(
        settings,
        month,
        Path(args.out),
        account=args.account,
        today=today,
        progress=None if args.quiet else sys.stderr,
        documents=not args.no_documents,
    )
    summary = {
        "month": f"{month:%Y-%m}",
        "bills": len(result.bills),
        "invoices": len(result.invoices),
        "usage_analysis": len(result.analysis),
        "notifications": len(result.notices),
        "notifications_to": result.notices_to,
        "documents": str(Path(args.out)),
        "seconds": round(time.monotonic() - started, 3),
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Re-rate the accepted readings in batch and compare every daily_usage row (S15.5)."""
    from jobs import tables
    from jobs.reconcile import differences, read_rating_inputs, recompute
    from sinks.clickhouse import ClickHouseStore

    settings = settings_from_args(args)
    zone = str(settings.rules.zone)
    started = time.monotonic()
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        inputs = read_rating_inputs(store, zone)
        stream = tables.daily_usage(store)
    read = time.monotonic() - started
    register_max = int(settings.rules.register_max_kwh * 1000)
    batch, bases = recompute(inputs, settings.rules.plans, zone, register_max)
    found = differences(stream, batch, bases, args.day_from, args.day_to)
    elapsed = time.monotonic() - started
    for row in found.iter_rows(named=True):
        print(
            f"{row['account_id']} {row['day']} {row['column']}: "
            f"daily_usage {_scaled(row['column'], row['stream'])} "
            f"≠ batch {_scaled(row['column'], row['batch'])}"
        )
    summary = {
        "readings": inputs.readings.height,
        "daily_usage_rows": stream.height,
        "differences": found.height,
        "accounts_differing": found["account_id"].n_unique(),
        "read_seconds": round(read, 3),
        "seconds": round(elapsed, 3),
    }
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "reconcile-summary.json").write_text(json.dumps(summary) + "\n")
    print(json.dumps(summary), file=sys.stderr)
    return 1 if found.height else 0


def _scaled(column: str, value: int | None) -> str:
    if value is None:
        return "(no row)"
    from jobs.money import fen, kwh

    return str(fen(value) if column == "charge" else kwh(value))


def add_job_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``bills`` and ``reconcile``."""
    bills = commands.add_parser(
        "bills",
        help=cmd_bills.__doc__,
        description=cmd_bills.__doc__,
        epilog=BILLS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    when = bills.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", type=_month, help="the calendar month to bill (YYYY-MM)")
    when.add_argument(
        "--now", action="store_true", help="bill the current month to date (with forecasts)"
    )
    bills.add_argument("--account", help="bill this account only")
    bills.add_argument(
        "--out", default=DEFAULT_OUT, help=f"directory for PDFs, XML and notices ({DEFAULT_OUT})"
    )
    bills.add_argument(
        "--no-documents", action="store_true", help="skip the PDFs (rows, XML and notices only)"
    )
    bills.add_argument("--quiet", action="store_true", help="no progress bar")
    _connections(bills, brokers=True)
    bills.set_defaults(handler=cmd_bills)

    reconcile = commands.add_parser(
        "reconcile",
        help=cmd_reconcile.__doc__,
        description=cmd_reconcile.__doc__,
        epilog=RECONCILE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reconcile.add_argument(
        "--from", dest="day_from", metavar="DAY", type=_day, help="first day compared (YYYY-MM-DD)"
    )
    reconcile.add_argument(
        "--to", dest="day_to", metavar="DAY", type=_day, help="last day compared (YYYY-MM-DD)"
    )
    reconcile.add_argument("--out", help="also write reconcile-summary.json into this directory")
    _connections(reconcile, brokers=False)
    reconcile.set_defaults(handler=cmd_reconcile)


def _connections(sub: argparse.ArgumentParser, *, brokers: bool) -> None:
    sub.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb:///dir or http(s)://user@host:8123/db (env WATTPAY_CLICKHOUSE_DSN)",
    )
    if brokers:
        sub.add_argument(
            "--brokers",
            metavar="HOST:PORT,…",
            help="send notices to the notifications topic (env WATTPAY_BROKERS); "
            "without brokers they go to OUT/out/wattpay.notifications.jsonl",
        )
