"""An invoice PDF rendered on demand, as the web pages do after `wattpay bills --no-documents`.

Usage: .venv/bin/python bench/invoice_pdf.py --clickhouse chdb:///DIR [--rounds 12]

For every invoice in the database, ``--rounds`` times: read its row (``web.documents.invoice``)
and render its PDF into a scratch directory (``wattpay.documents.render_invoice_on_demand``),
then delete it so the next round renders again. Prints the first render of the process (it
builds the font subsets) apart from the median and maximum of the others, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store.clickhouse import ClickHouseStore  # noqa: E402
from wattpay.documents import render_invoice_on_demand  # noqa: E402
from web.documents import invoice  # noqa: E402
from web.reads import Reader  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clickhouse", required=True)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    seconds: list[float] = []
    with ClickHouseStore(args.clickhouse) as store, tempfile.TemporaryDirectory() as scratch:
        reader = Reader.of_store(store)
        numbers = [r["invoice_no"] for r in reader.rows("SELECT invoice_no FROM invoices FINAL")]
        for _ in range(args.rounds):
            for number in numbers:
                started = time.perf_counter()
                row = invoice(reader, number)
                assert row is not None
                path = render_invoice_on_demand(row, Path(scratch))
                seconds.append(time.perf_counter() - started)
                path.unlink()
    first, rest = seconds[0] * 1000, [s * 1000 for s in seconds[1:]]
    print(f"{len(numbers)} invoices × {args.rounds} rounds")
    print(f"first render of the process {first:.1f} ms (font subsets built)")
    print(f"then median {statistics.median(rest):.1f} ms, max {max(rest):.1f} ms")


if __name__ == "__main__":
    main()
