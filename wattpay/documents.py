"""Invoice PDFs rendered when the web pages ask for one (SPEC S15, S17)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render_invoice_on_demand(invoice: dict[str, Any], documents: Path) -> Path:
    """Render an invoice's PDF from its row into the jobs' output directory; return where.

    The web app gets this function (it may not import the jobs itself); the renderer and
    its fonts load on the first request that needs them.
    """
    from jobs.monthly import render_invoice_pdf

    return render_invoice_pdf(invoice, documents)
