"""Cost of the web pages' reads over a replayed example month (SPEC S17).

Usage: .venv/bin/python bench/web.py [--households 300] [--days 30] [--repeat 15]

Writes (once) a ``wattpay example`` set and replays it into an embedded ClickHouse under
``bench/data/web-<households>x<days>/``, then times, in this process and through the same
read path the app uses (`ClickHouseStore.read`):

- **baseline:** one small read, ``SELECT status, count() FROM accounts FINAL GROUP BY status``;
- **operations:** every figure of the operations page (what one live refresh computes);
- **household:** everything on one household page;
- **api daily:** the daily-usage API's read for 30 days;
- **landlord:** one landlord page (after adding ``accounts.landlord_id`` to a copy, as the
  S8 migration will).

Medians over ``--repeat`` runs, and each as a multiple of the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store.clickhouse import ClickHouseStore  # noqa: E402
from web.household import account, daily, household  # noqa: E402
from web.landlord import landlord  # noqa: E402
from web.operations import operations  # noqa: E402
from web.reads import Reader  # noqa: E402

WATTPAY = [sys.executable, "-m", "wattpay.cli"]


def prepare(households: int, days: int) -> tuple[Path, Path]:
    """The example inputs and a replayed database (built once, kept in bench/data)."""
    base = ROOT / "bench" / "data" / f"web-{households}x{days}"
    inputs, database = base / "input", base / "clickhouse"
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        subprocess.run(
            [*WATTPAY, "example", str(inputs), "--households", str(households),
             "--days", str(days), "--seed", "7"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*WATTPAY, "replay", str(inputs), "--clickhouse", f"chdb://{database}", "--quiet"],
            check=True,
        )
        with ClickHouseStore(f"chdb://{database}") as store:
            store.command("ALTER TABLE accounts ADD COLUMN IF NOT EXISTS landlord_id String")
            for line in (inputs / "accounts.jsonl").read_text().splitlines():
                event = json.loads(line) if '"landlord_id"' in line else None
                if event and event.get("type") == "open":
                    # Ids from our own example set (letters and digits only).
                    store.command(
                        f"ALTER TABLE accounts UPDATE landlord_id = '{event['landlord_id']}' "
                        f"WHERE account_id = '{event['account_id']}' SETTINGS mutations_sync = 1"
                    )
        (base / "done").touch()
    return inputs, database


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=300)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    inputs, database = prepare(args.households, args.days)
    landlord_id = next(
        json.loads(line)["landlord_id"]
        for line in (inputs / "accounts.jsonl").read_text().splitlines()
        if '"landlord_id"' in line
    )
    with ClickHouseStore(f"chdb://{database}") as store:
        reader = Reader.of_store(store)
        (counts,) = reader.rows("SELECT count() AS n FROM intervals")
        some = reader.rows("SELECT account_id FROM accounts FINAL ORDER BY account_id LIMIT 1")
        account_id = some[0]["account_id"]
        last = account(reader, account_id)["today"] - timedelta(days=1)
        cases = {
            "baseline": lambda: reader.rows(
                "SELECT status, count() AS n FROM accounts FINAL GROUP BY status"
            ),
            "operations": lambda: operations(reader, {}, {}),
            "household": lambda: household(reader, account_id),
            "api daily": lambda: daily(reader, account_id, last - timedelta(days=29), last),
            "landlord": lambda: landlord(reader, landlord_id),
        }
        results = {name: median_ms(action, args.repeat) for name, action in cases.items()}
    base = results["baseline"]
    print(
        f"{time.strftime('%Y-%m-%d')} · {platform.machine()} · Python {platform.python_version()}"
        f" · {args.households} households × {args.days} days · {counts['n']:,} interval rows"
    )
    print("| read | median ms | × baseline |\n|---|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.1f} | {value / base:.1f} |")


if __name__ == "__main__":
    main()
