"""Cost of the analysts' query check, and how long one heavy query can hold the ClickHouse client.

Usage: .venv/bin/python bench/query_guard.py [--repeat 200] [--max-seconds 10]

In one fresh embedded ClickHouse (chdb):

- **check:** the same small query run ``--repeat`` times unchecked (`ClickHouseStore.query`,
  the baseline) and through `query_readonly` (``formatQuery`` twice, ``EXPLAIN AST``, the
  tree walk, then the query under limits);
- **stall:** while a cross join of ``system.columns`` runs through `query_readonly`, another
  thread times ``SELECT 1`` on the same shared client, as the loader's inserts would wait;
  the baseline is the same probe with nothing else running;
- **refusal:** how long ``SELECT count() FROM numbers(1e12)`` takes to be refused.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

from store.clickhouse import ClickHouseError, ClickHouseStore, QueryLimits

SMALL = "SELECT kind, count(), sum(amount) FROM ledger FINAL GROUP BY kind"
HEAVY = (
    "SELECT count() FROM system.columns AS a, system.columns AS b, "
    "system.columns AS c, system.columns AS d"
)


def _timed(action: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return times


def _probe_latencies(store: ClickHouseStore, stop: threading.Event) -> list[float]:
    latencies: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        store.query("SELECT 1")
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    return latencies


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="runs of the small query")
    parser.add_argument("--max-seconds", type=int, default=10, help="the query time limit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, ClickHouseStore(f"chdb://{work}/ch") as store:
        store.migrate()
        bare = _timed(lambda: store.query(SMALL), args.repeat)
        checked = _timed(lambda: store.query_readonly(SMALL), args.repeat)
        print(
            f"check: unchecked median {statistics.median(bare) * 1000:.2f} ms, checked median "
            f"{statistics.median(checked) * 1000:.2f} ms, ratio "
            f"{statistics.median(checked) / statistics.median(bare):.1f}"
        )
        stop = threading.Event()
        result: list[list[float]] = []
        probe = threading.Thread(target=lambda: result.append(_probe_latencies(store, stop)))
        probe.start()
        time.sleep(1.0)
        stop.set()
        probe.join()
        idle = max(result.pop())
        stop.clear()
        probe = threading.Thread(target=lambda: result.append(_probe_latencies(store, stop)))
        started = time.perf_counter()
        probe.start()
        try:
            store.query_readonly(HEAVY, QueryLimits(max_seconds=args.max_seconds))
        except ClickHouseError as err:
            outcome = str(err)
        heavy = time.perf_counter() - started
        stop.set()
        probe.join()
        print(
            f"stall: heavy query ended after {heavy:.2f} s ({outcome}); longest SELECT 1 wait "
            f"{max(result.pop()):.2f} s, idle baseline {idle * 1000:.1f} ms"
        )
        started = time.perf_counter()
        try:
            store.query_readonly("SELECT count() FROM numbers(1e12)")
        except ValueError as err:
            outcome = str(err)
        print(f"refusal: {(time.perf_counter() - started) * 1000:.1f} ms ({outcome})")


if __name__ == "__main__":
    main()
