"""Bill and invoice PDFs: Chinese text embedded with a real CJK font, rendered by poppler."""

import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.documents import render_bill, render_invoice
from jobs.invoices import Seller, invoice_row, invoice_xml
from tests.tools import require_tool

D = Decimal
ISSUED = datetime(2026, 4, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
BILL = {
    "bill_id": "户1:2026-03",
    "account_id": "户1",
    "month": date(2026, 3, 1),
    "meter_id": "M1",
    "plan": "zhejiang-tiered",
    "days": 22,
    "kwh": D("30.000"),
    "kwh_peak": D("0.000"),
    "kwh_valley": D("0.000"),
    "kwh_tier1": D("30.000"),
    "kwh_tier2": D("0.000"),
    "kwh_tier3": D("0.000"),
    "charge": D("16.14"),
    "topups": D("500.00"),
    "topup_count": 1,
    "rebates": D("30.00"),
    "points_redeemed_yuan": D("0.00"),
    "refund": D("0.00"),
    "opening_balance": D("100.00"),
    "closing_balance": D("613.86"),
    "points_opening": 0,
    "points_earned": 512,
    "points_redeemed": 0,
    "points_expired": 0,
    "points_closing": 512,
    "ytd_kwh": D("30.000"),
    "tier": 1,
    "kwh_to_next_tier": D("2730.000"),
    "avg_price": D("0.5380"),
    "kwh_prev_month": None,
    "kwh_same_month_last_year": None,
    "disconnections": 0,
    "invoice_no": "20260312345678901234",
    "generated_at": ISSUED,
}


def _text(pdf: Path) -> str:
    tool = require_tool("pdftotext", package="poppler-utils")
    return subprocess.run([tool, str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def _fonts(pdf: Path) -> str:
    tool = require_tool("pdffonts", package="poppler-utils")
    return subprocess.run([tool, str(pdf)], capture_output=True, text=True, check=True).stdout


def _renders(pdf: Path, tmp_path: Path) -> None:
    tool = require_tool("pdftoppm", package="poppler-utils")
    subprocess.run([tool, "-png", "-r", "30", str(pdf), str(tmp_path / "page")], check=True)
    assert (tmp_path / "page-1.png").stat().st_size > 1000


def test_bill_pdf_in_chinese_and_english(tmp_path: Path) -> None:
    zh, en = tmp_path / "zh.pdf", tmp_path / "en.pdf"
    daily = [0] * 9 + [10_000, 20_000] + [0] * 20
    render_bill(BILL, daily, {"locale": "zh-CN"}, zh)
    render_bill(BILL, daily, {"locale": "en"}, en)
    text = _text(zh)
    for words in (
        "电费月账单",
        "本月电费",
        "16.14",
        "期末余额",
        "613.86",
        "每日用电量",
        "年度阶梯位置",
        "户1",
    ):
        assert words in text
    (cjk,) = [line for line in _fonts(zh).splitlines() if "DroidSansFallback" in line]
    assert cjk.split()[-5:-2] == ["yes", "yes", "yes"]  # embedded, subset, with a unicode map
    assert "Monthly electricity bill" in _text(en) and "613.86" in _text(en)
    _renders(zh, tmp_path)
    again = tmp_path / "again.pdf"
    _next_second()
    render_bill(BILL, daily, {"locale": "zh-CN"}, again)
    assert again.read_bytes() == zh.read_bytes()  # a re-run writes the same document


def test_invoice_pdf(tmp_path: Path) -> None:
    row = invoice_row(
        BILL, Seller("国网示例供电有限公司", "91330000000000000X"), ISSUED, "i.pdf", "i.xml"
    )
    pdf = tmp_path / "invoice.pdf"
    render_invoice(row, pdf)
    text = _text(pdf)
    for words in (
        "电子发票",
        "*供电*电费",
        "国网示例供电有限公司",
        "14.28",
        "1.86",
        "16.14",
        "20260312345678901234",
    ):
        assert words in text
    _renders(pdf, tmp_path)
    again = tmp_path / "again.pdf"
    _next_second()  # the clock must not reach the document (an embedded font's date did)
    render_invoice(row, again)
    assert again.read_bytes() == pdf.read_bytes()


def test_a_prepared_renderer_makes_no_font_subsets_for_an_invoice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The web pages prepare the renderer when they start, for the labels and the seller's
    # name: the first invoice a household asks for then builds no font subsets (0.7 s).
    import jobs.documents
    from jobs.fonts import _Fonts
    from wattpay.documents import prepare_renderer

    fonts = _Fonts()
    monkeypatch.setattr(jobs.documents, "FONTS", fonts)
    seller = Seller("国网示例供电有限公司", "91330000000000000X")
    prepare_renderer(seller.name)
    prepared = fonts.files
    assert prepared is not None
    render_invoice(invoice_row(BILL, seller, ISSUED, "i.pdf", "i.xml"), tmp_path / "i.pdf")
    assert fonts.files is prepared
    assert "国网示例供电有限公司" in _text(tmp_path / "i.pdf")


def _next_second() -> None:
    """Wait until the wall clock's second changes."""
    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.02)


def test_font_subsets_made_in_another_process_are_the_same_bytes() -> None:
    from jobs.fonts import _Fonts

    first = _Fonts().for_text("户1 電費")  # each process makes its own subsets, when it needs them
    _next_second()
    second = _Fonts().for_text("户1 電費")
    for one, other in zip(first, second, strict=True):
        assert one != other and one.read_bytes() == other.read_bytes()


def _tree_xml(invoice: dict) -> bytes:
    """The invoice XML as an element tree writes it (what `invoice_xml` must equal)."""
    root = ET.Element("EInvoice", {"version": "1.0"})
    groups = {
        "Header": ["InvoiceNumber", "IssueTime", "BillId", "Currency"],
        "Seller": ["Name", "TaxID"],
        "Buyer": ["Name", "AccountId"],
    }
    values = {
        "InvoiceNumber": invoice["invoice_no"],
        "IssueTime": invoice["issued_at"].isoformat(),
        "BillId": invoice["bill_id"],
        "Currency": "CNY",
        "TaxID": invoice["seller_tax_id"],
        "AccountId": invoice["account_id"],
    }
    for group, tags in groups.items():
        parent = ET.SubElement(root, group)
        for tag in tags:
            name = {"Seller": "seller_name", "Buyer": "buyer_name"}.get(group)
            ET.SubElement(parent, tag).text = invoice[name] if tag == "Name" else values[tag]
    item = ET.SubElement(ET.SubElement(root, "Items"), "Item", {"line": "1"})
    lines = [("Name", "item"), ("Unit", "unit"), ("Quantity", "quantity_kwh")]
    lines += [("UnitPriceTaxIncluded", "unit_price"), ("Amount", "amount_excl_tax")]
    lines += [("TaxRate", "tax_rate"), ("TaxAmount", "tax")]
    for tag, key in lines:
        ET.SubElement(item, tag).text = str(invoice[key])
    totals = ET.SubElement(root, "Totals")
    for tag, key in [("AmountExcludingTax", "amount_excl_tax"), ("TaxAmount", "tax")]:
        ET.SubElement(totals, tag).text = str(invoice[key])
    ET.SubElement(totals, "AmountIncludingTax").text = str(invoice["amount"])
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@pytest.mark.parametrize(
    ("seller", "account"),
    [
        (Seller("国网浙江省电力有限公司", "91330000MA27U0XX1"), "H-001"),
        (Seller("A & B <Power> \"Co\" 'x'", ""), "<&>\r\n\t"),
        (Seller("", "x" * 300), "\ud800 lone"),
    ],
)
def test_invoice_xml_is_what_an_element_tree_writes(seller: Seller, account: str) -> None:
    bill = {
        "invoice_no": f"INV-{account}",
        "bill_id": f"{account}:2026-03",
        "account_id": account,
        "month": date(2026, 3, 1),
        "charge": Decimal("123.45"),
        "kwh": Decimal("230.125"),
        "avg_price": Decimal("0.5364"),
    }
    issued = datetime(2026, 4, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    invoice = invoice_row(bill, seller, issued, "a.pdf", "a.xml")
    assert invoice_xml(invoice) == _tree_xml(invoice)
