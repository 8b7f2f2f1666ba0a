"""Invoice and bill PDFs rendered when the web pages ask for one (SPEC S15, S17)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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


def prepare_renderer(text: str = "") -> None:
    """Load the renderer and build its font subsets for its labels and ``text``.

    That is what a process's first PDF paid (about 0.7 s); ``text`` is what every document
    holds besides the labels (the seller's name). A PDF with characters not seen before
    still builds the subsets again.
    """
    from jobs.documents import warm_up
    from jobs.monthly import render_invoice_pdf  # noqa: F401 - loads the job's side too

    warm_up(text)


def prepare_in_background(text: str = "") -> threading.Thread:
    """`prepare_renderer` on a thread of its own, started with the web pages.

    The first PDF a household asks for then takes what any other does. Without the fonts
    it logs why and ends: the request that needs a PDF reports the missing font itself.
    """
    thread = threading.Thread(
        target=_prepare_quietly, args=(text,), name="pdf-renderer", daemon=True
    )
    thread.start()
    return thread


def _prepare_quietly(text: str) -> None:
    try:
        prepare_renderer(text)
    except (OSError, ImportError) as err:
        log.warning("PDF renderer not prepared: %s", err)
