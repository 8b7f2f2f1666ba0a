"""The short summary printed after a replay, read back from ClickHouse."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from store.clickhouse import ClickHouseStore

SUMMARY_QUERIES = {
    "households": "SELECT count() FROM accounts FINAL",
    "readings": "SELECT count() FROM readings FINAL",
    "kwh": "SELECT sum(kwh) FROM daily_usage FINAL",
    "charged": "SELECT -sum(amount) FROM ledger FINAL WHERE kind = 'charge'",
    "credited": (
        "SELECT sum(amount) FROM ledger FINAL"
        " WHERE kind IN ('topup', 'rebate', 'points_redemption')"
    ),
    "rebates": "SELECT sum(amount) FROM ledger FINAL WHERE kind = 'rebate'",
    "refunded": "SELECT -sum(amount) FROM ledger FINAL WHERE kind = 'refund'",
    "points_earned": "SELECT sum(points) FROM points_ledger FINAL WHERE points > 0",
    "points_used": "SELECT -sum(points) FROM points_ledger FINAL WHERE points < 0",
}
BY_TYPE = "SELECT type, count() FROM events FINAL GROUP BY type ORDER BY type"
BY_REASON = (
    "SELECT topic, reason, count() FROM rejected FINAL"
    " GROUP BY topic, reason ORDER BY topic, reason"
)
BY_STATUS = "SELECT status, count() FROM accounts FINAL GROUP BY status ORDER BY status"


def print_summary(
    store: ClickHouseStore, out: Path, prefix: str, elapsed: float, stream: TextIO
) -> None:
    """Households, energy, money, points, events by type and rejections by reason."""
    values = {name: store.query(sql)[1][0][0] for name, sql in SUMMARY_QUERIES.items()}
    print("wattpay replay summary", file=stream)
    print(f"  households        {values['households']}", file=stream)
    print(f"  readings accepted {values['readings']}", file=stream)
    print(f"  energy billed     {values['kwh']} kWh", file=stream)
    print(f"  charged           {values['charged']} yuan", file=stream)
    print(
        f"  credited          {values['credited']} yuan (rebates {values['rebates']})", file=stream
    )
    print(f"  refunded          {values['refunded']} yuan", file=stream)
    print(
        f"  points            {values['points_earned']} earned,"
        f" {values['points_used']} used or expired",
        file=stream,
    )
    print(
        "  accounts by status: " + ", ".join(f"{s} {n}" for s, n in store.query(BY_STATUS)[1]),
        file=stream,
    )
    print("  notifications, commands and requests by type:", file=stream)
    for kind, count in store.query(BY_TYPE)[1]:
        print(f"    {kind:<32} {count}", file=stream)
    print("  rejected inputs by reason:", file=stream)
    for topic, reason, count in store.query(BY_REASON)[1]:
        print(f"    {topic:<18} {reason:<20} {count}", file=stream)
    rate = values["readings"] / elapsed if elapsed > 0 else 0
    print(f"  wall time         {elapsed:.1f} s ({rate:,.0f} readings/s)", file=stream)
    print(f"  topic outputs     {out}/{prefix}*.jsonl", file=stream)
