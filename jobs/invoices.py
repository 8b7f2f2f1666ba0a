"""E-invoices (电子发票, SPEC S15.3): the VAT split, the ``invoices`` row and the XML document."""

from __future__ import annotations

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
    """The machine-readable invoice: one line, amounts as exact decimal strings.

    Written as text, not through an element tree (a monthly run writes one per bill):
    the bytes are those of ``xml.etree.ElementTree.tostring`` with ``indent``, an XML
    declaration and UTF-8 (text escaped for ``&``, ``<`` and ``>``, an empty value as
    ``<Tag />``), which tests/flow/test_bill_documents.py checks against it.
    """
    lines = [
        "<?xml version='1.0' encoding='utf-8'?>",
        '<EInvoice version="1.0">',
        "  <Header>",
        _line(2, "InvoiceNumber", invoice["invoice_no"]),
        _line(2, "IssueTime", invoice["issued_at"].isoformat()),
        _line(2, "BillId", invoice["bill_id"]),
        _line(2, "Currency", "CNY"),
        "  </Header>",
        "  <Seller>",
        _line(2, "Name", invoice["seller_name"]),
        _line(2, "TaxID", invoice["seller_tax_id"]),
        "  </Seller>",
        "  <Buyer>",
        _line(2, "Name", invoice["buyer_name"]),
        _line(2, "AccountId", invoice["account_id"]),
        "  </Buyer>",
        "  <Items>",
        '    <Item line="1">',
        _line(3, "Name", invoice["item"]),
        _line(3, "Unit", invoice["unit"]),
        _line(3, "Quantity", str(invoice["quantity_kwh"])),
        _line(3, "UnitPriceTaxIncluded", str(invoice["unit_price"])),
        _line(3, "Amount", str(invoice["amount_excl_tax"])),
        _line(3, "TaxRate", str(invoice["tax_rate"])),
        _line(3, "TaxAmount", str(invoice["tax"])),
        "    </Item>",
        "  </Items>",
        "  <Totals>",
        _line(2, "AmountExcludingTax", str(invoice["amount_excl_tax"])),
        _line(2, "TaxAmount", str(invoice["tax"])),
        _line(2, "AmountIncludingTax", str(invoice["amount"])),
        "  </Totals>",
        "</EInvoice>",
    ]
    return "\n".join(lines).encode("utf-8", "xmlcharrefreplace")


def _line(depth: int, tag: str, value: str) -> str:
    """One indented element holding ``value`` as escaped text."""
    if not isinstance(value, str):
        raise TypeError(f"{tag}: not text: {value!r}")
    indent = "  " * depth
    if not value:
        return f"{indent}<{tag} />"
    text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"{indent}<{tag}>{text}</{tag}>"
