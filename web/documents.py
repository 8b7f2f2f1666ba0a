"""Monthly bills and e-invoices (SPEC S15) for the pages, and their PDF/XML documents.

The ``bills`` and ``invoices`` tables are written by the monthly jobs; until a database has
them (or rows in them) the pages show no bills rather than an error.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

from billing.contacts import CONTACT_EVENTS, DEFAULT_LOCALE, contact_fields
from web.reads import Reader

INVOICE_NO = re.compile(r"\d{20}")
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9_.-]")  # as the monthly job names an account's files
DOCUMENT_TYPES = {"pdf": "application/pdf", "xml": "application/xml"}
BILL_LIMIT = 24
FIRST_MONTH, LAST_MONTH = date(1970, 1, 1), date(2149, 5, 1)  # whole months a Date holds


def bills(reader: Reader, account_id: str) -> list[dict[str, Any]]:
    """The account's bills, newest month first, each with its invoice when there is one."""
    if not reader.has_table("bills"):
        return []
    rows = reader.rows(
        "SELECT * FROM bills FINAL WHERE account_id = {account_id:String} "
        "ORDER BY month DESC LIMIT {limit:UInt32}",
        account_id=account_id,
        limit=BILL_LIMIT,
    )
    invoices: dict[str, dict[str, Any]] = {}
    if rows and reader.has_table("invoices"):
        for invoice in reader.rows(
            "SELECT * FROM invoices FINAL WHERE account_id = {account_id:String}",
            account_id=account_id,
        ):
            invoices[str(invoice.get("bill_id"))] = invoice
    for row in rows:
        row["invoice"] = invoices.get(str(row.get("bill_id")))
    return rows


def invoice(reader: Reader, invoice_no: str) -> dict[str, Any] | None:
    """The ``invoices`` row of a 20-digit invoice number, if there is one."""
    if not INVOICE_NO.fullmatch(invoice_no) or not reader.has_table("invoices"):
        return None
    return reader.one(
        "SELECT * FROM invoices FINAL WHERE invoice_no = {invoice_no:String} LIMIT 1",
        invoice_no=invoice_no,
    )


def document_path(directory: Path | None, invoice_no: str, kind: str) -> Path | None:
    """The invoice's PDF or XML under the jobs' output directory, if it has been written.

    ``invoice_no`` must be the 20 digits of S15.3 and ``kind`` ``pdf`` or ``xml``; the file is
    looked for by name (``{invoice_no}.{kind}``) anywhere below the directory.
    """
    if directory is None or kind not in DOCUMENT_TYPES or not INVOICE_NO.fullmatch(invoice_no):
        return None
    root = directory.resolve()
    for path in sorted(root.rglob(f"*{invoice_no}*.{kind}")):
        resolved = path.resolve()
        if resolved.is_file() and resolved.is_relative_to(root):
            return resolved
    return None


def bill_pdf_path(directory: Path | None, account_id: str, month: str) -> Path | None:
    """The monthly bill PDF of an account (``bills/YYYY-MM/<account>.pdf``), if written.

    ``month`` must read ``YYYY-MM``; the account id has been checked by the caller.
    """
    if directory is None or not MONTH.fullmatch(month):
        return None
    root = directory.resolve()
    name = (UNSAFE_IN_NAMES.sub("_", account_id) or "_") + ".pdf"
    path = (root / "bills" / month / name).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def bill_pdf_url(account_id: str, month: str) -> str:
    """Where the pages serve a monthly bill PDF."""
    return f"/accounts/{account_id}/bills/{month}.pdf"


def link_bill_pdfs(
    rows: list[dict[str, Any]], directory: Path | None, account_id: str, *, renders: bool
) -> None:
    """Give each bill its PDF's link (``bill_pdf``), else None.

    A bill is linked when its PDF is written or can be rendered on demand (``renders``, with
    a documents directory).
    """
    for row in rows:
        month = row["month"].strftime("%Y-%m") if hasattr(row["month"], "strftime") else ""
        found = (renders and directory is not None) or bill_pdf_path(directory, account_id, month)
        row["bill_pdf"] = bill_pdf_url(account_id, month) if found else None


def month_start(month: str) -> date | None:
    """The first day of a ``YYYY-MM`` month a ClickHouse Date holds, else None."""
    if not MONTH.fullmatch(month):
        return None
    first = date(int(month[:4]), int(month[5:]), 1) if month[:4] != "0000" else None
    return first if first is not None and FIRST_MONTH <= first <= LAST_MONTH else None


def month_after(first: date) -> date:
    """The first day of the next month."""
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def bill_document_inputs(
    reader: Reader, account_id: str, month: str
) -> tuple[dict[str, Any], list[int], dict[str, str]] | None:
    """What a bill PDF is rendered from, read as the monthly job reads it; None without a bill.

    The ``bills`` row, the month's kWh (milli) a day (none without usage that month) and the
    account's latest contact fields.
    """
    first = month_start(month)
    if first is None or not reader.has_table("bills"):
        return None
    bill = reader.one(
        "SELECT * FROM bills FINAL WHERE account_id = {account_id:String} "
        "AND month = {month:Date} LIMIT 1",
        account_id=account_id,
        month=first,
    )
    if bill is None:
        return None
    days = reader.rows(
        "SELECT day, toInt64(kwh * 1000) AS milli FROM daily_usage FINAL "
        "WHERE account_id = {account_id:String} AND day >= {first:Date} "
        "AND day < {after:Date} ORDER BY day",
        account_id=account_id,
        first=first,
        after=month_after(first),
    )
    daily: list[int] = []
    if days:
        daily = [0] * (month_after(first) - first).days
        for row in days:
            daily[(row["day"] - first).days] = int(row["milli"])
    return bill, daily, contact(reader, account_id)


def contact(reader: Reader, account_id: str) -> dict[str, str]:
    """The account's latest contact fields (locale, phone, e-mail), as the monthly job takes them.

    From its applied ``open`` and ``update`` events, the latest last.
    """
    if not reader.has_table("account_events"):
        return {}
    found: dict[str, str] = {}
    for row in reader.rows(
        "SELECT toString(type) AS type, payload FROM account_events FINAL "
        "WHERE account_id = {account_id:String} AND type IN {types:Array(String)} "
        "ORDER BY ts",
        account_id=account_id,
        types=sorted(CONTACT_EVENTS),
    ):
        found.setdefault("locale", DEFAULT_LOCALE)
        try:
            body = json.loads(row["payload"])
        except ValueError:
            continue
        if isinstance(body, dict):
            found.update(contact_fields(body))
    return found
