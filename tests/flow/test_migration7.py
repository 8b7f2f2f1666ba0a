"""Migration 7 partitions ``intervals`` and ``daily_usage`` by month (real chdb).

A month's reads of the monthly job then read that month's partition alone, however long the
history; a batch of many months still inserts; the rows of an upgraded database are kept.
"""

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from jobs import aggregates, tables
from store import schema
from store.clickhouse import ClickHouseError, ClickHouseStore

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONE = "Asia/Shanghai"
MONTHS = (dt.date(2026, 9, 1), dt.date(2026, 10, 1), dt.date(2026, 11, 1))


def _interval(account: str, start: dt.datetime, milli: int, tier: int = 1) -> dict[str, object]:
    return {
        "account_id": account,
        "meter_id": f"M-{account}",
        "start": start,
        "end": start + dt.timedelta(minutes=15),
        "kwh": Decimal(milli).scaleb(-3),
        "period": "flat",
        "tier": tier,
        "price": Decimal("0.5380"),
        "cost": Decimal(milli * 5380).scaleb(-7),
    }


def _day(account: str, day: dt.date, milli: int, ytd: int) -> dict[str, object]:
    energy = Decimal(milli).scaleb(-3)
    return {
        "account_id": account,
        "day": day,
        "kwh": energy,
        "kwh_peak": Decimal(0),
        "kwh_valley": Decimal(0),
        "kwh_tier1": energy,
        "kwh_tier2": Decimal(0),
        "kwh_tier3": Decimal(0),
        "charge": Decimal("1.00"),
        "ytd_kwh": Decimal(ytd).scaleb(-3),
        "closing_balance": Decimal("50.00"),
    }


def _history() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Two accounts' quarter hours at 00:00 and 23:45 on each month's first and last days."""
    intervals, days = [], []
    for first in MONTHS:
        last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        for account, milli in (("A1", 250), ("A2", 1000)):
            for day in (first, last):
                for clock in (dt.time(0), dt.time(23, 45)):
                    start = dt.datetime.combine(day, clock, tzinfo=SHANGHAI)
                    intervals.append(_interval(account, start, milli))
                days.append(_day(account, day, 2 * milli, 0))
    intervals.append(_interval("A1", dt.datetime(2026, 10, 1, 0, 15, tzinfo=SHANGHAI), 100, 2))
    return intervals, days


def _old_database(store: ClickHouseStore) -> None:
    """Migrations 1–6 applied, both tables unpartitioned, every row written twice (a replay)."""
    store.command(schema.create_table_sql(schema.SCHEMA_MIGRATIONS))
    for table in schema.TABLES:
        store.command(schema.create_table_sql(dataclasses.replace(table, partition_by=None)))
    now = dt.datetime(2026, 1, 1, tzinfo=SHANGHAI)
    store.insert_rows(
        "schema_migrations",
        [{"version": v, "description": f"v{v}", "applied_at": now} for v in range(1, 7)],
    )
    intervals, days = _history()
    for _ in range(2):
        store.insert_rows("intervals", intervals)
        store.insert_rows("daily_usage", days)


def _keys(store: ClickHouseStore) -> dict[str, str]:
    _, rows = store.query(
        "SELECT name, partition_key FROM system.tables WHERE database = currentDatabase()"
        " AND name IN ('intervals', 'daily_usage')"
    )
    return dict(rows)


def _contents(store: ClickHouseStore) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    _, intervals = store.query(
        "SELECT account_id, start, tier, kwh, cost FROM intervals FINAL ORDER BY ALL"
    )
    _, days = store.query(
        "SELECT account_id, day, kwh, ytd_kwh FROM daily_usage FINAL ORDER BY ALL"
    )
    return intervals, days


def test_migration_7_partitions_both_tables_by_month_and_keeps_their_rows(tmp_path: Path) -> None:
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        before = _contents(store)
        assert _keys(store) == {"intervals": "", "daily_usage": ""}
        assert len(before[0]) == 25 and len(before[1]) == 12  # each row once under FINAL
        assert store.migrate() == [7]
        assert _keys(store) == {"intervals": "toYYYYMM(start)", "daily_usage": "toYYYYMM(day)"}
        assert _contents(store) == before
        _, parts = store.query(
            "SELECT table, uniqExact(partition) FROM system.parts WHERE active"
            " AND database = currentDatabase() AND table IN ('intervals', 'daily_usage')"
            " GROUP BY table ORDER BY table"
        )
        # Local months (the column's zone): 00:00 on the 1st is in its own month.
        assert parts == [("daily_usage", 3), ("intervals", 3)]
        # Written again after the upgrade (a replay), the rows collapse under FINAL.
        intervals, days = _history()
        store.insert_rows("intervals", intervals)
        store.insert_rows("daily_usage", days)
        assert _contents(store) == before
        assert store.migrate() == []


def test_a_months_reads_read_its_partition_alone(tmp_path: Path) -> None:
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        store.migrate()
        intervals, days = _history()
        store.insert_rows("intervals", intervals)
        store.insert_rows("daily_usage", days)
        one = " SETTINGS max_partitions_to_read = 1"
        october = tables._interval_window(MONTHS[1], MONTHS[2], ZONE)
        _, rows = store.query(f"SELECT count() FROM intervals FINAL WHERE {october}{one}")
        assert rows == [(9,)]  # 2 accounts × 2 days × 2 clocks, and A1's tier-2 row
        _, rows = store.query(
            "SELECT count() FROM daily_usage FINAL WHERE day >= '2026-10-01'"
            f" AND day < '2026-11-01'{one}"
        )
        assert rows == [(4,)]
        two_months = tables._interval_window(MONTHS[0], MONTHS[2], ZONE)
        with pytest.raises(ClickHouseError, match="max_partitions_to_read|partitions"):
            store.query(f"SELECT count() FROM intervals FINAL WHERE {two_months}{one}")


def test_a_batch_of_many_months_is_inserted(tmp_path: Path) -> None:
    """A meter silent for years, then read: its span cut at every midnight is one batch."""
    starts = [dt.datetime(2000 + m // 12, m % 12 + 1, 1, tzinfo=SHANGHAI) for m in range(150)]
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        store.migrate()
        store.insert_rows("intervals", [_interval("A1", start, 10) for start in starts])
        _, rows = store.query("SELECT count(), uniqExact(_partition_id) FROM intervals FINAL")
        assert rows == [(150, 150)]


def test_a_base_without_the_day_before_is_summed_from_intervals(tmp_path: Path) -> None:
    """The stream's ``ytd_kwh`` of the eve where it has a row; the year's parts where not."""
    window = aggregates.Window(dt.date(2026, 11, 1), dt.date(2026, 12, 1), ZONE)
    opening = pl.DataFrame(
        {"account_id": ["A1", "A2"], "year": [2026, 2025], "base": [5_000, 7_000]},
        schema={"account_id": pl.String, "year": pl.Int32, "base": pl.Int64},
    )
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        store.migrate()
        intervals, _ = _history()
        store.insert_rows("intervals", intervals)
        # A1's eve closed: ytd 5,000 opening + 2,350 of the year's parts (as the stream has it).
        store.insert_rows("daily_usage", [_day("A1", dt.date(2026, 10, 31), 500, 7_350)])
        found = aggregates._year_before(store, window, pl.Series(["A1", "A2"]), opening)
    # A2 (no row for 31 October): its September and October parts, 8 × 1,000.
    assert sorted(found.iter_rows()) == [("A1", 2_350), ("A2", 8_000)]
