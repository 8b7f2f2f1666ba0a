"""E-invoices (电子发票, SPEC S15.3): the VAT split, the ``invoices`` row and the XML document."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from jobs.money import div_half_up

VAT_RATE = Decimal("0.13")
ITEM = "*供电*电费"
UNIT = "kWh"


@dataclass(frozen=True)
class Seller:
    """The utility issuing the invoices (configured)."""

    name: str
    tax_id: str


def tax_split(amount: Decimal) -> tuple[Decimal, Decimal]:
    """(amount excluding tax, tax) of a tax-included amount at 13 % VAT.

    amount_excl_tax = round_half_up(amount ÷ 1.13, 2) and tax = amount − amount_excl_tax,
    on integer fen: excl = round(fen × 100 ÷ 113).
    """
    fen = int(amount.scaleb(2))
    if Decimal(fen).scaleb(-2) != amount:
        raise ValueError(f"{amount} has more than 2 decimals")
    excl = Decimal(div_half_up(fen * 100, 113)).scaleb(-2)
    return excl, amount - excl


def invoice_row(
    bill: dict[str, Any], seller: Seller, issued_at: datetime, pdf_path: str, xml_path: str
) -> dict[str, Any]:
    """The ``invoices`` row of a bill with a charge."""
    excl, tax = tax_split(bill["charge"])
    return {
        "invoice_no": bill["invoice_no"],
        "bill_id": bill["bill_id"],
        "account_id": bill["account_id"],
        "month": bill["month"],
        "issued_at": issued_at,
        "amount": bill["charge"],
        "amount_excl_tax": excl,
        "tax": tax,
        "tax_rate": VAT_RATE,
        "item": ITEM,
        "unit": UNIT,
        "quantity_kwh": bill["kwh"],
        "unit_price": bill["avg_price"],
        "seller_name": seller.name,
        "seller_tax_id": seller.tax_id,
        "buyer_name": bill["account_id"],
        "pdf_path": pdf_path,
        "xml_path": xml_path,
    }


def invoice_xml(invoice: dict[str, Any]) -> bytes:
    """The machine-readable invoice: one line, amounts as exact decimal strings."""
    root = ET.Element("EInvoice", {"version": "1.0"})
    header = ET.SubElement(root, "Header")
    _text(header, "InvoiceNumber", invoice["invoice_no"])
    _text(header, "IssueTime", invoice["issued_at"].isoformat())
    _text(header, "BillId", invoice["bill_id"])
    _text(header, "Currency", "CNY")
    seller = ET.SubElement(root, "Seller")
    _text(seller, "Name", invoice["seller_name"])
    _text(seller, "TaxID", invoice["seller_tax_id"])
    buyer = ET.SubElement(root, "Buyer")
    _text(buyer, "Name", invoice["buyer_name"])
    _text(buyer, "AccountId", invoice["account_id"])
    items = ET.SubElement(root, "Items")
    item = ET.SubElement(items, "Item", {"line": "1"})
    _text(item, "Name", invoice["item"])
    _text(item, "Unit", invoice["unit"])
    _text(item, "Quantity", str(invoice["quantity_kwh"]))
    _text(item, "UnitPriceTaxIncluded", str(invoice["unit_price"]))
    _text(item, "Amount", str(invoice["amount_excl_tax"]))
    _text(item, "TaxRate", str(invoice["tax_rate"]))
    _text(item, "TaxAmount", str(invoice["tax"]))
    totals = ET.SubElement(root, "Totals")
    _text(totals, "AmountExcludingTax", str(invoice["amount_excl_tax"]))
    _text(totals, "TaxAmount", str(invoice["tax"]))
    _text(totals, "AmountIncludingTax", str(invoice["amount"]))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _text(parent: ET.Element, tag: str, value: str) -> None:
    ET.SubElement(parent, tag).text = value
