"""Invoice and bill PDFs rendered when the web pages ask for one (SPEC S15, S17)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def render_invoice_on_demand(invoice: dict[str, Any], documents: Path) -> Path:
    """Render an invoice's PDF from its row into the jobs' output directory; return where.

    The web app gets this function (it may not import the jobs itself); the renderer and
    its fonts load on the first request that needs them.
    """
    from jobs.monthly import render_invoice_pdf

    return render_invoice_pdf(invoice, documents)


def render_bill_on_demand(
    bill: dict[str, Any], daily_milli: list[int], contact: Mapping[str, str], documents: Path
) -> Path:
    """Render a monthly bill's PDF where the job keeps it; return where.

    From its row, the month's daily kWh (milli, one a day, or none without usage) and the
    account's contact fields, as `render_invoice_on_demand` does an invoice.
    """
    from jobs.monthly import render_bill_pdf

    return render_bill_pdf(bill, daily_milli, contact, documents)
