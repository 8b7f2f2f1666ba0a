"""The monthly job (SPEC S15): bills, invoices, usage analysis and ``monthly_bill`` notices.

It reads ClickHouse, computes with polars, writes ``bills``, ``invoices`` and
``usage_analysis`` rows, the invoice XML/PDF and bill PDF files under the output directory,
and the notifications; it never changes a balance. Every id is derived from the account and
the month, so a second run rewrites the same rows, files and notifications.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import polars as pl

from config.settings import Settings
from jobs import tables
from jobs.bills import (
    CLOSING_LEDGER,
    CLOSING_POINTS,
    BillInputs,
    bill_frame,
    bill_rows,
    daily_kwh,
    unread_ytd,
)
from jobs.invoices import Seller, invoice_row, invoice_xml
from jobs.money import month_after
from jobs.notices import contacts, event_row, file_notices, monthly_bill
from jobs.progress import Progress
from store.clickhouse import BatchWriter, ClickHouseStore
from store.schema import as_stored

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class MonthlyResult:
    """What a run wrote."""

    month: date
    bills: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    analysis: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    notices_to: str = ""


def file_stem(account_id: str) -> str:
    """A file name for an account id (anything but letters, digits, ``_.-`` becomes ``_``)."""
    return _UNSAFE.sub("_", account_id) or "_"


def month_end(month: date, zone: ZoneInfo) -> datetime:
    """The instant a month ends: 00:00 local on the first day of the next one."""
    return datetime.combine(month_after(month), time(0), tzinfo=zone)


def read_inputs(store: ClickHouseStore, zone: str, month: date) -> BillInputs:
    """Everything the bills of ``month`` need: its rows, and the history folded in ClickHouse.

    Nothing before the month leaves ClickHouse row by row: the ledger's and points' history
    comes as a sum per account and kind, the months compared with as a sum per account.
    """
    inputs = BillInputs(
        month=month,
        daily_usage=tables.daily_usage(store, month_after(month), since=month),
        ledger=tables.month_buckets(store, "ledger", "amount", CLOSING_LEDGER, month, zone),
        points=tables.month_buckets(store, "points_ledger", "points", CLOSING_POINTS, month, zone),
        usage_before=tables.usage_before(store, month),
        earlier_ytd=pl.DataFrame(schema={"account_id": pl.String(), "ytd_kwh": pl.Int64()}),
        accounts=tables.accounts(store),
        disconnections=tables.events_in_month(store, "disconnected", month, zone),
        zone=zone,
    )
    missing = unread_ytd(inputs)
    if not missing:
        return inputs
    return replace(inputs, earlier_ytd=tables.last_ytd(store, month_after(month), missing))


def run_monthly(
    settings: Settings,
    month: date,
    out_dir: Path,
    *,
    account: str | None = None,
    today: date | None = None,
    progress: IO[str] | None = None,
    documents: bool = True,
) -> MonthlyResult:
    """Bill ``month`` for every account (or one), writing rows, documents and notices."""
    zone_info = settings.rules.zone
    zone = str(zone_info)
    issued_at = month_end(month, zone_info)  # type: ignore[arg-type]
    result = MonthlyResult(month)
    bounds = {
        plan_id: [int(b * 1000) for b in plan.tier_bounds]
        for plan_id, plan in settings.rules.plans.items()
    }
    seller = Seller(settings.seller_name, settings.seller_tax_id)
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        store.migrate()
        inputs = read_inputs(store, zone, month)
        frame = bill_frame(inputs, account)
        result.bills = bill_rows(frame, month, bounds, issued_at)
        events = tables.account_events(store)
        who = contacts(events)
        series = daily_kwh(inputs.daily_usage, month) if documents else {}
        bar = Progress(f"bills {month:%Y-%m}", len(result.bills), progress)
        result.invoices = [
            _invoice(bill, seller, issued_at, month)
            for bill in result.bills
            if bill["invoice_no"] is not None
        ]
        # The invoices' XML is written beside the rest of the run (creating a file is the
        # kernel's work, without the interpreter lock); the run ends when it is. The PDFs
        # stay here, in order: a PDF embeds the fonts' subset of the characters seen so far.
        files = ThreadPoolExecutor(1, thread_name_prefix="invoice-files")
        written = files.submit(_invoice_xml_files, result.invoices, out_dir)
        files.shutdown(wait=False)
        invoices = iter(result.invoices)
        for bill in result.bills:
            if documents:
                aid = bill["account_id"]
                if bill["invoice_no"] is not None:
                    render_invoice_pdf(next(invoices), out_dir)
                render_bill_pdf(bill, series.get(aid, []), who.get(aid, {}), out_dir)
            bar.advance()
        bar.finish()
        # The rows go the way every fact goes to ClickHouse: through the one batch writer.
        writer = BatchWriter(store, max_rows=settings.batch_rows, max_seconds=3600.0)
        writer.add_many("bills", result.bills)
        writer.add_many("invoices", result.invoices)
        writer.flush()  # the analysis reads this month's bills back
        from jobs.analysis import analysis_rows

        result.analysis = analysis_rows(
            store, settings, inputs, events, result.bills, month, today or issued_at.date()
        )
        writer.add_many("usage_analysis", result.analysis)
        result.notices = [
            monthly_bill(bill, issued_at, who.get(bill["account_id"], {})) for bill in result.bills
        ]
        writer.add_many(
            "events",
            [
                event_row(n, bill["meter_id"], issued_at)
                for n, bill in zip(result.notices, result.bills, strict=True)
            ],
        )
        writer.close()
        written.result()
    result.notices_to = _send(settings, out_dir, result.notices)
    return result


def _invoice(
    bill: dict[str, Any], seller: Seller, issued_at: datetime, month: date
) -> dict[str, Any]:
    folder = Path("invoices") / f"{month:%Y-%m}"
    # Named by account and invoice number: the web pages serve an invoice by its number.
    stem = f"{file_stem(bill['account_id'])}-{bill['invoice_no']}"
    return invoice_row(
        bill, seller, issued_at, str(folder / f"{stem}.pdf"), str(folder / f"{stem}.xml")
    )


def _invoice_xml_files(invoices: list[dict[str, Any]], out_dir: Path) -> None:
    """Write each invoice's XML under ``out_dir``."""
    folders: set[Path] = set()
    for row in invoices:
        xml = out_dir / row["xml_path"]
        if xml.parent not in folders:
            xml.parent.mkdir(parents=True, exist_ok=True)
            folders.add(xml.parent)
        xml.write_bytes(invoice_xml(row))


