"""``wattpay bills`` and ``wattpay reconcile``: the monthly and checking batch jobs (SPEC S15)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, datetime
from pathlib import Path

from wattpay.cli.common import add_command, settings_from_args

DEFAULT_OUT = ".wattpay/jobs"
WHATIF_OUT = ".wattpay/tariff-whatif"

BILLS_EXAMPLES = """
  wattpay bills --month 2026-06 --clickhouse chdb://.wattpay/demo/clickhouse
  wattpay bills --month 2026-06 --account A0001 --out /tmp/bills
  wattpay bills --now --brokers 127.0.0.1:9092     # this month to date, with forecasts
  wattpay bills --now --month 2026-06              # ask the running `wattpay up` to bill June
"""

RECONCILE_EXAMPLES = """
  wattpay reconcile --clickhouse chdb://.wattpay/demo/clickhouse
  wattpay reconcile --from 2026-06-01 --to 2026-06-30 --out /tmp/reconcile
"""


WHATIF_EXAMPLES = """
  wattpay config --plan zhejiang-tou > proposal.toml   # start from today's plan, then edit
  wattpay tariff-whatif --from 2026-01 --to 2026-12 --proposed proposal.toml
  wattpay tariff-whatif --from 2026-06 --to 2026-06 --proposed p.toml --out /tmp/whatif
