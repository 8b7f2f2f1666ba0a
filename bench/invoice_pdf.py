"""Invoice and bill PDFs rendered on demand, as the web pages do after `bills --no-documents`.

Usage: .venv/bin/python bench/invoice_pdf.py --clickhouse chdb:///DIR [--rounds 12] [--prepare]

For every invoice and every bill in the database, ``--rounds`` times: read what the document
is rendered from (``web.documents.invoice``, ``web.documents.bill_document_inputs``) and render
its PDF into a scratch directory (``wattpay.documents.render_invoice_on_demand``,
``render_bill_on_demand``), then delete it so the next round renders again. Prints the first
render of the process (it builds the font subsets) apart from the median and maximum of the
others, in ms, invoices and bills alike (the invoice is the baseline of the same run). With
``--prepare`` it first prepares the renderer as the web pages do when they start
(``wattpay.documents.prepare_renderer``) and prints how long that took.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import load_settings  # noqa: E402
from store.clickhouse import ClickHouseStore  # noqa: E402
from wattpay.documents import (  # noqa: E402
    prepare_renderer,
    render_bill_on_demand,
    render_invoice_on_demand,
)
from web.documents import bill_document_inputs, invoice  # noqa: E402
from web.reads import Reader  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clickhouse", required=True)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="first prepare the renderer as the web pages do when they start",
    )
    args = parser.parse_args()
    if args.prepare:
        started = time.perf_counter()
        prepare_renderer(load_settings().seller_name)
        print(f"renderer prepared in {(time.perf_counter() - started) * 1000:.1f} ms")
    seconds: dict[str, list[float]] = {"invoice": [], "bill": []}
    first: list[tuple[str, float]] = []
    with ClickHouseStore(args.clickhouse) as store, tempfile.TemporaryDirectory() as scratch:
        reader = Reader.of_store(store)
        numbers = [r["invoice_no"] for r in reader.rows("SELECT invoice_no FROM invoices FINAL")]
        bills = [
            (r["account_id"], f"{r['month']:%Y-%m}")
            for r in reader.rows("SELECT account_id, month FROM bills FINAL")
        ]

        def one_invoice(number: str) -> Path:
            row = invoice(reader, number)
            assert row is not None
            return render_invoice_on_demand(row, Path(scratch))

        def one_bill(bill: tuple[str, str]) -> Path:
            inputs = bill_document_inputs(reader, *bill)
            assert inputs is not None
            return render_bill_on_demand(*inputs, Path(scratch))

        jobs: list[tuple[str, Callable[[], Path]]] = [
            *(("invoice", lambda n=n: one_invoice(n)) for n in numbers),
            *(("bill", lambda b=b: one_bill(b)) for b in bills),
        ]
        for _ in range(args.rounds):
            for kind, job in jobs:
                started = time.perf_counter()
                path = job()
                took = time.perf_counter() - started
                if first:
                    seconds[kind].append(took)
                else:
                    first.append((kind, took))
                path.unlink()
    kind, took = first[0]
    print(f"{len(numbers)} invoices and {len(bills)} bills × {args.rounds} rounds")
    how = "after the renderer was prepared" if args.prepare else "font subsets built"
    print(f"first render of the process ({kind}) {took * 1000:.1f} ms ({how})")
    for kind, values in seconds.items():
        ms = [s * 1000 for s in values]
        print(f"{kind}s: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms of {len(ms)}")


if __name__ == "__main__":
    main()