def render_invoice_pdf(invoice: Mapping[str, Any], out_dir: Path) -> Path:
    """Write an invoice's PDF at its ``pdf_path`` under ``out_dir``; return where.

    The same bytes from the job's row and from the row read back from ClickHouse, so the
    web pages may render one on demand (``wattpay bills --no-documents``) and keep it. The
    file appears whole or not at all: it is written beside and renamed into place.
    """
    root = out_dir.resolve()
    path = (root / str(invoice["pdf_path"])).resolve()
    if not path.is_relative_to(root) or path.suffix != ".pdf":
        raise ValueError(f"an invoice PDF must be a .pdf under {root}: {invoice['pdf_path']!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    from jobs.documents import render_invoice

    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        render_invoice(as_stored("invoices", invoice), partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def bill_pdf_name(account_id: str, month: date) -> Path:
    """Where under the output directory an account's bill PDF of a month is kept."""
    return Path("bills") / f"{month:%Y-%m}" / f"{file_stem(account_id)}.pdf"


def render_bill_pdf(
    bill: Mapping[str, Any], daily_milli: list[int], contact: Mapping[str, str], out_dir: Path
) -> Path:
    """Write a bill's PDF at `bill_pdf_name` under ``out_dir``; return where.

    ``daily_milli`` is the month's kWh (milli) a day (`jobs.bills.daily_kwh`) and ``contact``
    the account's latest contact fields (its locale). The same bytes from the job's row and
    from the row read back from ClickHouse, so the web pages may render one on demand
    (``wattpay bills --no-documents``) and keep it; written beside and renamed into place.
    """
    root = out_dir.resolve()
    path = root / bill_pdf_name(str(bill["account_id"]), bill["month"])
    path.parent.mkdir(parents=True, exist_ok=True)
    from jobs.documents import render_bill

    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        render_bill(as_stored("bills", bill), list(daily_milli), dict(contact), partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _send(settings: Settings, out_dir: Path, notices: list[dict[str, Any]]) -> str:
    """To the notifications topic when brokers are configured, else to the topic's file."""
    if settings.brokers:
        from bus.kafka import JsonProducer, kafka_config

        topic = settings.topic("notifications")
        with JsonProducer(kafka_config(settings)) as producer:
            for notice in notices:
                producer.send(topic, notice["account_id"], notice)
        return topic
    return str(file_notices(out_dir, settings.topic_prefix, notices))
