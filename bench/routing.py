"""Routing state snapshots: the old single meter directory vs route buckets on shelves.

Usage: .venv/bin/python bench/routing.py [--meters 274000] [--payments-per-account 12]

Every epoch with input snapshots the routing state. The old flow kept it as one key (all
meters' ownership spans and every payment id ever claimed) and pickled it whole. The
routing steps now keep the spans in 8 route buckets whose shelves are pickled again only
after a change, the claims in 1,024 shards of which an epoch snapshots only those its
payments touched, and the lifecycle (status, meter, owner), pickled again only after an
account event. Both are built here for the same city and measured in this run: the old
directory pickled whole, and in a busy epoch (8 payments; a city of 274,000 accounts takes
about one top-up every 10 s) the 8 buckets' snapshots plus the 8 touched claims shards.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing.clock import LOCAL_ZONE  # noqa: E402
from billing.directory import Lifecycle, MeterDirectory, MeterSpans, OwnershipChange  # noqa: E402
from billing.messages import AccountEvent  # noqa: E402
from pipelines.routing import ROUTE_KEYS, claims_key, route_key  # noqa: E402
from pipelines.shelves import Shelved  # noqa: E402

START = datetime(2026, 1, 5, tzinfo=LOCAL_ZONE)


def city(
    meters: int, payments: int
) -> tuple[MeterDirectory, dict[str, Shelved[MeterSpans]], dict[str, dict], Lifecycle]:
    """The old directory, the route buckets' spans, the claims shards, and the lifecycle."""
    directory = MeterDirectory()
    buckets = {key: Shelved[MeterSpans]() for key in ROUTE_KEYS}
    shards: dict[str, dict[str, tuple[str, bool]]] = {}
    for index in range(meters):
        account, meter = f"A{index:07d}", f"M{index:07d}"
        opened = START + timedelta(minutes=index % 1440)
        directory.check(AccountEvent("open", account, opened, meter, "zhejiang-tiered"))
        spans = MeterSpans()
        spans.change(OwnershipChange(meter, account, opened))
        buckets[route_key(meter)][meter] = spans
        for payment in range(payments):
            claim = f"P-{account}-{payment}"
            directory.payment_ids[claim] = (account, True)
            shards.setdefault(claims_key(claim), {})[claim] = (account, True)
    for spans in buckets.values():  # the first snapshot pickles every shelf
        spans.snapshot()
    return directory, buckets, shards, directory.lifecycle


def seconds(function, repeat: int = 5) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=274_000)
    parser.add_argument("--payments-per-account", type=int, default=12)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC).date().isoformat()}; command: python {' '.join(sys.argv)}")
    directory, buckets, shards, lifecycle = city(args.meters, args.payments_per_account)
    whole = pickle.dumps(directory, protocol=pickle.HIGHEST_PROTOCOL)
    old = seconds(lambda: pickle.dumps(directory, protocol=pickle.HIGHEST_PROTOCOL))
    counter = iter(range(10**9))

    def busy_epoch() -> int:
        size = 0
        for spans in buckets.values():
            claim = f"P-new-{next(counter)}"
            shard = shards.setdefault(claims_key(claim), {})
            shard[claim] = ("A0000001", True)
            size += len(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
            state = (spans.snapshot(), (), {})
            size += len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        return size

    size = busy_epoch()
    new = seconds(busy_epoch)
    frozen = pickle.dumps(lifecycle, protocol=pickle.HIGHEST_PROTOCOL)
    lifecycle_pickle = seconds(lambda: pickle.dumps(lifecycle, protocol=pickle.HIGHEST_PROTOCOL))
    print(
        f"| {args.meters:,} meters, {args.payments_per_account} payment ids each "
        f"| {old * 1e3:,.0f} ms, {len(whole) / 1e6:,.1f} MB "
        f"| {new * 1e3:,.1f} ms, {size / 1e6:,.1f} MB "
        f"| {old / new:,.0f}× "
        f"| {lifecycle_pickle * 1e3:,.0f} ms, {len(frozen) / 1e6:,.1f} MB |"
    )
    print(
        "columns: old directory pickled whole per epoch | route buckets and touched claims "
        "shards in a busy epoch | old / new | lifecycle snapshot (pickled again only after an "
        "account event)"
    )


if __name__ == "__main__":
    main()