"""


def _month(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()  # noqa: DTZ007 - a calendar month
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of 1 or more: {text!r}")
    return value


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
    if args.now and _running_up(args):
        return _ask_up(month, args.wait)
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


def _running_up(args: argparse.Namespace) -> bool:
    """True when a ``wattpay up`` runs from here and no other ClickHouse was named."""
    from wattpay.instance import running_instance

    if args.clickhouse or os.environ.get("WATTPAY_CLICKHOUSE_DSN"):
        return False
    return running_instance() is not None


def _ask_up(month: date, wait: float) -> int:
    """Have the running ``wattpay up`` bill the month (it holds the embedded ClickHouse)."""
    from jobs.schedule import FAILED, request_bills

    folder = Path(DEFAULT_OUT)
    answer = request_bills(folder, month)
    failed = folder / f"{FAILED}{month:%Y-%m}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if answer.exists():
            bills = int(answer.read_text().strip() or 0)
            print(json.dumps({"month": f"{month:%Y-%m}", "bills": bills, "by": "wattpay up"}))
            return 0
        if failed.exists():
            print(f"wattpay bills: {failed.read_text().strip()}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"wattpay bills: the running wattpay up did not answer in {wait:.0f} s", file=sys.stderr)
    return 1


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Re-rate the accepted readings in batch and compare every daily_usage row."""
    from jobs import tables
    from jobs.reconcile import differences, recompute_years
    from store.clickhouse import ClickHouseStore

    settings = settings_from_args(args)
    zone = str(settings.rules.zone)
    started = time.monotonic()
    register_max = int(settings.rules.register_max_kwh * 1000)
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        stream = tables.daily_usage(store)
        read = time.monotonic() - started
        batch, bases, readings = recompute_years(store, settings.rules.plans, zone, register_max)
    found = differences(stream, batch, bases, args.day_from, args.day_to)
    elapsed = time.monotonic() - started
    for row in found.iter_rows(named=True):
        print(
            f"{row['account_id']} {row['day']} {row['column']}: "
            f"daily_usage {_scaled(row['column'], row['stream'])} "
            f"≠ batch {_scaled(row['column'], row['batch'])}"
        )
    summary = {
        "readings": readings,
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


def cmd_tariff_whatif(args: argparse.Namespace) -> int:
    """What a proposed tariff would do to revenue and to every household's bill."""
    from config.errors import OperatorError
    from jobs.proposal import read_proposal
    from jobs.scenarios import run_tariff_whatif
    from jobs.whatif import BilledMismatch, Period

    if args.month_to < args.month_from:
        raise OperatorError(f"--to {args.month_to:%Y-%m} is before --from {args.month_from:%Y-%m}")
    proposed = read_proposal(Path(args.proposed))
    settings = settings_from_args(args)
    period = Period(args.month_from, _month_end(args.month_to))
    started = time.monotonic()
    try:
        run = run_tariff_whatif(
            settings,
            proposed,
            period,
            Path(args.out),
            None if args.quiet else sys.stderr,
            per_pass=args.accounts_per_pass,
        )
    except BilledMismatch as err:
        print(f"wattpay tariff-whatif: {err}", file=sys.stderr)
        return 1
    accounts = run.result.accounts
    summary = {
        "scenario_id": run.scenario_id,
        "from": f"{period.first:%Y-%m}",
        "to": f"{period.last:%Y-%m}",
        "accounts": accounts.height,
        "current": str(_fen(int(accounts["current"].sum()))),
        "proposed": str(_fen(int(accounts["proposed"].sum()))),
        "worse_off": int((accounts["change"] > 0).sum()),
        "better_off": int((accounts["change"] < 0).sum()),
        "days_checked": run.result.days_checked,
        "accounts_csv": str(run.csv_path),
        "report": str(run.report_path),
        "seconds": round(time.monotonic() - started, 3),
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _fen(value: int) -> object:
    from jobs.money import fen

    return fen(value)


def _month_end(month: date) -> date:
    from jobs.money import month_after

    return date.fromordinal(month_after(month).toordinal() - 1)


def _scaled(column: str, value: int | None) -> str:
    if value is None:
        return "(no row)"
    from jobs.money import fen, kwh

    return str(fen(value) if column == "charge" else kwh(value))


def add_job_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``bills``, ``reconcile`` and ``tariff-whatif``."""
    bills = add_command(
        commands,
        "bills",
        "write a month's bills, e-invoices, usage analysis and bill notices",
        BILLS_EXAMPLES,
        description=cmd_bills.__doc__,
    )
    bills.add_argument(
        "--month", type=_month, help="the calendar month to bill (YYYY-MM; default this month)"
    )
    bills.add_argument(
        "--now",
        action="store_true",
        help="bill now: through the running `wattpay up` when there is one (it holds the "
        "embedded ClickHouse), else here; without --month, this month to date",
    )
    bills.add_argument(
        "--wait", type=float, default=600.0, help="seconds to wait for `wattpay up` (600)"
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
    bills.set_defaults(handler=_bills_or_usage(bills))

    reconcile = add_command(
        commands,
        "reconcile",
        "re-rate the accepted readings in batch and compare them with daily_usage",
        RECONCILE_EXAMPLES,
        description=f"{cmd_reconcile.__doc__}\n\nExit status: 0 when every daily_usage row "
        "matches, 1 when any differs.",
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

    whatif = add_command(
        commands,
        "tariff-whatif",
        "what a proposed tariff would do to revenue and to every household",
        WHATIF_EXAMPLES,
        description=f"{cmd_tariff_whatif.__doc__} Every account's consumption of the months "
        "is re-rated under today's plans (which must give the billed daily_usage to the fen) "
        "and with the proposed [plans.ID] tables in place of the plans of those ids. Writes "
        "OUT/accounts.csv (and .parquet), OUT/report.html (zh-CN and en) and "
        "tariff_scenarios rows.\n\n"
        "Exit status: 0 done, 1 when today's plans re-rated differ from daily_usage, "
        "2 for a bad tariff file or option.",
    )
    whatif.add_argument(
        "--from",
        dest="month_from",
        metavar="YYYY-MM",
        type=_month,
        required=True,
        help="first month re-rated",
    )
    whatif.add_argument(
        "--to",
        dest="month_to",
        metavar="YYYY-MM",
        type=_month,
        required=True,
        help="last month re-rated",
    )
    whatif.add_argument(
        "--proposed",
        metavar="FILE",
        required=True,
        help="TOML file of [plans.ID] tables, in the form of wattpay.toml",
    )
    whatif.add_argument(
        "--out",
        default=WHATIF_OUT,
        help=f"directory for accounts.csv/.parquet and report.html ({WHATIF_OUT})",
    )
    whatif.add_argument(
        "--accounts-per-pass",
        metavar="N",
        type=_positive,
        default=None,
        help="accounts re-rated together; memory grows with it, about 7 kB per account and "
        "day of the period (default: 300000 account-days a pass, at most 20000 accounts)",
    )
    whatif.add_argument("--quiet", action="store_true", help="no progress bar")
    _connections(whatif, brokers=False)
    whatif.set_defaults(handler=cmd_tariff_whatif)


def _bills_or_usage(parser: argparse.ArgumentParser) -> object:
    def handler(args: argparse.Namespace) -> int:
        if args.month is None and not args.now:
            parser.error("name a --month, or --now for this month to date")
        return cmd_bills(args)

    return handler


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
