"""The e-invoice VAT split and document (S15.3), on exact decimals."""

import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from jobs.bills import invoice_number, tier_position
from jobs.invoices import Seller, invoice_row, invoice_xml, tax_split

D = Decimal


@pytest.mark.parametrize(
    ("amount", "excl", "tax"),
    [
        ("16.14", "14.28", "1.86"),  # 16.14 ÷ 1.13 = 14.2831…
        ("77.95", "68.98", "8.97"),  # 68.9823…
        ("1.13", "1.00", "0.13"),
        ("0.01", "0.01", "0.00"),  # 0.00885 → 0.01
        ("0.06", "0.05", "0.01"),  # 0.0531 → 0.05
        ("100000.00", "88495.58", "11504.42"),  # 88495.5752…
    ],
)
def test_tax_split(amount: str, excl: str, tax: str) -> None:
    got = tax_split(D(amount))
    assert got == (D(excl), D(tax))
    assert got[0] + got[1] == D(amount)


def test_tax_split_refuses_sub_fen_amounts() -> None:
    with pytest.raises(ValueError, match="2 decimals"):
        tax_split(D("1.005"))


def test_invoice_numbers_are_twenty_digits_and_per_bill() -> None:
    numbers = {invoice_number(f"A{i}", date(2026, 3, 1)) for i in range(2000)}
    assert len(numbers) == 2000
    assert all(len(n) == 20 and n.isdigit() and n.startswith("202603") for n in numbers)
    assert invoice_number("A1", date(2026, 3, 1)) == invoice_number("A1", date(2026, 3, 1))
    assert invoice_number("A1", date(2026, 3, 1)) != invoice_number("A1", date(2026, 4, 1))


def test_tier_position_by_bounds() -> None:
    bounds = [2_760_000, 4_800_000]
    assert tier_position(0, bounds) == (1, 2_760_000)
    assert tier_position(2_760_000, bounds) == (1, 0)  # tier 1 covers (0, 2760]
    assert tier_position(2_760_001, bounds) == (2, 2_039_999)
    assert tier_position(4_800_001, bounds) == (3, None)


def test_invoice_xml_carries_the_exact_amounts() -> None:
    bill = {
        "invoice_no": "20260312345678901234",
        "bill_id": "A1:2026-03",
        "account_id": "A1",
        "month": date(2026, 3, 1),
        "charge": D("16.14"),
        "kwh": D("30.000"),
        "avg_price": D("0.5380"),
    }
    issued = datetime(2026, 4, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    row = invoice_row(
        bill, Seller("国网示例供电有限公司", "91330000000000000X"), issued, "a.pdf", "a.xml"
    )
    root = ET.fromstring(invoice_xml(row))  # noqa: S314 - our own document
    assert root.findtext("Header/InvoiceNumber") == "20260312345678901234"
    assert root.findtext("Seller/Name") == "国网示例供电有限公司"
    assert root.findtext("Items/Item/Name") == "*供电*电费"
    assert root.findtext("Items/Item/Quantity") == "30.000"
    assert root.findtext("Items/Item/UnitPriceTaxIncluded") == "0.5380"
    assert root.findtext("Totals/AmountExcludingTax") == "14.28"
    assert root.findtext("Totals/TaxAmount") == "1.86"
    assert root.findtext("Totals/AmountIncludingTax") == "16.14"
